import ClusterAPI
import Foundation
import KVStore
import NIOCore
import NIOPosix
import PeerTransport
import RaftCore
import RaftStorage
import Testing

@testable import NodeRuntime

/// `RaftServer` in this process: a sole voter on a real data directory (WAL with fsync, snapshots), its Ready loop,
/// writes, reads at every consistency, status, shutdown and recovery. No sockets: it has no peers.
@Suite struct RaftServerTests {
    final class Node {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let directory: String
        let server: RaftServer
        let transport: PeerTransport

        init(
            directory: String, strategy: PersistenceStrategy = .diskFirst, snapshotEvery: UInt64 = 10_000,
            quota: UInt64 = 8 << 30, fs: (any StorageFileSystem)? = nil
        ) throws {
            self.directory = directory
            var raft = RaftConfig(id: 1, initialMembership: Membership(voters: [1]))
            raft.electionTimeoutMin = 100
            raft.electionTimeoutMax = 200
            raft.heartbeatInterval = 20
            raft.leaseDuration = 50
            raft.clockDriftMargin = 10
            var settings = RaftServer.Settings(raft: raft)
            settings.snapshotEvery = snapshotEvery
            settings.retainedEntries = 10
            settings.selfAddress = "127.0.0.1:1"
            settings.quotaBackendBytes = quota
            settings.usageCheckMs = 20
            let loop = group.next()
            transport = PeerTransport(selfID: 1, group: loop, peers: [:])
            server = try RaftServer(
                settings: settings,
                storage: try fs.map { try DataDirectory.open(path: directory + "/db", nodeID: 1, fs: $0) }
                    ?? DataDirectory.open(path: directory + "/db", nodeID: 1),
                strategy: strategy, maxBufferedEntries: 1000, loop: loop, transport: transport,
                log: try NodeLog(directory: directory + "/logs", level: .error, mirrorToStderr: false))
            server.start()
        }

        func waitForLeadership() async throws {
            for _ in 0..<500 {
                if try await server.status().get().role == .leader { return }
                try await Task.sleep(for: .milliseconds(10))
            }
            Issue.record("no leadership within 5 s")
        }

        func put(_ key: String, _ value: String) async throws -> LogIndex {
            try await server.write(
                KVOperation(timestampMs: 0, command: .put(key: Array(key.utf8), value: Array(value.utf8), expiresAtMs: nil))
            ).get().0
        }

        func get(_ key: String, _ consistency: ReadConsistency) async throws -> String? {
            let bytes = try await server.read(consistency) { sm in sm.get(Array(key.utf8)) }.get()
            return bytes.map { String(decoding: $0, as: UTF8.self) }
        }

        func stop() async throws {
            try await server.shutdown().get()
            try await transport.shutdown().get()
            try await group.shutdownGracefully()
        }
    }

