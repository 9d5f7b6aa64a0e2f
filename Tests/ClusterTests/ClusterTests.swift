import ClusterAPI
import Foundation
import RaftCore
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Process-level tests of `dnode`: real processes on loopback, real signals, real disks.
///
/// They run the `dnode` built next to the test bundle (`DNODE_BIN` overrides; see `LocalCluster.locateBinary`).
/// The suite is serialized (each test runs 3 nodes on a two-core machine) and tagged `.cluster`; run only these
/// with `swift test --filter ClusterTests`, everything else with `swift test --skip ClusterTests`, or switch
/// them off with `SKIP_CLUSTER_TESTS=1`. Configs use short timeouts (election 300-600 ms, heartbeat 50 ms,
/// lease 150 ms, request timeout 1.5 s) so the whole suite takes well under two minutes.
extension Tag {
    /// Starts `dnode` processes.
    @Tag static var cluster: Self
    /// Kills, stops or restarts processes on purpose.
    @Tag static var faults: Self
}

let clusterTestsEnabled: Bool = {
    guard let value = ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"] else { return true }
    return value.isEmpty || value == "0"
}()

@Suite(
    "dnode cluster (processes)", .serialized, .tags(.cluster),
    .enabled(if: clusterTestsEnabled, "SKIP_CLUSTER_TESTS is set")
)
struct ClusterTests {
    // MARK: (a) election, replication, read consistency

    @Test("one leader within 2 x election_timeout_max; a write via any node reads back from every node")
    func electionAndReplication() async throws {
        try await withLocalCluster { cluster in
            // All three answer /status now (start() waited); the clock starts here.
            let (leader, elapsed) = try await measure {
                try await cluster.waitForLeader(timeout: cluster.options.electionTimeoutMax * 2)
            }
            #expect(elapsed <= cluster.options.electionTimeoutMax * 2)

            // Election safety as seen from outside: one leader per term, and everyone comes to name it.
            let agreed = try await waitFor("all nodes to name node \(leader.nodeID) leader", timeout: .seconds(2)) {
                () async -> [Int: NodeStatus]? in
                let all = await cluster.statuses()
                return all.count == 3 && all.values.allSatisfy({ $0.leaderID == all[Int(leader.nodeID)]?.nodeID })
                    ? all : nil
            }
            let leaders = agreed.values.filter { $0.role == .leader }
            #expect(leaders.count == 1, "leaders: \(leaders.map(\.nodeID))")
            #expect(agreed.values.filter { $0.role == .follower }.count == 2)
            for status in agreed.values {
                #expect(status.voters.sorted() == [1, 2, 3], "node \(status.nodeID) voters \(status.voters)")
                #expect(status.schemaVersion == 1)
            }

            // A write through each node (followers forward), answered by the node called, with X-Leader-Id.
            var written: [(key: String, value: String)] = []
            for id in cluster.ids {
                let key = "a-via-\(id)"
                let value = "value \(id) ✓"
                let response = try await cluster.client(id).put(key, value)
                #expect(response.status == 200, "put via node \(id): \(response)")
                #expect(response.leaderIDHeader == leader.nodeID, "X-Leader-Id via node \(id): \(response.headers)")
                let body = try response.decode(PutResponse.self)
                #expect(body.key == key && body.index > 0)
                written.append((key, value))
            }

            // Linearizable reads from every node see every acknowledged write.
            for (key, value) in written {
                for id in cluster.ids {
                    let read = try await cluster.client(id).getOK(key, consistency: .linearizable)
                    #expect(read.value == value, "linearizable read of \(key) on node \(id)")
                }
            }
            // Each node's own state machine catches up (eventual reads, polled).
            for (key, value) in written {
                for id in cluster.ids {
                    try await waitFor("node \(id) to apply \(key) locally", timeout: .seconds(3)) {
                        try await cluster.client(id).value(of: key, consistency: .eventual) == value
                    }
                }
            }
            // An absent key is 404 key_not_found, on a follower too.
            let follower = cluster.ids.first { $0 != Int(leader.nodeID) }!
            let missing = try await cluster.client(follower).get("a-never-written", consistency: .linearizable)
            #expect(missing.status == 404 && missing.errorEnvelope?.error.code == "key_not_found", "\(missing)")

            // GET /cluster from a follower names the leader and the three members.
            let view = try await cluster.client(follower).clusterOK()
            #expect(view.leaderID == leader.nodeID)
            #expect(view.members.map(\.id).sorted() == [1, 2, 3])
        }
    }

