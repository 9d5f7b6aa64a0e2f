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

/// The built `dtop` against real `dnode` processes: `--once` output, and the curses dashboard in tmux.
///
/// Serialized: each test runs a cluster or a terminal, and failover timing should not compete with the others on
/// a small machine.
@Suite("dtop: --once against a real cluster, the live dashboard in tmux", .serialized)
struct DtopTests {
    static func dtopBinary() throws -> URL {
        try LocalCluster.locateBinary(named: "dtop", variable: "DTOP_BIN")
    }

    static func metricsEndpoints(_ cluster: LocalCluster) -> String {
        cluster.nodes.map(\.metricsAddress).joined(separator: ",")
    }

    /// Runs dtop to completion (not in a terminal) and returns its exit status and stdout.
    static func runDtop(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
        let binary = try dtopBinary()
        return try await offloaded {
            let process = Process()
            process.executableURL = binary
            process.arguments = arguments
            let out = Pipe()
            let err = Pipe()
            process.standardOutput = out
            process.standardError = err
            process.standardInput = FileHandle.nullDevice
            try process.run()
            let stdout = out.fileHandleForReading.readDataToEndOfFile()
            let stderr = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (
                process.terminationStatus, String(decoding: stdout, as: UTF8.self),
                String(decoding: stderr, as: UTF8.self)
            )
        }
    }

    /// The shell command tmux runs: dtop with a UTF-8 locale, then a line with its exit status, which stays on the
    /// restored screen (`remain-on-exit`) for the test to read.
    static func dashboardCommand(_ arguments: [String]) throws -> String {
        let binary = try dtopBinary().path
        return "env NCURSES_NO_UTF8_ACS=1 TERM=xterm-256color LANG=C.UTF-8 LC_ALL=C.UTF-8 "
            + ([binary] + arguments).map(shellQuoted).joined(separator: " ") + "; echo \"dtop-exit=$?\""
    }

    /// Waits for the `dtop-exit=N` line and returns N (`128 + n` when dtop died of signal n) and the screen.
    static func waitForExit(_ tmux: TmuxSession) async throws -> (status: Int?, screen: String) {
        let screen = try await tmux.waitForScreen("dtop to exit", timeout: .seconds(5), history: true) {
            $0.contains("dtop-exit=")
        }
        guard let range = screen.range(of: #"dtop-exit=(\d+)"#, options: .regularExpression) else {
            return (nil, screen)
        }
        return (Int(screen[range].dropFirst("dtop-exit=".count)), screen)
    }

    // MARK: --once

    @Test("--once -o json: every node's status is the /status document, with the leader and health")
    func onceJSON() async throws {
        try await withLocalCluster { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            // Wait until every follower has heard from the leader, so the frame is stable.
            try await waitFor("every node to know leader \(leader.nodeID)", timeout: .seconds(5)) {
                let statuses = await cluster.statuses()
                return statuses.count == 3 && statuses.values.allSatisfy { $0.leaderID == leader.nodeID }
            }
            let run = try await Self.runDtop(
                ["--once", "-o", "json", "--endpoints", Self.metricsEndpoints(cluster), "--interval", "500ms"])
            #expect(run.status == 0, "stderr: \(run.stderr)")
            let frame = try WireJSON.decode(JSONFrame.self, from: Data(run.stdout.utf8))
            #expect(frame.schemaVersion == 1)
            #expect(frame.health == .healthy)
            #expect(frame.leaderID == leader.nodeID)
            #expect(frame.votersUp == 3)
            #expect(frame.nodes.map(\.nodeID) == [1, 2, 3])
            #expect(frame.nodes.allSatisfy { $0.reachable && $0.status != nil })

            // Each "status" object has exactly the keys of the node's own /status: the SPEC schema, unchanged.
            let document = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            let nodes = try #require(document["nodes"] as? [[String: Any]])
            for (index, node) in nodes.enumerated() {
                let embedded = try #require(node["status"] as? [String: Any])
                let raw = try await offloaded { try cluster.client(index + 1).metrics.request("GET", "/status") }
                let served = try #require(try JSONSerialization.jsonObject(with: raw.body) as? [String: Any])
                #expect(Set(embedded.keys) == Set(served.keys))
                #expect(embedded["node_id"] as? Int == index + 1)
            }
        }
    }

