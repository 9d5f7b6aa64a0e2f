import ClusterAPI
import Foundation
import RaftCore
import Testing

@testable import NodeRuntime

/// The event ring behind `GET /events`, the recorder that turns the loop's observations into events, and a real
/// Raft server's own events.
@Suite struct NodeEventsTests {
    @Test func theRingKeepsTheNewestEventsInOrderAndAnswersAfterAnId() {
        let ring = EventRing(nodeID: 1, bootWallMs: 5, capacity: 3)
        for n in 1...5 { ring.append(atMs: UInt64(n), kind: .started, term: 1, message: "e\(n)") }
        let kept = ring.events(after: 0)
        #expect(kept.map(\.message) == ["e3", "e4", "e5"])
        // Ids start at the boot wall clock times 1000: a later boot's ids are higher than any of this one's.
        #expect(kept.map(\.seq) == [5003, 5004, 5005])
        #expect(ring.events(after: 5004).map(\.message) == ["e5"])
        #expect(ring.events(after: 5005).isEmpty)
        let next = EventRing(nodeID: 1, bootWallMs: 6, capacity: 3)
        next.append(atMs: 6, kind: .started, term: 1, message: "after restart")
        #expect(next.events(after: 5005).map(\.message) == ["after restart"])
    }

    @Test func slowFsyncsAreReportedAtMostOncePerSecondWithTheCountOfTheOthers() {
        let ring = EventRing(nodeID: 1, bootWallMs: 0)
        var recorder = EventRecorder()
        recorder.fsynced(ms: 5, monoMs: 10_000, wallMs: 1, term: 2, ring: ring)  // fast: nothing
        recorder.fsynced(ms: 250, monoMs: 10_000, wallMs: 1, term: 2, ring: ring)
        recorder.fsynced(ms: 300, monoMs: 10_100, wallMs: 1, term: 2, ring: ring)
        recorder.fsynced(ms: 400, monoMs: 10_200, wallMs: 1, term: 2, ring: ring)
        recorder.fsynced(ms: 120, monoMs: 11_100, wallMs: 2, term: 2, ring: ring)
        let events = ring.events(after: 0)
        #expect(events.map(\.kind) == [.slowFsync, .slowFsync])
        #expect(events.map(\.durationMs) == [250, 120])
        #expect(events[1].message == "a log write with fsync took 120 ms (and 2 more since the last report)")
    }

    @Test func aSoleVoterReportsItsStartItsElectionWithVotesItsSnapshotsAndItsStorage() async throws {
        let directory = try RaftServerTests.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try RaftServerTests.Node(directory: directory, snapshotEvery: 20)
        try await node.waitForLeadership()
        for n in 0..<30 { _ = try await node.put("k\(n)", "v") }
        try await RaftServerTests.eventually("a snapshot event") {
            node.server.events.events(after: 0).contains { $0.kind == .snapshotTaken }
        }
        let events = node.server.events.events(after: 0)
        #expect(events.first?.kind == .started)
        let won = try #require(events.first { $0.kind == .electionWon })
        #expect(won.votes == VoteCount(granted: 1, refused: 0, voters: 1))
        #expect(won.message.hasSuffix("with 1 of 1 votes"))
        #expect(events.contains { $0.kind == .roleChanged && $0.role == "leader" })
        #expect(events.contains { $0.kind == .leaderChanged && $0.peer == 1 })
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.seq < $1.seq })

        let status = try await node.server.status().get()
        let storage = try #require(status.storage)
        #expect(storage.fsyncs > 0)
        #expect(storage.snapshotIndex >= 20 && storage.snapshotBytes > 0)
        #expect(storage.quotaBytes == 8 << 30)
        try await node.stop()
    }
}
