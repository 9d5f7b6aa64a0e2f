import Foundation
import RaftCore
import Testing

@testable import RaftStorage

@Suite("LogWriter: DiskFirst and MemFirst")
struct LogWriterTests {
    private func writer(_ dir: TempDir, _ strategy: PersistenceStrategy, max: Int = 10_000) throws -> LogWriter {
        LogWriter(wal: try DataDirectory.open(path: dir.dataDir, nodeID: 1).wal, strategy: strategy, maxBufferedEntries: max)
    }

    @Test func diskFirstIsOneFsyncPerBatch() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .diskFirst)
        let before = w.fsyncCount
        var d = try w.persist(entries: makeEntries(1...500, term: 1), hardState: HardState(term: 1, vote: 1), now: 0)
        #expect(d == Durability(written: 500, synced: 500, acknowledged: 500))
        d = try w.persist(entries: makeEntries(501...510, term: 1), hardState: HardState(term: 1, vote: 1, commit: 400))
        #expect(d.acknowledged == 510)
        #expect(w.fsyncCount - before == 2, "group commit: one fsync per persist call, not per entry")
    }

    @Test func memFirstAcknowledgesWrittenAndSyncsByThresholdAndInterval() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .memFirst(threshold: 10, intervalMs: 20))
        // A term/vote change is fsynced at once, under both strategies.
        var d = try w.persist(entries: [], hardState: HardState(term: 1, vote: 1), now: 1000)
        let afterVote = w.fsyncCount
        #expect(afterVote >= 1)
        d = try w.persist(entries: makeEntries(1...4, term: 1), hardState: nil, now: 1000)
        #expect(d == Durability(written: 4, synced: 0, acknowledged: 0))
        #expect(w.fsyncCount == afterVote)
        #expect(w.nextFlushDeadline == 1020)
        #expect(try w.flushIfDue(now: 1019) == nil)
        #expect(try w.flushIfDue(now: 1020) == Durability(written: 4, synced: 4, acknowledged: 4))
        #expect(w.nextFlushDeadline == nil)
        // The threshold: the tenth unsynced entry triggers the fsync.
        d = try w.persist(entries: makeEntries(5...13, term: 1), now: 2000)
        #expect(d.synced == 4)
        d = try w.persist(entries: [makeEntry(14, term: 1)], now: 2001)
        #expect(d.synced == 14)
    }

    @Test func maxBufferedEntriesForcesASync() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .memFirst(threshold: 1_000_000, intervalMs: 1_000_000), max: 50)
        #expect(try w.persist(entries: makeEntries(1...49, term: 1), now: 0).synced == 0)
        #expect(try w.persist(entries: [makeEntry(50, term: 1)], now: 0).synced == 50)
    }

    @Test func truncationLowersTheSyncedIndex() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .memFirst(threshold: 100, intervalMs: 100))
        try w.persist(entries: makeEntries(1...10, term: 1), now: 0)
        try w.flush()
        let d = try w.persist(entries: makeEntries(6...7, term: 2), now: 0)
        #expect(d == Durability(written: 7, synced: 5, acknowledged: 5))
    }

    /// Issue #15: a MemFirst batch whose messages acknowledge entries to a leader is fsynced before they leave, and
    /// nothing counts toward commit before its fsync.
    @Test func memFirstFsyncsBeforeAcknowledging() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .memFirst(threshold: 100, intervalMs: 100))
        var d = try w.persist(entries: makeEntries(1...3, term: 1), now: 0)
        #expect(d == Durability(written: 3, synced: 0, acknowledged: 0))
        let before = w.fsyncCount
        d = try w.persist(entries: makeEntries(4...5, term: 1), acknowledges: true, now: 0)
        #expect(d == Durability(written: 5, synced: 5, acknowledged: 5))
        #expect(w.fsyncCount == before + 1)
        #expect(w.syncedPoint?.index == 5 && w.syncedPoint?.term == 1)
    }

    /// The hard state is written before the entries of its term and the commit after them, in one write: every
    /// prefix of the batch (a torn tail) leaves term >= the entries' terms and commit <= lastIndex.
    @Test func everyPrefixOfABatchIsConsistent() throws {
        let dir = TempDir("writer")
        defer { dir.cleanup() }
        let w = try writer(dir, .memFirst(threshold: 1000, intervalMs: 1000))
        try w.persist(entries: makeEntries(1...3, term: 1), hardState: HardState(term: 1, vote: 1, commit: 0), now: 0)
        try w.flush()
        let segment = segmentPaths(dir.dataDir).last!
        let synced = readFile(segment)
        try w.persist(entries: makeEntries(4...8, term: 2), hardState: HardState(term: 2, vote: 2, commit: 7), now: 0)
        let full = readFile(segment)
        w.wal.close()
        for cut in synced.count...full.count {
            writeFile(segment, Array(full[..<cut]))
            let wal = try WAL.open(directory: dir.dataDir + "/wal")
            let last = wal.lastIndex
            #expect(last >= 3)
            if last > 3 { #expect(wal.hardState.term == 2 && wal.hardState.vote == 2, "cut \(cut)") }
            #expect(wal.hardState.commit <= last, "cut \(cut)")
            #expect(wal.recoveryWarnings.count <= 1)
            wal.close()
        }
    }
}