    /// Polls `condition` (the node answers on its loop) until it holds, for at most 10 s.
    static func eventually(_ what: String, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<1000 {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("not within 10 s: \(what)")
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "raftserver-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test(arguments: [PersistenceStrategy.diskFirst, .memFirst(threshold: 4, intervalMs: 5)])
    func writesReadsAndRecovery(strategy: PersistenceStrategy) async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var last: LogIndex = 0
        do {
            let node = try Node(directory: directory, strategy: strategy)
            try await node.waitForLeadership()
            for i in 0..<50 { last = try await node.put("k\(i)", "v\(i)") }
            #expect(try await node.get("k49", .linearizable) == "v49")
            #expect(try await node.get("k0", .lease) == "v0")
            #expect(try await node.get("absent", .eventual) == nil)
            let status = try await node.server.status().get()
            #expect(status.appliedIndex >= last && status.commitIndex >= last && status.stats.writesTotal == 50)
            try await node.stop()
        }
        // Every acknowledged write is there after a restart (the shutdown flushed the WAL).
        let again = try Node(directory: directory, strategy: strategy)
        try await again.waitForLeadership()
        #expect(try await again.get("k49", .linearizable) == "v49")
        #expect(try await again.server.status().get().appliedIndex > last)
        try await again.stop()
    }

    @Test func snapshotsCompactTheLogAndSurviveARestart() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        do {
            let node = try Node(directory: directory, snapshotEvery: 20)
            try await node.waitForLeadership()
            for i in 0..<60 { _ = try await node.put("k\(i)", "v\(i)") }
            var snapshotIndex: LogIndex = 0
            for _ in 0..<500 where snapshotIndex == 0 {
                snapshotIndex = try await node.server.status().get().snapshotIndex
                if snapshotIndex == 0 { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(snapshotIndex >= 20)
            try await node.stop()
        }
        let again = try Node(directory: directory, snapshotEvery: 20)
        try await again.waitForLeadership()
        for i in [0, 30, 59] { #expect(try await again.get("k\(i)", .eventual) == "v\(i)") }
        #expect(try await again.server.status().get().snapshotIndex >= 20)
        try await again.stop()
    }

    @Test func aShutdownAnswersWhatIsPendingAndRefusesNewWork() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try Node(directory: directory)
        try await node.waitForLeadership()
        try await node.server.shutdown().get()
        await #expect(throws: APIError.self) { _ = try await node.put("late", "x") }
        try await node.transport.shutdown().get()
        try await node.group.shutdownGracefully()
    }

    /// Issue #16: over `quota_backend_bytes` the node raises NOSPACE, refuses writes with 507 (nothing proposed),
    /// keeps serving reads, refuses to disarm while still over; restarted with a larger quota it writes again and
    /// has lost nothing it acknowledged.
    @Test func overTheQuotaWritesAreRefusedReadsServedAndARaisedQuotaRestoresWrites() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let value = String(repeating: "v", count: 20_000)
        var acknowledged: [Int] = []
        do {
            let node = try Node(directory: directory, snapshotEvery: 100_000, quota: 600_000)
            try await node.waitForLeadership()
            var refused = false
            for i in 0..<400 where !refused {
                do {
                    _ = try await node.put("k\(i)", value)
                    acknowledged.append(i)
                } catch let error as APIError where error.code == .noSpace {
                    refused = true
                }
            }
            #expect(refused, "the quota was never reached")
            #expect(try await node.server.alarms().get().alarms.map(\.type) == ["NOSPACE"])
            // Reads and status still work; the status names the alarm; disarm is refused while over the quota.
            #expect(try await node.get("k0", .linearizable) == value)
            #expect(try await node.server.status().get().alarms?.first?.type == "NOSPACE")
            await #expect(throws: APIError.self) { _ = try await node.server.disarm().get() }
            try await node.stop()
        }
        let again = try Node(directory: directory, snapshotEvery: 100_000, quota: 64 << 20)
        try await again.waitForLeadership()
        _ = try await again.put("after", "ok")
        for i in acknowledged { #expect(try await again.get("k\(i)", .eventual) == value) }
        #expect(try await again.server.alarms().get().alarms.isEmpty)
        try await again.stop()
    }

    /// Issue #16: a real ENOSPC neither stops the node nor loses a write: the batch waits for space, writes are
    /// refused meanwhile, reads are served, and the waiting write is answered once space is back.
    @Test func aFullDiskNeitherStopsTheNodeNorLosesAWrite() async throws {
        let fs = PowerCutFileSystem()
        try fs.makeDirectory("/disk")
        let node = try Node(directory: "/disk", quota: 8 << 30, fs: fs)
        try await node.waitForLeadership()
        _ = try await node.put("before", "1")
        fs.capacityBytes = fs.usedBytes + 100
        // This write's batch does not fit: it waits (the node retries it) and the alarm goes up.
        let waiting = node.server.write(
            KVOperation(timestampMs: 0, command: .put(key: Array("stuck".utf8), value: [UInt8](repeating: 1, count: 4096), expiresAtMs: nil)))
        try await Self.eventually("the NOSPACE alarm") { try await !node.server.alarms().get().alarms.isEmpty }
        await #expect(throws: APIError.self) { _ = try await node.put("refused", "x") }
        #expect(try await node.get("before", .eventual) == "1")
        await #expect(throws: APIError.self) { _ = try await node.server.disarm().get() }
        // Space comes back: the waiting write goes through and is answered; disarm clears the alarm.
        fs.capacityBytes = nil
        let (index, _) = try await waiting.get()
        #expect(index > 0)
        #expect(try await node.get("stuck", .linearizable) != nil)
        try await Self.eventually("disarm") { (try? await node.server.disarm().get()) != nil }
        _ = try await node.put("after", "2")
        try await node.stop()
    }

    /// `/status` used to hash the whole state on the Raft loop: with 48 MiB of values that stalled writes and
    /// heartbeats for seconds (the full-disk process test's unanswered puts). The hash is computed off the loop now.
    @Test func statusHashesTheStateOffTheLoop() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try Node(directory: directory)
        try await node.waitForLeadership()
        let value = String(repeating: "v", count: 1 << 20)
        for i in 0..<48 { _ = try await node.put("big\(i)", value) }
        let expected = StatusReport.hashText(try await node.server.read(.eventual) { $0.stateHash }.get())

        let clock = ContinuousClock()
        let asked = clock.now
        let status = node.server.status()
        // The loop answers at once while the hash is being computed.
        let loopAnswered = try await node.server.loop.submit { clock.now }.get()
        let first = try await status.get()
        #expect(asked.duration(to: loopAnswered) < .milliseconds(100), "the loop waited for the hash")
        // The status itself does not wait for a slow hash: it answers without one after 250 ms.
        #expect(asked.duration(to: clock.now) < .seconds(1), "the status waited for the hash")
        #expect(first.appliedIndex >= 48)
        #expect(first.stateHash == nil || first.stateHash == expected)
        var hashed = first
        try await Self.eventually("the status to carry the state hash") {
            hashed = try await node.server.status().get()
            return hashed.stateHash != nil
        }
        #expect(hashed.stateHash == expected)
        // Cached for the applied index: the next status has it at once.
        let again = try await measure { try await node.server.status().get() }
        #expect(again.value.stateHash == expected)
        #expect(again.duration < .milliseconds(200))
        try await node.stop()
    }

    private func measure<T>(_ body: () async throws -> T) async rethrows -> (value: T, duration: Duration) {
        let clock = ContinuousClock()
        let start = clock.now
        let value = try await body()
        return (value, start.duration(to: clock.now))
    }
}
