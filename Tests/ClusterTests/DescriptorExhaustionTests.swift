import ClusterAPI
import Foundation
import HTTPClient
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// A node whose every file descriptor is taken by clients (issue "Bounded under overload and exhaustion"): one node of
/// three runs with `RLIMIT_NOFILE` 256 (soft and hard), so its client cap is 16 and the metrics port's 256 connections
/// do not fit. Clients fill both ports until connections are no longer accepted; meanwhile 75 MiB of writes go
/// through the cluster, so the node's log starts a new 64 MiB segment with no descriptor free.
@Suite(
    "dnode out of file descriptors (processes)", .serialized, .tags(.cluster),
    .enabled(if: LocalCluster.prlimitPath != nil, "needs prlimit(1) to start a node with a low descriptor limit")
)
struct DescriptorExhaustionTests {
    /// Node 1's `RLIMIT_NOFILE`.
    static let limit = 256
    /// 150 values of 512 KiB over 32 keys: 75 MiB, past one 64 MiB WAL segment (and the 64 MiB snapshot trigger).
    static let writes = 150
    static let valueBytes = 512 << 10

    @Test(
        "the exhausted node keeps its role and term, replicates, rotates its log; served again once clients leave",
        arguments: [true, false])
    func exhausted(asLeader: Bool) async throws {
        raiseOwnDescriptorLimit()
        var options = LocalCluster.Options()
        options.descriptorLimits = [1: Self.limit]
        options.requestTimeoutMs = 5000
        options.requestTimeout = .seconds(8)
        // Three debug builds writing 75 MiB on two cores shared with other work can be starved for a second: the term
        // may move only if a leader stops being heard for longer.
        options.electionTimeoutMinMs = 4000
        options.electionTimeoutMaxMs = 6000
        options.heartbeatMs = 100
        try await withLocalCluster(options: options) { cluster in
            // Node 1 leads or follows as the test case says: leadership is handed over if need be.
            var leader = try await cluster.waitForLeader(requireMajority: true)
            if (leader.nodeID == 1) != asLeader {
                let target = asLeader ? 1 : 2
                let body = Data(#"{"node_id":\#(target)}"#.utf8)
                let moved = try await cluster.client(Int(leader.nodeID)).send("POST", "/transfer-leader", body: body)
                try #require(moved.status == 200, "transfer-leader to \(target): \(moved)")
                leader = try await cluster.waitForLeader(requireMajority: true)
            }
            try #require((leader.nodeID == 1) == asLeader, "node \(leader.nodeID) leads")
            let leaderID = Int(leader.nodeID)
            let others = cluster.ids.filter { $0 != 1 }
            let pid = try #require(cluster.pid(1))
            #expect(
                cluster.logText(1).contains("max_client_connections lowered from 4096 to 16"),
                "the client cap was not fitted to the descriptor limit")
            let node = cluster.node(1)
            let wal = node.dataDirectory + "/wal"
            let segmentBefore = try #require(newestSegment(wal))

            // Fill the node: keep-alive clients on the client port until one gets 429 or no answer, then on the
            // metrics port until one is not accepted. Every connection the node accepted stays open (idle 120 s).
            let hog = try await offloaded { try DescriptorHog(clientPort: node.clientPort, metricsPort: node.metricsPort) }
            defer { hog.close() }
            #expect(hog.clients == 16, "client connections served before the cap: \(hog.clients)")
            #expect(hog.clientRefusal == 429, "the connection over the client cap got \(hog.clientRefusal.map(String.init) ?? "no answer")")
            #expect(hog.metricsStopped, "the metrics port never stopped accepting")
            let exhausted = openDescriptors(pid)
            #expect(exhausted >= Self.limit - 1, "node 1 holds \(exhausted) descriptors of \(Self.limit)")
            // Out of descriptors and idle, the node waits: accepting pauses instead of retrying in a loop.
            let cpu = try #require(await cpuShare(of: pid, over: .seconds(2)))
            #expect(cpu < 0.3, "node 1 used \(Int(cpu * 100))% of a core while out of descriptors")
            // A new client is not served: its connection waits in the listen backlog.
            let probe = try await offloaded {
                try RawHTTPClient(port: node.clientPort, timeout: .seconds(1)).exchange(keepAliveGet("/get?key=probe"))
            }
            #expect(probe.response == nil, "a new client was served while every descriptor was taken: \(probe)")

            // Writes through the other nodes (forwarded to node 1 when it leads) keep committing.
            let term = leader.term
            let value = String(repeating: "v", count: Self.valueBytes - 16)
            var acknowledged: [String: String] = [:]
            var lastIndex: UInt64 = 0
            for n in 0..<Self.writes {
                let key = "big/\(n % 32)"
                let written = "\(n):" + value
                let target = others[n % others.count]
                let put = try await cluster.client(target).put(key, written)
                #expect(put.status == 200, "put \(n) through node \(target): \(put)")
                guard put.status == 200 else { break }
                lastIndex = max(lastIndex, try put.decode(PutResponse.self).index)
                acknowledged[key] = written
                #expect(openDescriptors(pid) >= Self.limit - 1, "node 1 got descriptors back during write \(n)")
            }
            #expect(cluster.isRunning(1), "node 1 exited: \(cluster.exitStatus(1).map { "\($0)" } ?? "")")
            let segmentAfter = try #require(newestSegment(wal))
            #expect(segmentAfter > segmentBefore, "node 1 started no new log segment while exhausted")
            #expect(openDescriptors(pid) >= Self.limit - 1, "the new segment found a descriptor free")
            let seen = try await cluster.status(leaderID == 1 ? others[0] : leaderID, timeout: .seconds(5))
            #expect(seen.term == term, "term moved from \(term) to \(seen.term) while node 1 was exhausted")
            #expect(seen.leaderID == leader.nodeID, "leader changed to \(seen.leaderID.map(String.init) ?? "none")")
            if !asLeader {
                // The leader sees node 1 acknowledge every entry: it replicated while it had no descriptor free.
                try await waitFor("node 1 to acknowledge index \(lastIndex) to the leader", timeout: .seconds(10)) {
                    let status = try await cluster.status(leaderID, timeout: .seconds(5))
                    return status.peers.first { $0.id == 1 }.map { $0.matchIndex >= lastIndex } ?? false
                }
            }

            // The clients leave: node 1 serves again, at the same term and role, with every write applied.
            hog.close()
            try await waitFor("node 1 to serve a write again", timeout: .seconds(10)) {
                try await cluster.client(1).put("after", "exhaustion").status == 200
            }
            #expect(try await cluster.client(1).value(of: "after") == "exhaustion")
            let status = try await cluster.status(1, timeout: .seconds(5))
            #expect(status.term == term && status.role == (asLeader ? .leader : .follower), "\(status.role) at \(status.term)")
            #expect(status.appliedIndex >= lastIndex)
            for (key, written) in acknowledged {
                let read = try await cluster.client(1).value(of: key, consistency: .linearizable)
                #expect(read == written, "node 1 lost acknowledged \(key)")
            }
            try await waitFor("node 1's descriptors to be released", timeout: .seconds(20)) {
                openDescriptors(pid) < Self.limit / 2
            }
        }
    }
}