    @Test("delete and compare-and-set through a follower")
    func deleteAndCas() async throws {
        try await withLocalCluster { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            let follower = cluster.client(cluster.ids.first { $0 != Int(leader.nodeID) }!)

            let created = try await follower.cas("c", expected: nil, value: "one")
            #expect(try created.decode(CasResponse.self).succeeded, "\(created)")
            let stale = try await follower.cas("c", expected: "zero", value: "two")
            #expect(try stale.decode(CasResponse.self).succeeded == false, "\(stale)")
            let swapped = try await follower.cas("c", expected: "one", value: "two")
            #expect(try swapped.decode(CasResponse.self).succeeded, "\(swapped)")
            #expect(try await follower.value(of: "c", consistency: .linearizable) == "two")

            let deleted = try await follower.delete("c")
            #expect(try deleted.decode(DeleteResponse.self).deleted, "\(deleted)")
            let again = try await follower.delete("c")
            #expect(try again.decode(DeleteResponse.self).deleted == false, "\(again)")
            #expect(try await follower.value(of: "c", consistency: .linearizable) == nil)
        }
    }

    // MARK: (b) leader crash

    @Test("kill -9 the leader: new leader within 3 s, no acknowledged write lost, old leader catches up", .tags(.faults))
    func leaderCrash() async throws {
        try await withLocalCluster { cluster in
            let oldLeader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let survivors = cluster.ids.filter { $0 != oldLeader }

            let writes = WriteLog()
            let writer = Task { await runWriter(cluster: cluster, log: writes, prefix: "b") }
            try await waitFor("the writer's first acknowledgements", timeout: .seconds(5)) { writes.ackCount >= 20 }

            try await cluster.crash(oldLeader)
            let killedAt = ContinuousClock.now

            // A new leader accepts a write within 3 s of the kill (probing through the survivors).
            var probe = 0
            try await waitFor("a surviving node to acknowledge a write", timeout: .seconds(3)) { () async throws -> Bool in
                probe += 1
                let key = "b-probe-\(probe)"
                let client = cluster.client(survivors[probe % 2]).withTimeout(.milliseconds(800))
                guard let response = try? await client.put(key, "p") else { return false }
                if response.status == 200 { writes.recordAck(key: key, value: "p", node: client.nodeID) }
                return response.status == 200
            }
            let failover = killedAt.duration(to: .now)
            #expect(failover <= .seconds(3), "failover took \(failover)")

            // Keep writing a little under the new leader, then stop the writer.
            let acksAtFailover = writes.ackCount
            try await waitFor("writes acknowledged under the new leader", timeout: .seconds(3)) {
                writes.ackCount >= acksAtFailover + 20
            }
            writes.requestStop()
            await writer.value

            let newLeader = try await cluster.waitForLeader(among: survivors, requireMajority: true)
            #expect(Int(newLeader.nodeID) != oldLeader)

            // Every acknowledged write is there, read linearizably through the survivors.
            let acked = writes.acked
            var lost: [String] = []
            for (index, write) in acked.enumerated() {
                let client = cluster.client(survivors[index % survivors.count])
                let value = try await client.value(of: write.key, consistency: .linearizable)
                if value != write.value { lost.append("\(write.key) (acked by node \(write.node)): got \(value ?? "404")") }
            }
            #expect(lost.isEmpty, "lost \(lost.count) of \(acked.count) acknowledged writes: \(lost.prefix(20))")
            #expect(acked.count > 40, "outcomes: \(writes.summary)")

            // The old leader restarts on its data, rejoins as a follower and catches up. (Leadership may move
            // again meanwhile; what matters is that it follows some leader and applies everything committed.)
            let target = try await cluster.status(Int(newLeader.nodeID)).commitIndex
            try await cluster.restart(oldLeader)
            let caughtUp = try await waitFor(
                "node \(oldLeader) to follow and apply up to \(target)", timeout: .seconds(10)
            ) { () async throws -> NodeStatus? in
                let status = try await cluster.status(oldLeader)
                return status.role == .follower && status.leaderID != nil && status.appliedIndex >= target
                    ? status : nil
            }
            #expect(caughtUp.term >= newLeader.term)
            let last = acked.last!
            #expect(try await cluster.client(oldLeader).value(of: last.key, consistency: .eventual) == last.value)
        }
    }

