import ClusterAPI
import Chaos
import DashboardCore
import Foundation
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif


// Nested in DtopTests: serialized with the other terminal tests (each runs a cluster and a terminal).
extension DtopTests {
    /// The console of issue #18 against real `dnode` processes, in tmux: the drill-down, an action that moves the
    /// leader, the perspective grid with a stopped node, and a recorded session replayed to the same frames.
    @Suite("dtop console: drill-down, actions, perspectives, flight recorder (tmux, real cluster)")
    struct ConsoleTests {
        static func start(_ cluster: LocalCluster, _ extra: [String] = []) throws -> TmuxSession {
            try TmuxSession(
                command: DtopTests.dashboardCommand(
                    ["--endpoints", DtopTests.metricsEndpoints(cluster), "--interval", "200ms"] + extra),
                width: 180, height: 45)
        }

        /// Moves the selection to the row of node `id` (rows are sorted by id; the selection starts on the first).
        static func select(_ id: Int, _ tmux: TmuxSession) async throws {
            for _ in 0..<5 { try tmux.sendKeys("Up") }
            for _ in 0..<(id - 1) { try tmux.sendKeys("Down") }
            try await tmux.waitForScreen("row \(id) selected") { screen in
                screenLines(screen).contains { $0.hasPrefix(">\(id) ") }
            }
        }

        @Test("Enter on the leader's row shows its peers' progress, fsync latency and events; Esc returns", .tags(.terminal))
        func drillDown() async throws {
            #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
            try await withLocalCluster { cluster in
                let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
                let tmux = try Self.start(cluster)
                defer { tmux.kill() }
                try await tmux.waitForScreen("the table with the nodes' own events") { screen in
                    screen.contains("[HEALTHY]") && screen.contains("from the nodes") && screen.contains("election_won")
                }
                try await Self.select(leader, tmux)
                try tmux.sendKeys("Enter")
                let others = cluster.ids.filter { $0 != leader }
                let screen = try await tmux.waitForScreen("node \(leader)'s detail with both peers replicating") { screen in
                    let lines = screenLines(screen)
                    return screen.contains("NODE \(leader)") && screen.contains("PEERS (this node's view)")
                        && others.allSatisfy { peer in
                            lines.contains { $0.hasPrefix("  \(peer)    127.0.0.1:") && $0.contains("replicate") }
                        }
                }
                #expect(screen.contains("role leader"))
                #expect(screen.contains("WAL fsync p50"))
                #expect(screen.contains("alarms: none"))
                #expect(screen.contains("EVENTS OF NODE \(leader)") && screen.contains("election_won"))
                #expect(screen.contains("MATCH") && screen.contains("NEXT") && screen.contains("INFLIGHT"))

                try tmux.sendKeys("Escape")
                try await tmux.waitForScreen("back to the table") { screen in
                    screen.contains("EVENTS (newest first") && !screen.contains("PEERS (this node's view)")
                }
                try tmux.sendKeys("q")
                #expect(try await DtopTests.waitForExit(tmux).status == 0)
            }
        }

        /// An xterm SGR mouse report (`kmous=\E[<` in the `xterm-256color` terminfo): `ESC [ < button ; column ;
        /// row M` (1-based), `m` for a release.
        static func mouse(_ button: Int, row: Int, column: Int = 0, release: Bool = false) -> String {
            "\u{1b}[<\(button);\(column + 1);\(row + 1)" + (release ? "m" : "M")
        }