    @Test("--once text with a node down: exit 2 (degraded), the down row keeps its endpoint and reason")
    func onceTextDegraded() async throws {
        try await withLocalCluster { cluster in
            try await cluster.waitForLeader(requireMajority: true)
            let reserved = try PortReservation(count: 1)  // held, not listening: connections are refused
            defer { reserved.release() }
            let unused = reserved.ports[0]
            let endpoints = Self.metricsEndpoints(cluster) + ",127.0.0.1:\(unused)"
            let run = try await Self.runDtop(["--once", "--endpoints", endpoints])
            #expect(run.status == 2, "stdout: \(run.stdout) stderr: \(run.stderr)")
            let lines = screenLines(run.stdout)
            #expect(lines[0].hasPrefix("dtop [DEGRADED]"))
            #expect(
                lines.contains {
                    $0.hasPrefix("x?") && $0.contains("127.0.0.1:\(unused)") && $0.contains("connection refused")
                })
            #expect(lines.filter { $0.hasPrefix("*") && $0.contains("LEADER") }.count == 1)
        }
    }

    @Test("bad flags exit 64 with a message")
    func usage() async throws {
        let badInterval = try await Self.runDtop(["--once", "--interval", "20ms"])
        #expect(badInterval.status == 64)
        #expect(badInterval.stderr.contains("between 100ms and 10s"))
        let badEndpoint = try await Self.runDtop(["--once", "--endpoints", "nohost"])
        #expect(badEndpoint.status == 64)
        #expect(badEndpoint.stderr.contains("invalid endpoint 'nohost'"))
        let notATerminal = try await Self.runDtop(["--endpoints", "127.0.0.1:1"])
        #expect(notATerminal.status == 64)
        #expect(notATerminal.stderr.contains("not a terminal"))
    }

    // MARK: The dashboard in tmux

    @Test(
        "tmux: leader marked; kill -9 of the leader shows it down, a new leader and an election; resize; q",
        .tags(.terminal))
    func failoverOnScreen() async throws {
        #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
        try await withLocalCluster { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            let old = Int(leader.nodeID)
            let tmux = try TmuxSession(
                command: Self.dashboardCommand(["--endpoints", Self.metricsEndpoints(cluster), "--interval", "200ms"]),
                width: 120, height: 40)
            defer { tmux.kill() }

            try await tmux.waitForScreen("the leader row marked and the cluster healthy") { screen in
                let lines = screenLines(screen)
                return lines.contains { $0.hasPrefix("*\(old) ") && $0.contains("LEADER") }
                    && screen.contains("[HEALTHY]") && screen.contains("voters 3/3 up, tolerates 1")
            }

            try await cluster.crash(old)
            let (screen, took) = try await measure {
                try await tmux.waitForScreen("node \(old) down, a new leader and an election event") { screen in
                    let lines = screenLines(screen)
                    let down = lines.contains { $0.hasPrefix("x\(old) ") && $0.contains("DOWN") }
                    let newLeader = lines.contains {
                        $0.hasPrefix("*") && !$0.hasPrefix("*\(old) ") && $0.contains("LEADER")
                    }
                    return down && newLeader && screen.contains("election_won")
                        && screen.contains("node \(old) down: ")
                }
            }
            #expect(took < .seconds(5))
            #expect(screen.contains("[DEGRADED]"))
            #expect(screen.contains("voters 2/3 up, tolerates 0"))

            // Narrow: the TREND column goes, the rows and events stay, nothing is wider than the window.
            try tmux.resize(width: 80, height: 24)
            try await tmux.waitForScreen("an 80-column layout") { screen in
                let lines = screenLines(screen)
                return lines.contains { $0.contains(" ID ADDRESS") && !$0.contains("TREND") }
                    && lines.contains { $0.hasPrefix("x\(old) ") } && lines.allSatisfy { $0.count <= 80 }
            }
            try tmux.resize(width: 120, height: 40)
            try await tmux.waitForScreen("the 120-column layout back") { screen in
                screen.contains("TREND") && screen.contains("EVENTS")
            }

            try tmux.sendKeys("q")
            let (status, after) = try await Self.waitForExit(tmux)
            #expect(status == 0)
            // endwin() left the alternate screen: the dashboard is gone from the terminal.
            #expect(!after.contains("EVENTS") && !after.contains("LEADER"), "screen after exit:\n\(after)")
        }
    }

    @Test(
        "tmux: every node down keeps retrying; p pauses, + changes the interval, ? helps; SIGTERM restores",
        .tags(.terminal))
    func allDownKeysAndSignal() async throws {
        #expect(TmuxSession.available, "tmux is needed (apt-get install -y tmux)")
        let reserved = try PortReservation(count: 2)
        defer { reserved.release() }
        let ports = reserved.ports
        let tmux = try TmuxSession(
            command: Self.dashboardCommand([
                "--endpoints", "127.0.0.1:\(ports[0]),127.0.0.1:\(ports[1])", "--interval", "200ms",
            ]),
            width: 120, height: 30)
        defer { tmux.kill() }

        func rounds(_ screen: String) -> Int? {
            guard let range = screen.range(of: #"rounds (\d+)"#, options: .regularExpression) else { return nil }
            return Int(screen[range].split(separator: " ")[1])
        }
        try await tmux.waitForScreen("UNAVAILABLE and several rounds") { screen in
            screen.contains("[UNAVAILABLE]") && (rounds(screen) ?? 0) >= 3
                && screen.contains("unreachable: connection refused")
        }

        try tmux.sendKeys("p")
        let paused = try await tmux.waitForScreen("PAUSED") { $0.contains("** PAUSED") }
        let frozen = try #require(rounds(paused))
        // Polling goes on underneath; the frozen display must not move while five more rounds pass.
        try await repeatFor(.seconds(1), interval: .milliseconds(100)) {
            let screen = try tmux.capture()
            #expect(rounds(screen) == frozen)
        }
        try tmux.sendKeys("p")
        try await tmux.waitForScreen("live again, rounds moving") { screen in
            !screen.contains("PAUSED") && (rounds(screen) ?? 0) > frozen + 3
        }

        try tmux.sendKeys("+")
        try await tmux.waitForScreen("interval 250ms") { $0.contains("poll 250ms") }
        try tmux.sendKeys("?")
        try await tmux.waitForScreen("help") { $0.contains("HELP") && $0.contains("sort rows") }

        // The pane runs the shell; dtop is its child.
        let shell = try #require(try tmux.panePID())
        let children = try String(contentsOfFile: "/proc/\(shell)/task/\(shell)/children", encoding: .utf8)
        let pid = try #require(children.split(separator: " ").first.flatMap { Int32($0) })
        #expect(kill(pid, SIGTERM) == 0)
        let (status, after) = try await Self.waitForExit(tmux)
        #expect(status == 128 + Int(SIGTERM))
        #expect(!after.contains("UNAVAILABLE"), "screen after SIGTERM:\n\(after)")
    }
}

extension Tag {
    @Tag static var terminal: Self
}
