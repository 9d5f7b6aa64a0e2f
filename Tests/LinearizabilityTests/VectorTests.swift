import Foundation
import Linearizability
import Testing

/// Every shared vector must get its labelled verdict, each well within a few seconds.
@Suite(.enabled(if: Vectors.present, "shared vectors not found at \(Vectors.directory.path)"))
struct VectorTests {
    /// Generous per-file bound (the real times are printed).
    static let perFileBound: Duration = .seconds(30)

    struct Timing {
        var file: String
        var elapsed: Duration
    }

    /// Checks every labelled file under `prefix` and prints a timing summary.
    private func checkAll(
        prefix: String,
        check: (String) throws -> CheckResult
    ) throws -> [Timing] {
        let labels = try Vectors.labels().filter { $0.key.hasPrefix(prefix) }
        let directory = Vectors.directory.appendingPathComponent(prefix).path
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).map { prefix + $0 }.sorted()
        #expect(Set(labels.keys).isSubset(of: files), "every labelled \(prefix) file exists")
        let clock = ContinuousClock()
        var timings: [Timing] = []
        for file in files {
            let start = clock.now
            let result = try check(try Vectors.text(file))
            let elapsed = clock.now - start
            timings.append(Timing(file: file, elapsed: elapsed))
            #expect(elapsed < Self.perFileBound, "\(file) took \(elapsed)")
            guard let expected = labels[file] else {
                // Not labelled (porcupine's tests leave it out): it must still parse and finish.
                print("vectors \(file): unlabelled, checked as \(result.isLinearizable ? "" : "not ")linearizable")
                #expect(!result.description.hasPrefix("unknown"), "\(file): \(result)")
                continue
            }
            #expect(
                result.isLinearizable == expected,
                "\(file): expected \(expected ? "" : "not ")linearizable, got \(result)"
            )
            if !expected {
                #expect(result.witness?.failures.isEmpty == false, "\(file): a witness names the failure")
            }
        }
        let total = timings.reduce(Duration.zero) { $0 + $1.elapsed }
        let slowest = timings.sorted { $0.elapsed > $1.elapsed }.prefix(6)
        print(
            "vectors \(prefix): \(timings.count) files in \(total); slowest: "
                + slowest.map { "\($0.file) \($0.elapsed)" }.joined(separator: ", ")
        )
        return timings
    }

    @Test func jepsenEtcdRegisterLogs() throws {
        let timings = try checkAll(prefix: "jepsen/") { text in
            let history = try HistoryParsers.parseJepsenEtcd(text)
            return LinearizabilityChecker.check(history, model: RegisterModel(), timeout: .seconds(60))
        }
        #expect(timings.count == 103)
    }

    @Test func ednKeyValueHistories() throws {
        let timings = try checkAll(prefix: "kv/") { text in
            let history = try HistoryParsers.parseEDNKeyValue(text)
            let result = LinearizabilityChecker.check(history, model: KVModel(initialValue: ""), timeout: .seconds(60))
            if case .notLinearizable(let witness) = result {
                // The witness names operations of the failing key only.
                for failure in witness.failures {
                    let ids = [failure.blocked.id] + failure.longestPrefix.map(\.id) + failure.pending.map(\.id)
                    #expect(ids.allSatisfy { history.operations[$0].input.key == failure.partition })
                }
            }
            return result
        }
        #expect(timings.count == 6)
    }

    /// Dropping failed CAS operations (generic Jepsen `:fail`) only weakens the check: no labelled-linearizable
    /// file may become non-linearizable.
    @Test func droppingFailedCASNeverRejectsALinearizableLog() throws {
        let labels = try Vectors.labels().filter { $0.key.hasPrefix("jepsen/") && $0.value }
        for file in labels.keys.sorted() {
            let history = try HistoryParsers.parseJepsenEtcd(try Vectors.text(file), failedCAS: .dropped)
            let result = LinearizabilityChecker.check(history, model: RegisterModel(), timeout: .seconds(60))
            #expect(result.isLinearizable, "\(file): \(result)")
        }
    }
}