// MARK: - Helpers

/// Client and metrics connections that take every descriptor a node has: each made one keep-alive request and
/// went quiet. Built on a blocking thread.
final class DescriptorHog: @unchecked Sendable {
    private var sockets: [BlockingSocket] = []
    private let lock = NSLock()
    /// Client connections served (404 for a missing key) before the cap.
    private(set) var clients = 0
    /// The status of the first client connection over the cap, `nil` when it got no answer.
    private(set) var clientRefusal: Int?
    /// The metrics port stopped accepting (a connection got no answer) before 300 connections.
    private(set) var metricsStopped = false

    init(clientPort: Int, metricsPort: Int) throws {
        while clientRefusal == nil {
            let socket = try connect(port: clientPort)
            sockets.append(socket)
            _ = socket.send(keepAliveGet("/get?key=hog"), deadline: .now + .seconds(1))
            guard case .response(let response) = socket.receive(deadline: .now + .seconds(1)) else { break }
            guard response.status == 404 else {
                clientRefusal = response.status
                break
            }
            clients += 1
        }
        for _ in 0..<300 {
            let socket = try connect(port: metricsPort)
            sockets.append(socket)
            _ = socket.send(keepAliveGet("/health"), deadline: .now + .seconds(1))
            guard case .response = socket.receive(deadline: .now + .seconds(1)) else {
                metricsStopped = true
                break
            }
        }
    }

    /// Closes every connection (idempotent).
    func close() {
        let open = lock.withLock {
            defer { sockets = [] }
            return sockets
        }
        for socket in open { socket.close() }
    }
}

/// The share of one core `pid` used over `window` (user and system time from /proc), `nil` if it is gone.
func cpuShare(of pid: Int32, over window: Duration) async throws -> Double? {
    func ticks() -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let end = text.lastIndex(of: ")")
        else { return nil }
        // After the command name: state is field 3, utime and stime are fields 14 and 15.
        let fields = text[text.index(after: end)...].split(separator: " ")
        guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
        return user + system
    }
    guard let before = ticks() else { return nil }
    try await Task.sleep(for: window)  // a rate is measured over a window: nothing to await instead
    guard let after = ticks() else { return nil }
    return Double(after - before) / Double(sysconf(Int32(_SC_CLK_TCK))) / (window.milliseconds / 1000)
}

/// The sequence number of the newest WAL segment in `directory` (`<sequence>-<first index>.seg`).
func newestSegment(_ directory: String) -> UInt64? {
    ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
        .filter { $0.hasSuffix(".seg") }
        .compactMap { $0.split(separator: "-").first.flatMap { UInt64($0) } }
        .max()
}