    // MARK: (c) no quorum

    @Test("a follower that missed compacted entries catches up by InstallSnapshot over the peer connection", .tags(.faults))
    func snapshotCatchUp() async throws {
        var options = LocalCluster.Options()
        options.maxLogEntriesBeforeSnapshot = 40
        options.retainedLogEntries = 5
        try await withLocalCluster(options: options) { cluster in
            let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let lagging = cluster.ids.first { $0 != leader }!
            try await cluster.crash(lagging)
            let writer = cluster.client(leader)
            for i in 0..<150 { _ = try await writer.putOK("s\(i)", "v\(i)") }
            // The leader has compacted past everything the lagging node has.
            let compacted = try await waitFor("the leader to snapshot and compact", timeout: .seconds(5)) {
                () async throws -> NodeStatus? in
                let status = try await cluster.status(leader)
                return status.snapshotIndex >= 100 ? status : nil
            }
            try await cluster.restart(lagging)
            let caughtUp = try await waitFor(
                "node \(lagging) to install the snapshot and apply up to \(compacted.commitIndex)", timeout: .seconds(10)
            ) { () async throws -> NodeStatus? in
                let status = try await cluster.status(lagging)
                return status.appliedIndex >= compacted.commitIndex ? status : nil
            }
            // The leader kept no log below its snapshot that the lagging node could use: this was InstallSnapshot.
            #expect(caughtUp.snapshotIndex > 0)
            let local = cluster.client(lagging)
            #expect(try await local.value(of: "s0", consistency: .eventual) == "v0")
            #expect(try await local.value(of: "s149", consistency: .eventual) == "v149")
            // And it keeps following the log after the snapshot.
            _ = try await writer.putOK("after-snapshot", "yes")
            try await waitFor("the write after the snapshot to reach node \(lagging)", timeout: .seconds(5)) {
                try await local.value(of: "after-snapshot", consistency: .eventual) == "yes"
            }
        }
    }

