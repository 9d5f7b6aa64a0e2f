import RaftCore
import Testing

@testable import RaftStorage

/// Issue #16: a full disk (ENOSPC) is not a storage failure. The write is undone, the log stays usable, the same
/// write succeeds once there is space, and nothing half-written is ever read back.
@Suite struct FullDiskTests {
    @Test(arguments: [PersistenceStrategy.diskFirst, .memFirst(threshold: 8, intervalMs: 5)])
    func aFullDiskRefusesTheWriteAndTheSameWriteSucceedsLater(strategy: PersistenceStrategy) throws {
        let fs = PowerCutFileSystem()
        let opened = try DataDirectory.open(path: "/db", nodeID: 1, walOptions: WAL.Options(segmentSize: 4096), fs: fs)
        let writer = LogWriter(wal: opened.wal, strategy: strategy)
        try writer.persist(entries: [], hardState: HardState(term: 1, vote: 1, commit: 0))
        var next: LogIndex = 1
        var acknowledged: LogIndex = 0
        func batch(_ count: Int) -> [Entry] {
            defer { next += LogIndex(count) }
            return (next..<(next + LogIndex(count))).map { makeEntry($0, term: 1, size: 200) }
        }
        // Fill the disk: the last batch fits only in part, and is refused whole.
        fs.capacityBytes = fs.usedBytes + 5000
        var refused: [Entry]?
        while refused == nil {
            let entries = batch(4)
            do {
                acknowledged = try writer.persist(entries: entries, acknowledges: true).acknowledged
            } catch is StorageNoSpaceError {
                refused = entries
            }
        }
        let stuck = try #require(refused)
        #expect(opened.wal.lastIndex == stuck[0].index - 1, "nothing of the refused batch is in the log")
        #expect(fs.usedBytes <= fs.capacityBytes ?? 0)
        // Still full: refused again, the log unchanged and usable.
        #expect(throws: StorageNoSpaceError.self) { try writer.persist(entries: stuck, acknowledges: true) }
        #expect(opened.wal.lastIndex == stuck[0].index - 1)
        // Space comes back (an operator freed some, or a compaction did): the very same write goes through.
        fs.capacityBytes = nil
        acknowledged = try writer.persist(entries: stuck, acknowledges: true).acknowledged
        #expect(acknowledged == stuck.last!.index)
        for _ in 0..<40 { acknowledged = try writer.persist(entries: batch(3), acknowledges: true).acknowledged }
        opened.wal.close()
        // Reopened after a power cut: every acknowledged entry, intact, and no stray bytes of the refused attempts.
        fs.cutPower(.dropUnsynced)
        let reopened = try DataDirectory.open(path: "/db", nodeID: 1, mode: .openExisting, fs: fs)
        #expect(reopened.wal.lastIndex >= acknowledged)
        let back = try reopened.wal.entries(from: 1, to: acknowledged)
        #expect(back.map(\.index) == Array(1...acknowledged))
        #expect(back.allSatisfy { $0.data.count == 200 })
        #expect(!reopened.warnings.contains { $0.contains("corrupt") })
    }

    @Test func aFullDiskRefusesANewSegmentAndASnapshotWithoutHarm() throws {
        let fs = PowerCutFileSystem()
        let opened = try DataDirectory.open(path: "/db", nodeID: 1, walOptions: WAL.Options(segmentSize: 1024), fs: fs)
        let writer = LogWriter(wal: opened.wal, strategy: .diskFirst)
        try writer.persist(entries: [], hardState: HardState(term: 1, vote: 1, commit: 0))
        try writer.persist(entries: (1...4).map { makeEntry($0, term: 1, size: 300) })
        // The active segment is over its size: the next write must start a segment, and there is no room for one.
        fs.capacityBytes = fs.usedBytes + 10
        #expect(throws: StorageNoSpaceError.self) { try writer.persist(entries: [makeEntry(5, term: 1, size: 300)]) }
        #expect(throws: StorageNoSpaceError.self) {
            _ = try opened.snapshots.save(
                metadata: SnapshotMetadata(index: 4, term: 1, membership: Membership(voters: [1])),
                data: [UInt8](repeating: 7, count: 4000))
        }
        #expect(try opened.snapshots.list().isEmpty, "no snapshot file, and no temporary one left behind")
        fs.capacityBytes = nil
        try writer.persist(entries: [makeEntry(5, term: 1, size: 300)])
        #expect(opened.wal.lastIndex == 5)
        opened.wal.close()
        let reopened = try DataDirectory.open(path: "/db", nodeID: 1, mode: .openExisting, fs: fs)
        #expect(reopened.wal.lastIndex == 5)
    }
}
