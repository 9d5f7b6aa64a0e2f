import Foundation
import Linearizability

/// What a run found: the counts, the faults, the verdicts and the evidence.
public struct ChaosReport: Sendable {
    public var seed: UInt64
    public var nodes: Int
    /// The run directory (history, nemesis log, node logs); nil once removed after a valid run.
    public var directory: String?
    public var duration: Duration = .zero
    public var workloadSeconds: Double = 0
    public var operations = OperationCounts()
    public var historyOperations = 0
    public var eventualReads = 0
    public var keys = 0
    public var faults: [String: Int] = [:]
    public var faultsNotApplied: [String: Int] = [:]
    public var linearizability = "not checked"
    public var checkSeconds: Double = 0
    public var convergence = ""
    public var lostWrites: [String] = []
    /// Safety violations: linearizability, eventual reads, lost writes.
    public var violations: [String] = []
    /// Things that kept the run from being judged (no leader, no convergence).
    public var problems: [String] = []
    public var notes: [String] = []
    public var nemesisLog: [String] = []
    public var nodeTails = ""

    public init(seed: UInt64, nodes: Int, directory: String) {
        self.seed = seed
        self.nodes = nodes
        self.directory = directory
    }

    /// No violation, no problem, and the checker reached a verdict.
    public var valid: Bool { violations.isEmpty && problems.isEmpty && linearizability == "linearizable" }

    public var verdict: String {
        if !violations.isEmpty { return "INVALID (safety violation)" }
        if !problems.isEmpty { return "INVALID (liveness or convergence problem)" }
        return linearizability == "linearizable" ? "valid" : "UNKNOWN (\(linearizability))"
    }

    /// The closing summary printed by `dchaos` and the tests.
    public var summary: String {
        var lines = [
            "chaos verdict: \(verdict)",
            "  seed \(seed), \(nodes) nodes, workload \(String(format: "%.0f", workloadSeconds)) s, total \(duration)",
            "  operations: \(operations.total) invoked, \(operations.totalOK) ok; \(historyOperations) checked for "
                + "linearizability on \(keys) keys, \(eventualReads) eventual reads checked",
            "  by kind: \(operations)",
            "  faults injected: \(faults.isEmpty ? "none" : Self.describe(faults))",
            "  linearizability: \(linearizability) (checked in \(String(format: "%.1f", checkSeconds)) s)",
            "  convergence: \(convergence)",
        ]
        if !faultsNotApplied.isEmpty {
            lines.append(
                "  faults not applied: \(Self.describe(faultsNotApplied))"
            )
        }
        for note in notes { lines.append("  note: \(note)") }
        for problem in problems { lines.append("  PROBLEM: \(problem)") }
        for violation in violations { lines.append("  VIOLATION: \(violation)") }
        if let directory { lines.append("  files: \(directory)") }
        if !valid && !nodeTails.isEmpty { lines.append(nodeTails) }
        return lines.joined(separator: "\n")
    }

    /// `kill 3, pause 2`, sorted by kind.
    static func describe(_ counts: [String: Int]) -> String {
        counts.sorted(by: { $0.key < $1.key }).map { "\($0.key) \($0.value)" }.joined(separator: ", ")
    }

    /// Writes `history.txt` (one operation a line), `eventual.txt`, `nemesis.log` and `report.txt` into `directory`.
    func write(
        history: History<KVInput, KVOutput>, targets: [Int: Int], eventualReads: [EventualReads.Read], to directory: URL
    ) throws {
        let model = KVModel()
        var text = "# id process node invoke return outcome operation index\n"
        for (id, operation) in history.operations.enumerated() {
            let outcome: String
            switch operation.outcome {
            case .ok: outcome = "ok"
            case .fail: outcome = "fail"
            case .info: outcome = "info"
            }
            text +=
                "#\(id) p\(operation.process) n\(targets[id].map(String.init) ?? "?") \(operation.invokedAt) "
                + "\(operation.returnedAt.map(String.init) ?? "∞") \(outcome) "
            text += model.describe(operation.input, operation.output) + (operation.index.map { " @\($0)" } ?? "") + "\n"
        }
        try Data(text.utf8).write(to: directory.appendingPathComponent("history.txt"))
        let reads = eventualReads.map {
            "\($0.node) \($0.key) \($0.value ?? "nil") @\($0.index.map(String.init) ?? "-")"
        }
        try Data((reads.joined(separator: "\n") + "\n").utf8).write(
            to: directory.appendingPathComponent("eventual.txt"))
        try Data((nemesisLog.joined(separator: "\n") + "\n").utf8).write(
            to: directory.appendingPathComponent("nemesis.log"))
        try Data((summary + "\n").utf8).write(to: directory.appendingPathComponent("report.txt"))
    }
}
