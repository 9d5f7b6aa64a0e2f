import Foundation
import KVStore
import NIOCore
import NIOPosix
import RaftCore
import RaftStorage
import Testing

@testable import NodeRuntime

@Suite struct SnapshotScheduleTests {
    private func schedule(
        every: UInt64 = 100, everyBytes: UInt64 = 10_000, retainedEntries: UInt64 = 50, retainedBytes: UInt64 = 1000,
        enabled: Bool = true, restored: (meta: SnapshotMetadata, data: [UInt8])? = nil
    ) -> SnapshotSchedule {
        SnapshotSchedule(
            enabled: enabled, every: every, everyBytes: everyBytes, retainedEntries: retainedEntries,
            retainedBytes: retainedBytes, restored: restored)
    }

    private func meta(_ index: LogIndex) -> SnapshotMetadata {
        SnapshotMetadata(index: index, term: 1, membership: Membership(voters: [1]))
    }

    @Test func aSnapshotIsDueByEntriesOrByBytesAndOnlyWhenEnabled() {
        var s = schedule()
        #expect(!s.isDue(applied: 99, noSpace: false, now: 0))
        #expect(s.isDue(applied: 100, noSpace: false, now: 0))
        #expect(!schedule(enabled: false).isDue(applied: 100, noSpace: false, now: 0))
        // Few entries but many bytes.
        s.applied(bytes: 9_999)
        #expect(!s.isDue(applied: 10, noSpace: false, now: 0))
        s.applied(bytes: 1)
        #expect(s.isDue(applied: 10, noSpace: false, now: 0) && s.appliedBytes == 10_000)
        // Bytes alone need something applied past the last snapshot.
        var r = schedule(restored: (meta(10), [1]))
        r.applied(bytes: 20_000)
        #expect(!r.isDue(applied: 10, noSpace: false, now: 0))
        #expect(r.isDue(applied: 11, noSpace: false, now: 0))
    }

    @Test func underTheAlarmEveryAppliedEntryIsCompacted() {
        let s = schedule(restored: (meta(40), [1]))
        #expect(!s.isDue(applied: 41, noSpace: false, now: 0))
        #expect(s.isDue(applied: 41, noSpace: true, now: 0))
        #expect(!s.isDue(applied: 40, noSpace: true, now: 0))
    }

    @Test func oneAtATimeAndAfterAFailureNotBeforeTheRetryTime() {
        var s = schedule()
        _ = s.begin(applied: 100)
        #expect(s.inProgress && !s.isDue(applied: 200, noSpace: false, now: 0))
        s.notTaken(retryAt: 5000)
        #expect(!s.inProgress)
        #expect(!s.isDue(applied: 200, noSpace: false, now: 4999))
        #expect(s.isDue(applied: 200, noSpace: false, now: 5000))
        // Superseded: no back-off.
        _ = s.begin(applied: 200)
        s.notTaken()
        #expect(s.isDue(applied: 200, noSpace: false, now: 5000))
    }

    @Test func aTakenSnapshotResetsTheCountsAndKeepsFewerEntriesWhenTheyAreLarge() {
        var s = schedule()
        // 100 entries of 10 bytes: 50 retained (the entry cap) hold 500 bytes, within 1000.
        s.applied(bytes: 1000)
        let small = s.begin(applied: 100)
        #expect(small == SnapshotSchedule.Plan(retain: 50, bytesCovered: 1000))
        // Applied meanwhile, not covered by it.
        s.applied(bytes: 300)
        let newest = s.taken(meta(100), data: [7, 7], plan: small)
        #expect(newest)
        #expect(s.lastIndex == 100 && s.appliedBytes == 300 && s.image(at: 100) == [7, 7] && !s.inProgress)
        #expect(!s.isDue(applied: 199, noSpace: false, now: 0) && s.isDue(applied: 200, noSpace: false, now: 0))
        // 100 entries of 100 bytes: 1000 bytes hold 10 of them.
        s.applied(bytes: 100 * 100 - 300)
        let large = s.begin(applied: 200)
        #expect(large.retain == 10)
    }

    @Test func anInstalledSnapshotSupersedesOneBeingTaken() {
        var s = schedule()
        let plan = s.begin(applied: 100)
        s.installed(meta(150), data: [9])
        let newest = s.taken(meta(100), data: [1], plan: plan)
        #expect(!newest)
        #expect(s.lastIndex == 150 && s.latest?.meta.index == 150 && s.image(at: 150) == [9] && !s.inProgress)
        // An older index is not the one to send.
        #expect(s.image(at: 100) == nil)
    }

    @Test func aReceivedImageIsStagedUntilItsReadyAndOnlyTheNewest() {
        var s = schedule()
        s.stage(meta(10), data: [1])
        s.stage(meta(20), data: [2])
        #expect(s.takeStaged(10) == nil)
        #expect(s.takeStaged(20) == [2])
        #expect(s.takeStaged(20) == nil)
    }
}

/// `SnapshotFiles` on a real data directory: a snapshot is saved, recorded in the WAL and compacts it; one older than
/// the WAL's snapshot is not recorded.
@Suite struct SnapshotFilesTests {
    @Test func takingASnapshotSavesItRecordsItAndCompactsTheLog() async throws {
        let directory = NSTemporaryDirectory() + "snapshotfiles-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let opened = try DataDirectory.open(path: directory, nodeID: 1)
        let writer = LogWriter(wal: opened.wal, strategy: .diskFirst)
        try writer.persist(
            entries: (1...20).map { Entry(term: 1, index: $0, data: [UInt8($0)]) }, hardState: HardState(term: 1),
            acknowledges: true)
        let files = SnapshotFiles(store: opened.snapshots)
        let wal = NIOThreadPool(numberOfThreads: 1)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        files.thread.start()
        wal.start()
        var state = KVStateMachine()
        var changes: [KVChange] = []
        let put = KVOperation(timestampMs: 0, command: .put(key: [1], value: [2], expiresAtMs: nil))
        _ = state.apply(Entry(term: 1, index: 1, data: put.encoded), changes: &changes)
        let meta = SnapshotMetadata(index: 15, term: 1, membership: Membership(voters: [1]))

        let taken = try await files.take(
            state, at: meta, retain: 5, writer: writer, walThread: wal, loop: group.next()
        ).get()
        #expect(taken?.synced?.index == 20)
        #expect(try opened.snapshots.list().map(\.index) == [15])
        #expect(opened.wal.snapshot == meta)
        #expect(opened.wal.firstIndex == 11, "entries before 15 - 5 + 1 compacted")
        let image = try #require(taken?.data)
        #expect(try KVStateMachine.restore(from: image).0.get([1]) == [2])
        // The WAL already records a newer snapshot: nothing recorded.
        let older = SnapshotMetadata(index: 12, term: 1, membership: Membership(voters: [1]))
        let superseded = try await files.take(
            state, at: older, retain: 5, writer: writer, walThread: wal, loop: group.next()
        ).get()
        #expect(superseded == nil && opened.wal.snapshot == meta)

        try await files.thread.shutdownGracefully()
        try await wal.shutdownGracefully()
        try await group.shutdownGracefully()
    }
}
