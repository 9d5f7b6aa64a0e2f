import ClusterAPI
import ClusterClient
import Foundation
import HTTPClient
import NIOConcurrencyHelpers
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Issue #17: watch, transactions (processes). Backups are in DctlTests (`SnapshotBackupTests`).
@Suite(
    "watch and txn (processes)", .serialized, .tags(.cluster),
    .enabled(if: clusterTestsEnabled, "SKIP_CLUSTER_TESTS is set")
)
struct CoordinationTests {
    /// Events a watch handed over, in order, gathered on the watch's thread.
    final class Collected: Sendable {
        let box = NIOLockedValueBox<[WatchEvent]>([])
        var events: [WatchEvent] { box.withLockedValue { $0 } }
        var count: Int { box.withLockedValue { $0.count } }
    }

    private func putIndexes(_ client: NodeClient, prefix: String, range: Range<Int>) async throws -> [String: UInt64] {
        var indexes: [String: UInt64] = [:]
        for i in range {
            let key = "\(prefix)\(String(format: "%03d", i))"
            indexes[key] = try await client.putOK(key, "v\(i)").index
        }
        return indexes
    }

    @Test("a watch on a follower sees every write made through the leader, in order, and resumes on another node after its node is killed", .tags(.faults))
    func followerWatchResumesElsewhere() async throws {
        try await withLocalCluster { cluster in
            let leaderID = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let followers = cluster.ids.filter { $0 != leaderID }
            let watched = followers[0]
            let leader = cluster.client(leaderID)
            let start = try await cluster.status(watched).appliedIndex + 1
            let collected = Collected()
            let targets = [watched, followers[1]].map { id in
                NodeTarget(id: UInt64(id), client: Endpoint(host: "127.0.0.1", port: cluster.node(id).clientPort), metrics: nil)
            }
            let total = 60
            let finished = Task.detached {
                try await offloaded {
                    var watch = ResumingWatch(targets: targets, selector: "prefix=w%2F", since: start)
                    try watch.run(
                        onEvent: { event in
                            collected.box.withLockedValue { $0.append(event) }
                            return collected.count < total
                        },
                        onNote: { _ in })
                }
            }
            var indexes = try await putIndexes(leader, prefix: "w/", range: 0..<(total / 2))
            try await waitFor("the follower's watch to see the first half", timeout: .seconds(10)) {
                collected.count == total / 2
            }
            try await cluster.crash(watched)
            for (key, index) in try await putIndexes(leader, prefix: "w/", range: (total / 2)..<total) {
                indexes[key] = index
            }
            try await finished.value
            let events = collected.events
            #expect(events.count == total)
            #expect(events.map(\.key) == (0..<total).map { "w/\(String(format: "%03d", $0))" })
            #expect(events.allSatisfy { $0.type == .put && indexes[$0.key] == $0.index })
            #expect(events.map(\.value) == (0..<total).map { "v\($0)" })
            #expect(zip(events, events.dropFirst()).allSatisfy { $0.index < $1.index })
        }
    }

    @Test("since older than the history is 410 compacted, naming the oldest index, which then works")
    func compactedHistory() async throws {
        var options = LocalCluster.Options()
        options.extraTOML = "[watch]\nhistory_entries = 10\n"
        try await withLocalCluster(nodes: 1, options: options) { cluster in
            _ = try await cluster.waitForLeader()
            let client = cluster.client(1)
            _ = try await putIndexes(client, prefix: "c/", range: 0..<30)
            let refused = try await client.send("GET", "/watch?prefix=c%2F&since=1")
            #expect(refused.status == 410)
            let error = try refused.decode(APIErrorEnvelope.self).error
            #expect(error.code == .compacted)
            let oldest = try #require(error.oldestIndex)
            #expect(oldest > 1)
            // From the oldest index on, the history is there: the first event is at it.
            let (end, first) = try await offloaded { () throws -> (WatchEnd, ServerSentEvent?) in
                var first: ServerSentEvent?
                let end = try WatchConnection.run(
                    endpoint: client.client.endpoint, path: "/watch?prefix=c%2F&since=\(oldest)", connectTimeout: .seconds(2)
                ) { event in
                    first = event
                    return false
                }
                return (end, first)
            }
            #expect(end == .stopped)
            #expect(first?.id == String(oldest))
            #expect(first?.event == "put")
        }
    }

