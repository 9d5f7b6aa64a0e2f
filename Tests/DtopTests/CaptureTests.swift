import Foundation
import Testing
@testable import ClusterTestSupport


// Nested in DtopTests: serialized with the other terminal tests (each runs a cluster and a terminal).
extension DtopTests {
    /// Writes the text screen captures of docs/dtop.md from a real cluster: `DTOP_CAPTURE_DIR=/tmp/c swift test --filter
    /// CaptureTests`. Skipped otherwise.
    @Suite struct CaptureTests {
        @Test(.enabled(if: ProcessInfo.processInfo.environment["DTOP_CAPTURE_DIR"] != nil), .tags(.terminal))
        func captureEachView() async throws {
            let directory = ProcessInfo.processInfo.environment["DTOP_CAPTURE_DIR"] ?? "/tmp"
            try await withLocalCluster { cluster in
                let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
                let tmux = try TmuxSession(
                    command: DtopTests.dashboardCommand(
                        ["--endpoints", DtopTests.metricsEndpoints(cluster), "--interval", "250ms"]),
                    width: 118, height: 30)
                defer { tmux.kill() }
                func save(_ name: String, _ screen: String) throws {
                    let lines = screenLines(screen).map { $0.replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) }
                    var text = lines.joined(separator: "\n")
                    while text.hasSuffix("\n") { text.removeLast() }
                    try (text + "\n").write(toFile: "\(directory)/\(name).txt", atomically: true, encoding: .utf8)
                }
                try save("table", try await tmux.waitForScreen("table") { $0.contains("election_won") })
                try await DtopTests.ConsoleTests.select(leader, tmux)
                try tmux.sendKeys("Enter")
                try save("detail", try await tmux.waitForScreen("detail") { $0.contains("PEERS (this node's view)") && $0.contains("replicate") })
                try tmux.sendKeys("Escape")
                let follower = cluster.ids.first { $0 != leader } ?? 1
                try await DtopTests.ConsoleTests.select(follower, tmux)
                try tmux.sendKeys("r")
                try save("confirm", try await tmux.waitForScreen("confirm") { $0.contains("CONFIRM") })
                try tmux.sendKeys("n")
                cluster.pause(leader)
                defer { cluster.resume(leader) }
                let next = try await cluster.waitForLeader(timeout: .seconds(15), among: cluster.ids.filter { $0 != leader })
                try tmux.sendKeys("g")
                try save("grid", try await tmux.waitForScreen("grid") { screen in
                    screen.contains("thinks it leads") && screenLines(screen).filter { $0.hasSuffix("agrees") }.count == 2
                })
                try tmux.sendKeys("T")
                try save("timeline", try await tmux.waitForScreen("timeline") { screen in
                    screenLines(screen).contains { $0.hasPrefix("  ") && $0.contains(" n\(next.nodeID) ") && $0.contains("now") }
                })
            }
        }
    }
}