    @Test("two of three down: writes answer 503 or 504, never 200", .tags(.faults))
    func noQuorumNoAcknowledgement() async throws {
        try await withLocalCluster { cluster in
            let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let followers = cluster.ids.filter { $0 != leader }
            try await cluster.client(leader).putOK("c-before", "v")

            for id in followers { cluster.sigkill(id) }
            for id in followers { try await cluster.waitForExit(id, timeout: .seconds(5)) }

            // The request timeout is 1.5 s; the client waits 4 s, so "no answer" is a failure too.
            let client = cluster.client(leader).withTimeout(.seconds(4))
            var statuses: [Int] = []
            try await repeatFor(.seconds(3), interval: .milliseconds(50)) {
                let response = try await client.put("c-during-\(statuses.count)", "x")
                statuses.append(response.status)
                #expect([503, 504].contains(response.status), "write without quorum: \(response)")
                let code = response.errorEnvelope?.error.code
                #expect(
                    response.status == 504 ? code == "timeout" : ["no_leader", "unavailable"].contains(code ?? ""),
                    "error envelope: \(response)")
            }
            #expect(statuses.count >= 2, "statuses: \(statuses)")
            #expect(!statuses.contains(200))

            // Nor may a linearizable read be served without a quorum.
            let read = try await client.get("c-before", consistency: .linearizable)
            #expect([503, 504].contains(read.status), "linearizable read without quorum: \(read)")

            // One follower back: the cluster has a quorum again and writes succeed.
            try await cluster.restart(followers[0])
            try await waitFor("a write to succeed with quorum restored", timeout: .seconds(5)) {
                (try? await cluster.client(followers[0]).put("c-after", "v").status) == 200
            }
            #expect(try await cluster.client(followers[0]).value(of: "c-before", consistency: .linearizable) == "v")
        }
    }

    // MARK: (d) full restart

    @Test("full-cluster kill -9 and restart keeps every acknowledged write", .tags(.faults), arguments: ["DiskFirst", "MemFirst"])
    func fullRestart(strategy: String) async throws {
        var options = LocalCluster.Options()
        options.strategy = strategy
        try await withLocalCluster("fullRestart-\(strategy)", options: options) { cluster in
            try await cluster.waitForLeader(requireMajority: true)
            var expected: [String: String?] = [:]
            for index in 0..<60 {
                let key = "d-\(index)"
                let value = "\(strategy)-\(index)-" + String(repeating: "x", count: index)
                try await cluster.client(cluster.ids[index % 3]).putOK(key, value)
                expected[key] = value
            }
            try await cluster.client(2).putOK("d-0", "overwritten")
            expected["d-0"] = "overwritten"
            let deleted = try await cluster.client(3).delete("d-1")
            #expect(deleted.status == 200, "\(deleted)")
            expected["d-1"] = .some(nil)

            for id in cluster.ids { cluster.sigkill(id) }
            for id in cluster.ids { try await cluster.waitForExit(id, timeout: .seconds(5)) }
            try await cluster.start()
            try await cluster.waitForLeader(timeout: .seconds(10), requireMajority: true)

            for (index, key) in expected.keys.sorted().enumerated() {
                let value = try await cluster.client(cluster.ids[index % 3]).value(of: key, consistency: .linearizable)
                #expect(value == expected[key]!, "\(key) after restart (\(strategy))")
            }
            // Every node replays its own log up to the last write.
            for id in cluster.ids {
                try await waitFor("node \(id) to apply d-59 locally", timeout: .seconds(5)) {
                    try await cluster.client(id).value(of: "d-59", consistency: .eventual) == expected["d-59"]!
                }
            }
        }
    }

    // MARK: (e) bad input

    @Test("bad HTTP input gets the error envelope or a closed connection, and the node keeps serving")
    func badInput() async throws {
        try await withLocalCluster { cluster in
            let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let follower = cluster.ids.first { $0 != leader }!
            for id in [follower, leader] {
                let client = cluster.client(id)
                for (index, badCase) in BadInput.cases.enumerated() {
                    let outcome = try await client.exchange(
                        badCase.bytes(client.client), halfClose: badCase.halfClose, timeout: .seconds(5))
                    let verdict = badCase.expectation.check(outcome)
                    #expect(verdict == nil, "node \(id), \(badCase.name): \(verdict ?? "")")

                    // The node still serves normal requests afterwards.
                    let key = "e-alive-\(id)-\(index)"
                    let put = try await client.put(key, "ok")
                    #expect(put.status == 200, "put after \(badCase.name) on node \(id): \(put)")
                    #expect(try await client.value(of: key, consistency: .linearizable) == "ok")
                }
                #expect(cluster.isRunning(id))
            }
        }
    }

    // MARK: (f) bad config

    @Test(
        "a bad config exits 78 with a message naming the file",
        arguments: [
            ("node_id = 1\n", "node_id = 0\n", "cluster.node_id"),
            ("election_timeout_min = ", "electon_timeout_min = ", "electon_timeout_min"),
        ])
    func badConfig(original: String, replacement: String, mention: String) async throws {
        let cluster = try LocalCluster(nodes: 1)
        defer { cluster.stop() }
        let text = cluster.generatedConfig(for: 1)
        #expect(text.contains(original))
        try cluster.writeConfig(1, text.replacingOccurrences(of: original, with: replacement))
        try cluster.launch(1)
        let exit = try await cluster.waitForExit(1, timeout: .seconds(10))
        #expect(exit == .exited(78), "\(cluster.diagnostics())")
        let stderr = cluster.stderrText(1)
        #expect(stderr.contains(cluster.node(1).configPath), "stderr: \(stderr)")
        #expect(stderr.contains(mention), "stderr: \(stderr)")
    }

    // MARK: (g) graceful stop

    @Test("SIGTERM exits 0 and the log file records the node's role", .tags(.faults))
    func gracefulStop() async throws {
        try await withLocalCluster(start: false) { cluster in
            // Node 1 finds its config through CONFIG_PATH without the extension, as `make start-node1` does.
            let configBase = String(cluster.node(1).configPath.dropLast(".toml".count))
            try cluster.launch(1, arguments: [], environment: ["CONFIG_PATH": configBase])
            try cluster.launch(2)
            try cluster.launch(3)
            for id in cluster.ids { try await cluster.waitReady(id) }
            try await cluster.waitForLeader(requireMajority: true)

            for id in cluster.ids { cluster.terminate(id) }
            for id in cluster.ids {
                let exit = try await cluster.waitForExit(id, timeout: .seconds(10))
                #expect(exit == .exited(0), "node \(id): \(exit)")
                let log = cluster.logText(id)
                #expect(
                    log.contains("Became leader") || log.contains("Became follower"),
                    "node \(id) d.log:\n\(log.suffix(2000))")
            }
        }
    }

    // MARK: (h) log line format

    @Test("the leader writes `Became leader node=N term=T`; no two leaders share a term")
    func leaderLogLine() async throws {
        try await withLocalCluster { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            let id = Int(leader.nodeID)
            let line = try await waitFor("node \(id) to log its election", timeout: .seconds(2)) {
                RoleLine.parse(cluster.logText(id)).last { $0.role == "leader" }
            }
            #expect(line.node == leader.nodeID)
            #expect(line.term == leader.term)

            // Every role line names the node that wrote it; each term has at most one leader.
            var leadersByTerm: [UInt64: Set<UInt64>] = [:]
            for node in cluster.ids {
                let lines = RoleLine.parse(cluster.logText(node))
                #expect(!lines.isEmpty, "node \(node) logged no role change")
                for entry in lines {
                    #expect(entry.node == UInt64(node), "node \(node) logged: \(entry.text)")
                    if entry.role == "leader" { leadersByTerm[entry.term, default: []].insert(entry.node) }
                }
            }
            #expect(leadersByTerm.values.allSatisfy { $0.count == 1 }, "leaders by term: \(leadersByTerm)")
        }
    }

    // MARK: SIGSTOP

    @Test("a paused leader is replaced, and steps down when it resumes", .tags(.faults))
    func pausedLeader() async throws {
        try await withLocalCluster { cluster in
            let old = try await cluster.waitForLeader(requireMajority: true)
            let oldID = Int(old.nodeID)
            cluster.pause(oldID)
            let others = cluster.ids.filter { $0 != oldID }
            let replacement = try await cluster.waitForLeader(
                timeout: .seconds(5), among: others, requireMajority: false)
            #expect(replacement.term > old.term)
            try await cluster.client(others[0]).putOK("s-while-paused", "v")

            cluster.resume(oldID)
            try await waitFor("node \(oldID) to step down after SIGCONT", timeout: .seconds(5)) {
                let status = try await cluster.status(oldID)
                return status.role == .follower && status.term >= replacement.term
            }
            try await waitFor("node \(oldID) to apply the write made while it was paused", timeout: .seconds(5)) {
                try await cluster.client(oldID).value(of: "s-while-paused", consistency: .eventual) == "v"
            }
        }
    }
}