    @Test("a key's TTL running out is reported as event: expire, without another write")
    func expiryIsReportedOnAnIdleCluster() async throws {
        try await withLocalCluster(nodes: 1) { cluster in
            _ = try await cluster.waitForLeader()
            let client = cluster.client(1)
            let put = try NodeClient.require200(
                try await client.send("POST", "/put", body: try WireJSON.encode(PutRequest(key: "ttl/a", value: "v", ttlSecs: 1))),
                "put").decode(PutResponse.self)
            let events = try await offloaded { () throws -> [ServerSentEvent] in
                var events: [ServerSentEvent] = []
                _ = try WatchConnection.run(
                    endpoint: client.client.endpoint, path: "/watch?key=ttl%2Fa&since=\(put.index)",
                    connectTimeout: .seconds(2)
                ) { event in
                    if event.event != "progress" { events.append(event) }
                    return event.event != "expire"
                }
                return events
            }
            #expect(events.map(\.event) == ["put", "expire"])
            let expired = try WireJSON.decode(WatchEvent.self, from: Data(events[1].data.utf8))
            #expect(expired.type == .expire && expired.key == "ttl/a" && expired.index > put.index)
            #expect(try await client.get("ttl/a").status == 404)
        }
    }

    @Test("a watcher that stops reading is ended with event: dropped while the node's buffered bytes stay bounded")
    func slowWatcherIsDropped() async throws {
        var options = LocalCluster.Options()
        let bufferBytes = 262_144
        options.environment = ["RAFT__MAX_VALUE_BYTES": "65536"]
        options.extraTOML = "[watch]\nbuffer_bytes = \(bufferBytes)\n"
        try await withLocalCluster(nodes: 1, options: options) { cluster in
            _ = try await cluster.waitForLeader()
            let client = cluster.client(1)
            let socket = try BlockingSocket.connect(
                client.client.endpoint, deadline: .now + .seconds(2), timeout: .seconds(2))
            defer { socket.close() }
            let request = requestBytes(method: "GET", endpoint: client.client.endpoint, path: "/watch?prefix=s%2F")
            #expect(socket.send(request, deadline: .now + .seconds(2)).complete)
            // Read the response head, then stop reading.
            var received = Data()
            try await waitFor("the watch's response head", timeout: .seconds(5)) {
                received.append(contentsOf: Self.readAvailable(socket))
                return String(decoding: received, as: UTF8.self).contains("\r\n\r\n")
            }
            #expect(String(decoding: received, as: UTF8.self).hasPrefix("HTTP/1.1 200"))
            try await waitFor("the watcher to register", timeout: .seconds(5)) {
                try await Self.gauge(client, "dengine_watchers") == 1
            }
            // Far more than the socket buffers of both ends can hold.
            let value = String(repeating: "x", count: 60_000)
            var maxBuffered = 0
            for i in 0..<400 {
                _ = try await client.putOK("s/\(i % 50)", value)
                if i % 20 == 0 { maxBuffered = max(maxBuffered, try await Self.gauge(client, "dengine_watch_buffered_bytes")) }
            }
            #expect(maxBuffered <= bufferBytes, "the node held \(maxBuffered) bytes for the watcher")
            try await waitFor("the node to drop the watcher", timeout: .seconds(10)) {
                try await Self.gauge(client, "dengine_watchers") == 0
            }
            // Resume reading: everything queued, then the final event, then the end of the stream.
            let head = received
            let text = try await offloaded { () -> String in
                var all = head
                let deadline = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < deadline {
                    guard BlockingSocket.wait(socket.fd, events: Int16(POLLIN), deadline: deadline) else { break }
                    let chunk = Self.readAvailable(socket)
                    if chunk.isEmpty { break }
                    all.append(chunk)
                }
                return String(decoding: all, as: UTF8.self)
            }
            #expect(text.contains("event: dropped"))
            #expect(text.contains("fell behind"))
            // What came before it is a gapless prefix: ids increase by one put per index.
            // (Split by bytes: "\r\n" of the chunked framing is one Character.)
            let ids = Array(text.utf8).split(separator: UInt8(ascii: "\n"))
                .map { String(decoding: $0, as: UTF8.self) }
                .filter { $0.hasPrefix("id: ") }
                .compactMap { UInt64($0.dropFirst(4)) }
            #expect(!ids.isEmpty)
            #expect(zip(ids, ids.dropFirst()).allSatisfy { $1 >= $0 && $1 <= $0 + 1 })
            #expect(try await Self.gauge(client, "dengine_watch_buffered_bytes") == 0)
        }
    }