        @Test("a click selects a row, a second click opens it; the wheel scrolls the events pane", .tags(.terminal))
        func mouse() async throws {
            #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
            try await withLocalCluster { cluster in
                try await cluster.waitForLeader(requireMajority: true)
                let tmux = try Self.start(cluster)
                defer { tmux.kill() }
                try await tmux.waitForScreen("the table with events") { $0.contains("election_won") }
                // Row 2 of the table is screen line 4 + 1 (header, status, blank, headings, row 1).
                try tmux.sendKeys("-l", Self.mouse(0, row: 5))
                try tmux.sendKeys("-l", Self.mouse(0, row: 5, release: true))
                try await tmux.waitForScreen("row 2 selected by the click") { screen in
                    screenLines(screen).contains { $0.hasPrefix(">2 ") }
                }
                try tmux.sendKeys("-l", Self.mouse(65, row: 15))
                try await tmux.waitForScreen("the events pane scrolled by the wheel") { $0.contains(", scrolled 3)") }
                try tmux.sendKeys("-l", Self.mouse(0, row: 5))
                try tmux.sendKeys("-l", Self.mouse(0, row: 5, release: true))
                try await tmux.waitForScreen("node 2's detail from the second click") { $0.contains("NODE 2  ") }
            }
        }

        @Test("t on a follower asks with the quorum afterwards; y moves the leader (checked on /status)", .tags(.terminal))
        func transferFromTheTable() async throws {
            #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
            try await withLocalCluster { cluster in
                let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
                let target = cluster.ids.first { $0 != leader } ?? 1

                // --read-only refuses before asking.
                let readOnly = try Self.start(cluster, ["--read-only"])
                try await readOnly.waitForScreen("the table") { $0.contains("[HEALTHY]") }
                try await Self.select(target, readOnly)
                try readOnly.sendKeys("t")
                try await readOnly.waitForScreen("the read-only notice") {
                    $0.contains("read-only: actions are disabled (--read-only)")
                }
                readOnly.kill()

                let tmux = try Self.start(cluster)
                defer { tmux.kill() }
                try await tmux.waitForScreen("the table") { $0.contains("[HEALTHY]") }
                try await Self.select(target, tmux)
                try tmux.sendKeys("t")
                try await tmux.waitForScreen("the confirmation with the quorum afterwards") { screen in
                    screen.contains("CONFIRM")
                        && screen.contains(
                            "Transfer leadership from node \(leader) to node \(target)? Afterwards: 3 voters (3 up), "
                                + "tolerates 1 failure")
                }
                try tmux.sendKeys("y")
                try await waitFor("node \(target) to lead (its /status)", timeout: .seconds(10)) {
                    (try? await cluster.status(target))?.role == .leader
                }
                try await tmux.waitForScreen("the result in the events pane, the new leader marked") { screen in
                    screen.contains("transfer node \(target): done")
                        && screenLines(screen).contains { $0.contains("\(target) ") && $0.contains("LEADER") }
                }
                // Removing a voter is refused when the quorum would be lost; here it would not be, so it asks.
                try tmux.sendKeys("r")
                try await tmux.waitForScreen("the remove what-if") { screen in
                    screen.contains("Afterwards: 2 voters left, tolerates 0 failures.")
                }
                try tmux.sendKeys("n")
                try await tmux.waitForScreen("the confirmation gone") { !$0.contains("CONFIRM") }
                #expect(try await cluster.status(leader).voters.count == 3, "n cancelled the removal")
            }
        }

        @Test("a SIGSTOPped leader shows as disagreeing in the perspective grid", .tags(.terminal))
        func stoppedNodeDisagrees() async throws {
            #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
            try await withLocalCluster { cluster in
                let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
                let tmux = try Self.start(cluster)
                defer { tmux.kill() }
                try await tmux.waitForScreen("the table") { $0.contains("[HEALTHY]") }
                try tmux.sendKeys("g")
                try await tmux.waitForScreen("every node agreeing") { screen in
                    screen.contains("PERSPECTIVES") && screenLines(screen).filter { $0.hasSuffix("agrees") }.count == 3
                }
                cluster.pause(leader)
                defer { cluster.resume(leader) }
                let others = cluster.ids.filter { $0 != leader }
                let next = try await cluster.waitForLeader(timeout: .seconds(15), among: others)
                // dtop polls on its own: the frame that first shows the old leader down may predate its round that
                // saw the new leader (candidates, "leader none"), and the other follower learns of the new leader
                // only from its first heartbeat, so the wait is for all three: the old leader disagreeing, the new
                // leader shown, and both live nodes agreeing.
                try await tmux.waitForScreen("node \(leader) disagreeing, node \(next.nodeID) leading, two agreeing") {
                    screen in
                    screen.contains("leader node \(next.nodeID))")
                        && screenLines(screen).filter { $0.hasSuffix("agrees") }.count == 2
                        && screenLines(screen).contains { line in
                            line.hasPrefix("  n\(leader)    DOWN") && line.contains("DISAGREES")
                                && line.contains("thinks it leads") && line.contains("stuck at term")
                        }
                }
                try tmux.sendKeys("T")
                try await tmux.waitForScreen("the timeline with two leaderships") { screen in
                    screen.contains("ELECTION TIMELINE") && screen.contains("n\(next.nodeID)")
                        && screen.contains("n\(leader)")
                }
            }
        }