// MARK: - Writer

/// What a background writer saw: acknowledged writes (key, value, node, time) and a count per outcome.
final class WriteLog: @unchecked Sendable {
    struct Ack: Sendable {
        var key: String
        var value: String
        var node: Int
        var at: ContinuousClock.Instant
    }

    private let lock = NSLock()
    private var acks: [Ack] = []
    private var outcomes: [String: Int] = [:]
    private var stop = false

    func recordAck(key: String, value: String, node: Int) {
        lock.withLock {
            acks.append(Ack(key: key, value: value, node: node, at: .now))
            outcomes["200", default: 0] += 1
        }
    }

    func recordOutcome(_ outcome: String) {
        lock.withLock { outcomes[outcome, default: 0] += 1 }
    }

    func requestStop() { lock.withLock { stop = true } }
    var stopRequested: Bool { lock.withLock { stop } }
    var ackCount: Int { lock.withLock { acks.count } }
    var acked: [Ack] { lock.withLock { acks } }
    var summary: [String: Int] { lock.withLock { outcomes } }
}

/// Writes unique keys round-robin through every node until asked to stop (or 5000 writes), recording each
/// acknowledgement. Refused connections (a dead node) and errors are counted, never retried with the same key.
func runWriter(cluster: LocalCluster, log: WriteLog, prefix: String, among: [Int]? = nil) async {
    var index = 0
    let targets = among ?? cluster.ids
    while !log.stopRequested && index < 5000 {
        let id = targets[index % targets.count]
        let key = "\(prefix)-w-\(index)"
        let value = "v\(index)"
        index += 1
        do {
            let response = try await cluster.client(id).withTimeout(.seconds(2)).put(key, value)
            if response.status == 200 {
                log.recordAck(key: key, value: value, node: id)
            } else {
                log.recordOutcome("\(response.status)")
            }
        } catch let error as HTTPClientError {
            log.recordOutcome(error.isConnectFailure ? "refused" : "transport")
            if error.isConnectFailure { try? await Task.sleep(for: .milliseconds(5)) }
        } catch {
            log.recordOutcome("other")
        }
    }
}

