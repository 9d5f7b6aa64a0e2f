import Foundation
import RaftCore
import Testing

@testable import RaftStorage

/// Writes `count` entries to a fresh data directory, one fsynced batch each (as DiskFirst does: every batch but the
/// first opens with a sync mark naming the end of the one before), and returns the path of its only segment and the
/// record offsets.
private func prepare(_ dir: TempDir, count: LogIndex = 20) throws -> (segment: String, recordStarts: [Int]) {
    let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1)
    for i in 1...count {
        try opened.wal.append([makeEntry(i, term: 1, size: 40)])
        try opened.wal.sync()
    }
    opened.wal.close()
    let segment = try #require(segmentPaths(dir.dataDir).last)
    // Walk the records to find where each starts.
    let bytes = readFile(segment)
    var starts: [Int] = []
    var offset = SegmentHeader.size
    while offset < bytes.count, case .record(_, let length) = WALRecord.parse(bytes[offset...]) {
        starts.append(offset)
        offset += length
    }
    #expect(offset == bytes.count)
    return (segment, starts)
}

@Suite("Corruption and recovery")
struct CorruptionTests {
    /// Issue #15: the OS may write unsynced pages in any order, so a power cut can leave a damaged record with valid
    /// ones after it. Past the last synced offset (the newest sync mark) that is a torn tail, repaired under DiskFirst
    /// too; before it, the node refuses to start.
    @Test(arguments: [false, true])
    func damageAfterTheLastSyncIsTornBeforeItIsCorruption(syncedLater: Bool) throws {
        let dir = TempDir("unsynced")
        defer { dir.cleanup() }
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1)
        for i in LogIndex(1)...10 {
            try opened.wal.append([makeEntry(i, term: 1, size: 40)])
            try opened.wal.sync()
        }
        let segment = try #require(segmentPaths(dir.dataDir).last)
        let damaged = readFile(segment).count  // where the first unsynced batch starts
        for i in LogIndex(11)...13 { try opened.wal.append([makeEntry(i, term: 1, size: 40)]) }
        if syncedLater {
            try opened.wal.sync()
            try opened.wal.append([makeEntry(14, term: 1, size: 40)])  // opens with a mark past entry 13
        }
        opened.wal.close()
        var bytes = readFile(segment)
        // The first unsynced batch is [sync mark, entry 11]: damage entry 11's payload; valid records follow it.
        let entry11 = damaged + WALRecord.syncMark(offset: 0).framed.count
        bytes[entry11 + WALRecord.headerSize + 5] ^= 0x10
        writeFile(segment, bytes)
        if syncedLater {
            let error = try #require(throws: StorageOpenError.self) {
                try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            }
            #expect(error.code == .corruption && error.offset == entry11, "\(error)")
            #expect(readFile(segment) == bytes, "nothing is modified when refusing")
        } else {
            let reopened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            #expect(reopened.wal.lastIndex == 10)
            #expect(reopened.warnings.contains { $0.contains("torn tail") && $0.contains("offset \(entry11)") })
            #expect(readFile(segment).count == entry11)
        }
    }

    @Test func flippedByteInTheMiddleRefusesToStart() throws {
        let dir = TempDir("corrupt")
        defer { dir.cleanup() }
        let (segment, starts) = try prepare(dir)
        var bytes = readFile(segment)
        // One byte in a payload, and (separately) one in a length field, both in the middle.
        for target in [starts[8] + WALRecord.headerSize + 3, starts[12] + 1] {
            let original = bytes
            bytes[target] ^= 0x40
            writeFile(segment, bytes)
            let error = try #require(throws: StorageOpenError.self) {
                try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            }
            let recordStart = starts.last { $0 <= target }!
            #expect(error.code == .corruption)
            #expect(error.path == segment)
            #expect(error.offset == recordStart)
            #expect(error.message.contains(segment) && error.message.contains("offset \(recordStart)"))
            #expect(error.message.contains("To recover"))
            #expect(readFile(segment) == bytes, "nothing is modified when refusing")
            bytes = original
            writeFile(segment, bytes)
        }
        #expect(try DataDirectory.open(path: dir.dataDir, nodeID: 1).wal.lastIndex == 20)
    }

    @Test func truncationAtEveryOffsetOfTheLastRecordIsATornTail() throws {
        let dir = TempDir("torn")
        defer { dir.cleanup() }
        let (segment, starts) = try prepare(dir)
        let full = readFile(segment)
        let last = starts.last!
        for cut in last..<full.count {
            writeFile(segment, Array(full[..<cut]))
            let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            #expect(opened.wal.lastIndex == 19, "cut at \(cut)")
            #expect(try opened.wal.entries(from: 1, to: 19) == (1...19).map { makeEntry($0, term: 1, size: 40) })
            if cut > last {
                #expect(opened.warnings.count == 1 && opened.warnings[0].contains("torn tail"), "cut at \(cut)")
            } else {
                #expect(opened.warnings.isEmpty)
            }
            // The tail was truncated on disk, and appending continues from there.
            #expect(readFile(segment).count == last)
            try opened.wal.append([makeEntry(20, term: 2)])
            opened.wal.close()
            #expect(try DataDirectory.open(path: dir.dataDir, nodeID: 1).wal.term(at: 20) == 2)
        }
    }

    @Test(arguments: [1, 7, 40, 4096])
    func zeroFilledTailIsTruncated(zeros: Int) throws {
        let dir = TempDir("zeros")
        defer { dir.cleanup() }
        let (segment, starts) = try prepare(dir)
        var bytes = readFile(segment)
        // Zeros over the end of the last record...
        let overwrite = min(zeros, bytes.count - starts.last!)
        for i in (bytes.count - overwrite)..<bytes.count { bytes[i] = 0 }
        // ...and zeros appended past it (a preallocated or half-flushed tail).
        bytes += [UInt8](repeating: 0, count: zeros)
        writeFile(segment, bytes)
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
        #expect(opened.wal.lastIndex == 19)
        #expect(opened.warnings.contains { $0.contains("torn tail") })
    }

    @Test func damageInAnOlderSegmentIsNotATornTail() throws {
        let dir = TempDir("oldseg")
        defer { dir.cleanup() }
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, walOptions: WAL.Options(segmentSize: 1000))
        for i in LogIndex(1)...60 { try opened.wal.append([makeEntry(i, term: 1, size: 40)]) }
        opened.wal.close()
        let segments = segmentPaths(dir.dataDir)
        #expect(segments.count > 2)
        // Cut the last record of the first segment: only the last segment may be torn.
        var first = readFile(segments[0])
        first.removeLast(5)
        writeFile(segments[0], first)
        let error = try #require(throws: StorageOpenError.self) {
            try DataDirectory.open(path: dir.dataDir, nodeID: 1)
        }
        #expect(error.code == .corruption && error.path == segments[0])
    }

    @Test func missingSegmentIsRefused() throws {
        let dir = TempDir("missing")
        defer { dir.cleanup() }
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, walOptions: WAL.Options(segmentSize: 600))
        for i in LogIndex(1)...40 { try opened.wal.append([makeEntry(i, term: 1, size: 40)]) }
        opened.wal.close()
        let segments = segmentPaths(dir.dataDir)
        try FileManager.default.removeItem(atPath: segments[1])
        let error = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 1) }
        #expect(error.code == .missingFiles)
        for s in segments.dropFirst(2) { try FileManager.default.removeItem(atPath: s) }
        try FileManager.default.removeItem(atPath: segments[0])
        let none = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 1) }
        #expect(none.code == .missingFiles && none.message.contains("no WAL segment"))
    }

    @Test func corruptNewestSnapshotIsRefusedWithItsName() throws {
        let dir = TempDir("snapcorrupt")
        defer { dir.cleanup() }
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, retainSnapshots: 2)
        try opened.wal.append(makeEntries(1...30, term: 1))
        var saved: [StoredSnapshot] = []
        for index in [LogIndex(10), 20, 30] {
            let meta = SnapshotMetadata(index: index, term: 1, membership: Membership(voters: [1]))
            saved.append(try opened.snapshots.save(metadata: meta, data: Array(repeating: UInt8(index), count: 1000)))
            try opened.wal.applySnapshot(meta)
        }
        opened.wal.close()
        #expect(try opened.snapshots.list().map(\.index) == [20, 30], "only the newest two are kept")
        var bytes = readFile(saved[2].path)
        bytes[500] ^= 1
        writeFile(saved[2].path, bytes)
        let error = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 1) }
        #expect(error.code == .corruption && error.path == saved[2].path && error.message.contains(saved[2].path))
        // A leftover temporary file from an interrupted save is ignored and removed.
        bytes[500] ^= 1
        writeFile(saved[2].path, bytes)
        writeFile(saved[2].path + ".tmp", [1, 2, 3])
        let reopened = try DataDirectory.open(path: dir.dataDir, nodeID: 1)
        #expect(reopened.latestSnapshot == saved[2])
        #expect(!FileManager.default.fileExists(atPath: saved[2].path + ".tmp"))
    }
}

/// A sync mark vouches only for bytes before itself, and the scan for one ignores anything not shaped like a mark
/// (client data in a value can hold such bytes; they must not turn a torn tail into "corruption").
@Suite struct SyncMarkScanTests {
    static func mark(_ offset: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        _ = WALRecord.syncMark(offset: offset).frame(into: &bytes)
        return bytes
    }

    @Test func aMarkCoversOnlyBytesBeforeItself() {
        let padding = [UInt8](repeating: 0xAB, count: 100)
        // A mark at position 100 saying 50 bytes were synced covers offset 10, not offset 60.
        let honest = padding + Self.mark(50)
        #expect(WAL.syncMarkCovers(10, in: honest, after: 0))
        #expect(!WAL.syncMarkCovers(60, in: honest, after: 0))
        // A mark claiming more than its own position (a forged one in a value) covers nothing.
        let forged = padding + Self.mark(UInt64.max)
        #expect(!WAL.syncMarkCovers(10, in: forged, after: 0))
        #expect(!WAL.syncMarkCovers(10, in: padding, after: 0))
    }
}
