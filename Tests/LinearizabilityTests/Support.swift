import Foundation
import Linearizability

/// Shorthands for hand-written histories: `(process, input, outcome, invoke, return)`; a `nil` return means `.info`.
typealias RegisterOperation = HistoryOperation<RegisterInput, RegisterOutput>
typealias KVOperation = HistoryOperation<KVInput, KVOutput>

func reg(
    _ process: Int,
    _ input: RegisterInput,
    _ outcome: Outcome<RegisterOutput>,
    _ invoked: UInt64,
    _ returned: UInt64?
) -> RegisterOperation {
    HistoryOperation(process: process, input: input, outcome: outcome, invokedAt: invoked, returnedAt: returned)
}

func kv(
    _ process: Int,
    _ input: KVInput,
    _ outcome: Outcome<KVOutput>,
    _ invoked: UInt64,
    _ returned: UInt64?,
    index: UInt64? = nil
) -> KVOperation {
    HistoryOperation(
        process: process, input: input, outcome: outcome, invokedAt: invoked, returnedAt: returned, index: index
    )
}

func checkRegister(_ operations: [RegisterOperation], timeout: Duration? = .seconds(10)) -> CheckResult {
    LinearizabilityChecker.check(History(operations), model: RegisterModel(), timeout: timeout)
}

func checkKV(_ operations: [KVOperation], initialValue: String? = nil) -> CheckResult {
    LinearizabilityChecker.check(History(operations), model: KVModel(initialValue: initialValue), timeout: .seconds(10))
}

/// The shared vectors directory, `../shared/linearizability-vectors` from the package root.
enum Vectors {
    static let directory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // LinearizabilityTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // package root
        .appendingPathComponent("../shared/linearizability-vectors")
        .standardizedFileURL

    static var present: Bool {
        FileManager.default.fileExists(atPath: directory.appendingPathComponent("labels.tsv").path)
    }

    static func text(_ relativePath: String) throws -> String {
        try String(contentsOf: directory.appendingPathComponent(relativePath), encoding: .utf8)
    }

    static func labels() throws -> [String: Bool] {
        try HistoryParsers.parseLabels(text("labels.tsv"))
    }
}