// MARK: - Role lines

/// One `Became <role> node=N term=T ...` line of a node's log file.
struct RoleLine: Sendable {
    var role: String
    var node: UInt64
    var term: UInt64
    var text: String

    /// Every role line in `log`, in order. The line may carry a prefix (time, level) before `Became`.
    static func parse(_ log: String) -> [RoleLine] {
        log.split(separator: "\n").compactMap { line -> RoleLine? in
            guard let start = line.range(of: "Became ") else { return nil }
            let words = line[start.upperBound...].split(separator: " ")
            guard let role = words.first else { return nil }
            var fields: [String: String] = [:]
            for word in words.dropFirst() {
                let pair = word.split(separator: "=", maxSplits: 1)
                if pair.count == 2 { fields[String(pair[0])] = String(pair[1]) }
            }
            guard let node = fields["node"].flatMap({ UInt64($0) }), let term = fields["term"].flatMap({ UInt64($0) })
            else { return nil }
            return RoleLine(role: String(role), node: node, term: term, text: String(line))
        }
    }
}

// MARK: - Bad input cases

/// What a bad request must get back.
enum Expectation: Sendable {
    /// A response with one of `statuses` carrying the SPEC error envelope (with one of `codes`, if given).
    case envelope(statuses: Set<Int>, codes: Set<String>?)
    /// The same, or the server closing the connection without a response.
    case envelopeOrClose(statuses: Set<Int>, codes: Set<String>?)

    /// `nil` when `outcome` is acceptable, otherwise why not.
    func check(_ outcome: ExchangeOutcome) -> String? {
        let statuses: Set<Int>
        let codes: Set<String>?
        let closeAllowed: Bool
        switch self {
        case .envelope(let s, let c): (statuses, codes, closeAllowed) = (s, c, false)
        case .envelopeOrClose(let s, let c): (statuses, codes, closeAllowed) = (s, c, true)
        }
        switch outcome {
        case .closed:
            return closeAllowed ? nil : "expected a response, got \(outcome)"
        case .timedOut:
            return "expected a response\(closeAllowed ? " or a close" : ""), got \(outcome)"
        case .response(let response):
            guard statuses.contains(response.status) else {
                return "expected status \(statuses.sorted()), got \(response)"
            }
            guard let envelope = response.errorEnvelope else {
                return "expected the error envelope, got \(response)"
            }
            if let codes, !codes.contains(envelope.error.code) {
                return "expected code \(codes.sorted()), got \(envelope.error.code)"
            }
            return nil
        }
    }
}

struct BadInput: Sendable {
    var name: String
    var bytes: @Sendable (RawHTTPClient) -> Data
    var halfClose = false
    var expectation: Expectation

    private static func request(_ method: String, _ target: String, body: Data? = nil, extraHeaders: String = "")
        -> @Sendable (RawHTTPClient) -> Data
    {
        { client in
            var head = "\(method) \(target) HTTP/1.1\r\nHost: \(client.host):\(client.port)\r\nConnection: close\r\n"
            head += extraHeaders
            if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
            var data = Data((head + "\r\n").utf8)
            if let body { data.append(body) }
            return data
        }
    }

    private static let invalid400: Expectation = .envelope(statuses: [400], codes: ["invalid_request"])

