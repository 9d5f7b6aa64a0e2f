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

        init(directory: String, strategy: PersistenceStrategy = .diskFirst, snapshotEvery: UInt64 = 10_000) throws {
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
            let loop = group.next()
            transport = PeerTransport(selfID: 1, group: loop, peers: [:])
            server = try RaftServer(
                settings: settings, storage: try DataDirectory.open(path: directory + "/db", nodeID: 1),
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
}