    @Test("bank transfers by concurrent clients through every node: the total never changes, and a watch sees both legs of each transfer at one index")
    func bankTransfersKeepTheTotal() async throws {
        try await withLocalCluster { cluster in
            _ = try await cluster.waitForLeader(requireMajority: true)
            let accounts = (0..<5).map { "acct/\($0)" }
            let leader = cluster.client(Int(try await cluster.waitForLeader().nodeID))
            var lastSetup: UInt64 = 0
            for account in accounts { lastSetup = try await leader.putOK(account, "100").index }
            let start = lastSetup + 1
            let collected = Collected()
            let target = NodeTarget(id: 2, client: Endpoint(host: "127.0.0.1", port: cluster.node(2).clientPort), metrics: nil)
            let watching = Task.detached {
                try await offloaded {
                    var watch = ResumingWatch(targets: [target], selector: "prefix=acct%2F", since: start)
                    try watch.run(
                        onEvent: { event in
                            collected.box.withLockedValue { $0.append(event) }
                            return event.key != "acct/done"
                        },
                        onNote: { _ in })
                }
            }
            let committed = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        let client = cluster.client(worker % 3 + 1)
                        var rng = SystemRandomNumberGenerator()
                        for _ in 0..<15 {
                            let from = accounts[Int.random(in: 0..<5, using: &rng)]
                            let to = accounts.filter { $0 != from }[Int.random(in: 0..<4, using: &rng)]
                            // Read both, then move up to 10 if nobody changed them meanwhile (retried otherwise).
                            for _ in 0..<20 {
                                let a = try await client.getOK(from, consistency: .linearizable).value
                                let b = try await client.getOK(to, consistency: .linearizable).value
                                let amount = min(Int(a) ?? 0, Int.random(in: 1...10, using: &rng))
                                let txn = TxnRequest(
                                    compare: [
                                        TxnCompare(key: from, op: .value, cmp: .equal, target: .string(a)),
                                        TxnCompare(key: to, op: .value, cmp: .equal, target: .string(b)),
                                    ],
                                    success: [
                                        TxnOp(op: .put, key: from, value: String((Int(a) ?? 0) - amount)),
                                        TxnOp(op: .put, key: to, value: String((Int(b) ?? 0) + amount)),
                                    ])
                                let response = try await client.send("POST", "/txn", body: try WireJSON.encode(txn))
                                let answer = try NodeClient.require200(response, "txn").decode(TxnResponse.self)
                                if answer.succeeded {
                                    committed.withLockedValue { $0 += 1 }
                                    break
                                }
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            var total = 0
            for account in accounts { total += Int(try await leader.getOK(account, consistency: .linearizable).value) ?? -1 }
            #expect(total == 500)
            #expect(committed.withLockedValue { $0 } > 0)
            _ = try await leader.putOK("acct/done", "1")
            try await watching.value
            // Every committed transfer shows as two puts at the same index, one after the other.
            let puts = collected.events.filter { $0.key != "acct/done" }
            let byIndex = Dictionary(grouping: puts, by: \.index)
            #expect(byIndex.count == committed.withLockedValue { $0 })
            #expect(byIndex.values.allSatisfy { $0.count == 2 })
            // Replaying the watch gives the same balances as the store.
            var balances: [String: Int] = [:]
            for account in accounts { balances[account] = 100 }
            for event in puts { balances[event.key] = Int(event.value ?? "") }
            #expect(balances.values.reduce(0, +) == 500)
        }
    }

    // MARK: Helpers

    /// A gauge of the node's `/metrics`.
    static func gauge(_ client: NodeClient, _ name: String) async throws -> Int {
        let text = try await client.metricsText()
        for line in text.split(separator: "\n") where line.hasPrefix(name + "{") || line.hasPrefix(name + " ") {
            if let value = line.split(separator: " ").last.flatMap({ Double($0) }) { return Int(value) }
        }
        throw UnexpectedMetrics(name: name)
    }

    struct UnexpectedMetrics: Error {
        var name: String
    }

    /// What the socket has now (empty at end of stream or when nothing is waiting).
    static func readAvailable(_ socket: BlockingSocket) -> Data {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        var out = Data()
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard count > 0 else { return out }
            out.append(contentsOf: buffer[0..<count])
        }
    }
}