    static let cases: [BadInput] = [
        BadInput(
            name: "malformed request line", bytes: { _ in Data("THIS IS NOT HTTP\r\n\r\n".utf8) },
            expectation: .envelopeOrClose(statuses: [400], codes: nil)),
        BadInput(
            name: "header line without a colon",
            bytes: { client in Data("GET /get?key=a HTTP/1.1\r\nHost \(client.host)\r\n\r\n".utf8) },
            expectation: .envelopeOrClose(statuses: [400], codes: nil)),
        BadInput(
            name: "invalid JSON", bytes: request("POST", "/put", body: Data(#"{"key": "a", "value": "#.utf8)),
            expectation: invalid400),
        BadInput(
            name: "JSON that is not an object", bytes: request("POST", "/put", body: Data("[1,2,3]".utf8)),
            expectation: invalid400),
        BadInput(
            name: "missing value", bytes: request("POST", "/put", body: Data(#"{"key":"a"}"#.utf8)),
            expectation: invalid400),
        BadInput(
            name: "wrong type", bytes: request("POST", "/put", body: Data(#"{"key":1,"value":"v"}"#.utf8)),
            expectation: invalid400),
        BadInput(
            name: "cas without expected", bytes: request("POST", "/cas", body: Data(#"{"key":"a","value":"v"}"#.utf8)),
            expectation: invalid400),
        BadInput(
            name: "delete without key", bytes: request("POST", "/delete", body: Data("{}".utf8)),
            expectation: invalid400),
        BadInput(
            name: "invalid UTF-8 in JSON",
            bytes: request(
                "POST", "/put",
                body: Data(#"{"key":"bad-"#.utf8) + Data([0xFF, 0xFE, 0xC3]) + Data(#"","value":"v"}"#.utf8)),
            expectation: invalid400),
        BadInput(name: "get without key", bytes: request("GET", "/get"), expectation: invalid400),
        BadInput(
            name: "unknown consistency", bytes: request("GET", "/get?key=a&consistency=bogus"),
            expectation: invalid400),
        BadInput(
            name: "key over 4 KiB",
            bytes: request(
                "POST", "/put",
                body: Data(#"{"key":""#.utf8) + Data(repeating: UInt8(ascii: "k"), count: 4097)
                    + Data(#"","value":"v"}"#.utf8)),
            expectation: .envelope(statuses: [413], codes: ["too_large"])),
        BadInput(
            name: "value over 1 MiB",
            bytes: request(
                "POST", "/put",
                body: Data(#"{"key":"big","value":""#.utf8) + Data(repeating: UInt8(ascii: "v"), count: 1_048_577)
                    + Data(#""}"#.utf8)),
            expectation: .envelopeOrClose(statuses: [413], codes: ["too_large"])),
        BadInput(
            name: "100 MiB Content-Length (4 MiB sent)",
            bytes: { client in
                var data = Data(
                    ("POST /put HTTP/1.1\r\nHost: \(client.host):\(client.port)\r\nContent-Type: application/json\r\n"
                        + "Content-Length: \(100 * 1024 * 1024)\r\n\r\n").utf8)
                data.append(Data(#"{"key":"huge","value":""#.utf8))
                data.append(Data(repeating: UInt8(ascii: "x"), count: 4 * 1024 * 1024))
                return data
            },
            expectation: .envelopeOrClose(statuses: [413], codes: ["too_large"])),
        BadInput(
            name: "unknown route", bytes: request("GET", "/no-such-route"),
            expectation: .envelope(statuses: [404], codes: ["not_found"])),
        BadInput(
            name: "unknown route (POST)", bytes: request("POST", "/no-such-route", body: Data("{}".utf8)),
            expectation: .envelope(statuses: [404], codes: ["not_found"])),
        BadInput(
            name: "wrong method on a known route", bytes: request("DELETE", "/put"),
            expectation: .envelope(statuses: [404, 405], codes: nil)),
        BadInput(
            name: "unknown method", bytes: request("BREW", "/put"),
            expectation: .envelopeOrClose(statuses: [400, 404, 405, 501], codes: nil)),
        BadInput(
            name: "4 KiB of random bytes, then end of stream",
            bytes: { _ in
                var generator = SplitMix64(seed: 0x5EED)
                var data = Data((0..<4096).map { _ in UInt8(truncatingIfNeeded: generator.next()) })
                data.append(Data("\r\n\r\n".utf8))
                return data
            },
            halfClose: true,
            expectation: .envelopeOrClose(statuses: [400, 404, 405, 413, 414, 431, 501], codes: nil)),
    ]
}