        @Test("a recorded session replays to the same frames; the committed recording matches its golden frames", .tags(.terminal))
        func recordAndReplay() async throws {
            #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
            let file = NSTemporaryDirectory() + "dtop-record-\(UUID().uuidString).jsonl"
            defer { try? FileManager.default.removeItem(atPath: file) }
            try await withLocalCluster { cluster in
                try await cluster.waitForLeader(requireMajority: true)
                let tmux = try Self.start(cluster, ["--record", file, "-n", "6"])
                defer { tmux.kill() }
                #expect(try await DtopTests.waitForExit(tmux).status == 0)
            }
            let recording = try Recording.parse(try String(contentsOfFile: file, encoding: .utf8))
            #expect(recording.lines.count >= 6)
            let replay = try await DtopTests.runDtop(["--replay", file, "--frames-text"])
            #expect(replay.status == 0, "\(replay.stderr)")
            #expect(replay.stdout.components(separatedBy: "=== frame ").count - 1 == recording.lines.count)
            #expect(replay.stdout.contains("LEADER") && replay.stdout.contains("election_won"))

            // The committed recording (a real session) replays to its golden frames, as text and on screen.
            let testdata = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")
            let fixture = testdata.appendingPathComponent("session.jsonl").path
            let golden = testdata.appendingPathComponent("session-frames.txt").path
            if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
                try FileManager.default.createDirectory(at: testdata, withIntermediateDirectories: true)
                try? FileManager.default.removeItem(atPath: fixture)
                try FileManager.default.copyItem(atPath: file, toPath: fixture)
                let frames = try await DtopTests.runDtop(["--replay", fixture, "--frames-text"])
                try frames.stdout.write(toFile: golden, atomically: true, encoding: .utf8)
            }
            let frames = try await DtopTests.runDtop(["--replay", fixture, "--frames-text"])
            #expect(frames.stdout == (try String(contentsOfFile: golden, encoding: .utf8)))

            // On screen, at 64x, the replay ends on the last golden frame: the same header and node rows.
            let lastFrame = frames.stdout.components(separatedBy: "=== frame ").last ?? ""
            let rows = screenLines(lastFrame).filter { line in
                ["*", " ", "x"].contains(line.first.map(String.init) ?? "") && line.contains("127.0.0.1:")
            }
            #expect(rows.count == 3)
            let tmux = try TmuxSession(
                command: DtopTests.dashboardCommand(["--replay", fixture, "--speed", "64"]), width: 120, height: 40)
            defer { tmux.kill() }
            try await tmux.waitForScreen("the replay's last frame") { screen in
                let lines = screenLines(screen)
                // The selection marks the first row with `>` in place of its marker, and the trend column is drawn in
                // blocks on a UTF-8 terminal: compare from the second character to the trend column.
                func cells(_ line: String) -> String { String(line.dropFirst().prefix(100)) }
                return screen.contains("REPLAY") && rows.allSatisfy { row in lines.contains { cells($0) == cells(row) } }
            }
        }
    }
}
