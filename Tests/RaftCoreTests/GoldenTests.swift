import Foundation
import RaftTestKit
import Testing

/// Golden interaction tests: each file in `testdata/` is a script of DSL commands with their expected output.
/// `UPDATE_GOLDEN=1 swift test --filter GoldenTests` rewrites the files; review the diff like code.
@Suite struct GoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var files: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return names.filter { $0.hasSuffix(".txt") }.sorted()
    }

    @Test func everyScenarioExists() {
        let expected = [
            "election.txt", "figure8.txt", "partitioned_leader.txt", "prevote_rejoin.txt", "stale_leader_read.txt",
            "learner_promotion.txt", "snapshot_install.txt", "leadership_transfer.txt", "membership_rules.txt",
            "removed_follower.txt",
        ]
        for name in expected { #expect(Self.files.contains(name), "missing golden scenario \(name)") }
    }

    @Test(arguments: GoldenTests.files)
    func scenario(_ name: String) throws {
        let url = Self.directory.appendingPathComponent(name)
        let text = try String(contentsOf: url, encoding: .utf8)
        let actual = InteractionEnv.run(file: text)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try actual.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        if actual != text {
            let a = actual.split(separator: "\n", omittingEmptySubsequences: false)
            let e = text.split(separator: "\n", omittingEmptySubsequences: false)
            let first = Array(zip(a, e)).firstIndex { $0.0 != $0.1 } ?? min(a.count, e.count)
            Issue.record(
                """
                \(name) differs at line \(first + 1):
                  expected: \(first < e.count ? String(e[first]) : "<end>")
                  actual:   \(first < a.count ? String(a[first]) : "<end>")
                (UPDATE_GOLDEN=1 rewrites the file)
                """)
        }
    }
}
