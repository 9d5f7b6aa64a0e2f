import Glibc
import RaftCore

/// The write-ahead log: a `LogStorage` over segment files in one directory (`<db_root_dir>/wal`).
///
/// **One record stream.** Entries, hard state, snapshot metadata and compaction points are records in a single
/// stream of segments (`<sequence>-<firstIndex>.seg`). Recovery replays the stream, so any prefix of it is a
/// consistent state: the hard state can never be older than the entries of its term (it is written before them,
/// in the same stream and under the same fsync), and conflict truncation is a logical operation (an entry record at
/// an index `<= lastIndex` supersedes the suffix) that is as crash-safe as an append. Nothing is ever overwritten in
/// place; whole segments are deleted once a later compaction record makes them unnecessary.
///
/// **Self-describing segments.** A new segment starts with a prologue (the current base, snapshot and hard state),
/// created through a temporary file, fsynced and renamed, after the previous segment was fsynced. Old segments can
/// therefore be deleted without losing any of that metadata, and only the last segment can have a torn tail.
///
/// **Index.** The WAL keeps, per live entry, its segment, offset and term; payloads are read back with `pread`.
///
/// Not thread-safe: confine an instance to one thread at a time (the node's I/O thread). A write or fsync failure
/// poisons the instance: every later call throws the same `StorageFatalError`.
// @unchecked Sendable: confined to one thread at a time (see above); handed between threads, never shared.
public final class WAL: LogStorage, @unchecked Sendable {
    public struct Options: Sendable {
        /// A segment is rotated before a write once it holds this many bytes.
        public var segmentSize: Int
        public init(segmentSize: Int = 64 << 20) { self.segmentSize = segmentSize }
    }

    struct Location {
        var segment: UInt64
        /// Offset of the record header in the segment file.
        var offset: Int
        /// Length of the framed record, header included.
        var length: Int
        var term: Term
    }

    final class Segment {
        let sequence: UInt64
        let firstIndex: LogIndex
        let path: String
        let file: any StorageFile
        var size: Int
        /// How far the file is known to be fsynced, and the last value recorded in a sync mark (-1: none yet).
        var syncedSize: Int
        var markedSyncedSize = -1

        init(sequence: UInt64, firstIndex: LogIndex, path: String, file: any StorageFile, size: Int) {
            self.sequence = sequence
            self.firstIndex = firstIndex
            self.path = path
            self.file = file
            self.size = size
            self.syncedSize = size
        }
    }

    public let directory: String
    public let options: Options
    /// What recovery repaired when the WAL was opened (torn tails, leftover temporary files), for the node to log.
    public private(set) var recoveryWarnings: [String] = []

    public private(set) var hardState = HardState()
    public private(set) var snapshot: SnapshotMetadata?
    private var baseIndex: LogIndex = 0
    private var baseTerm: Term = 0
    /// The live entries, `locations[i]` for index `runStart + i`. Outside recovery `runStart == baseIndex + 1`.
    private var locations: [Location] = []
    private var runStart: LogIndex = 1
    private var segments: [Segment] = []
    private var failure: StorageFatalError?

    /// True when records were written to the OS since the last fsync.
    public private(set) var hasUnsyncedWrites = false
    /// How many fsyncs of segment files this instance performed (rotations included).
    public private(set) var syncCount = 0
    /// How many segment files the WAL currently spans.
    public var segmentCount: Int { segments.count }
    /// True when the oldest segment holds the first live entry (or is the only one): nothing deletable is kept.
    var oldestSegmentIsNeeded: Bool { segments.count == 1 || segments.first?.sequence == locations.first?.segment }

    /// The file system the segments live on.
    let fs: any StorageFileSystem

    /// A descriptor held in reserve (on /dev/null) and given up when the next segment finds none left, so that
    /// connections using every other descriptor cannot stop the log from rotating. `-1` while given up.
    private var spareDescriptor: Int32 = -1

    private init(directory: String, options: Options, fs: any StorageFileSystem) {
        self.directory = directory
        self.options = options
        self.fs = fs
        spareDescriptor = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC)
    }

    deinit { close() }

    /// Closes the segment files. Later calls fail.
    public func close() {
        if spareDescriptor >= 0 { _ = Glibc.close(spareDescriptor) }
        spareDescriptor = -1
        for segment in segments { segment.file.close() }
        segments.removeAll()
        if failure == nil { failure = StorageFatalError(code: .other, message: "WAL \(directory) is closed") }
    }

    // MARK: - LogStorage: read

    public var firstIndex: LogIndex { baseIndex + 1 }
    public var lastIndex: LogIndex { baseIndex + LogIndex(locations.count) }

    public func term(at index: LogIndex) -> Term? {
        if index == 0 { return 0 }
        if index == baseIndex { return baseTerm }
        guard index >= runStart, index < runStart + LogIndex(locations.count) else { return nil }
        return locations[Int(index - runStart)].term
    }

    public func entries(from: LogIndex, to: LogIndex) throws -> [Entry] {
        if to < from { return [] }
        guard from > baseIndex, to <= lastIndex else {
            throw StorageError("entries \(from)...\(to) outside \(firstIndex)...\(lastIndex)")
        }
        if let failure { throw failure }
        var result: [Entry] = []
        result.reserveCapacity(Int(to - from + 1))
        var i = Int(from - runStart)
        let end = Int(to - runStart)
        while i <= end {
            // One pread per run of entries in the same segment (their records are in ascending offsets).
            let seq = locations[i].segment
            var j = i
            while j + 1 <= end && locations[j + 1].segment == seq { j += 1 }
            let segment = try self.segment(seq)
            let start = locations[i].offset
            let stop = locations[j].offset + locations[j].length
            let bytes = try segment.file.read(count: stop - start, at: start)
            for k in i...j {
                let loc = locations[k]
                let lo = loc.offset - start
                guard lo + loc.length <= bytes.count,
                    case .record(.entry(let entry), _) = WALRecord.parse(bytes[lo..<lo + loc.length]),
                    entry.index == runStart + LogIndex(k)
                else {
                    throw StorageError("checksum mismatch in \(segment.path) at offset \(loc.offset) reading entry "
                        + "\(runStart + LogIndex(k)) (the file changed on disk after it was opened)")
                }
                result.append(entry)
            }
            i = j + 1
        }
        return result
    }

    private func segment(_ sequence: UInt64) throws -> Segment {
        guard let first = segments.first, sequence >= first.sequence,
            Int(sequence - first.sequence) < segments.count
        else { throw StorageError("segment \(sequence) is not open") }
        return segments[Int(sequence - first.sequence)]
    }

    // MARK: - LogStorage: write

    public func append(_ entries: [Entry]) throws {
        guard let first = entries.first else { return }
        guard first.index >= firstIndex, first.index <= lastIndex + 1 else {
            throw StorageError("append at \(first.index) outside \(firstIndex)...\(lastIndex + 1)")
        }
        for (offset, entry) in entries.enumerated() where entry.index != first.index + LogIndex(offset) {
            throw StorageError("append: entries not contiguous at \(entry.index)")
        }
        try write(entries.map { .entry($0) })
    }

    public func setHardState(_ state: HardState) throws {
        try write([.hardState(state)])
    }

    public func applySnapshot(_ snap: SnapshotMetadata) throws {
        if let current = snapshot, current.index >= snap.index {
            throw StorageError("snapshot \(snap.index) is not newer than current \(current.index)")
        }
        try write([.snapshot(snap, keepsLog: term(at: snap.index) == snap.term)])
    }

    /// Discards entries before `index` (clamped to the snapshot), makes that durable, then deletes every segment
    /// that no longer holds a live entry.
    public func compact(before index: LogIndex) throws {
        guard let snap = snapshot else { return }
        let limit = min(index, snap.index + 1)
        if limit > firstIndex {
            try write([.compact(index: limit - 1, term: term(at: limit - 1)!)])
        }
        guard !oldestSegmentIsNeeded else { return }
        // The records that make the old segments unnecessary must be durable before the segments go.
        try sync()
        try deleteUnneededSegments()
    }

    public func sync() throws {
        if let failure { throw failure }
        guard hasUnsyncedWrites, let active = segments.last else { return }
        do {
            try active.file.sync()
        } catch let io as StorageIOError {
            throw poison(io, "syncing the log")
        }
        syncCount += 1
        hasUnsyncedWrites = false
        active.syncedSize = active.size
    }

    // MARK: - Batched writes

    /// Writes `records` with one `write(2)` (two if the segment rotates first). The records are with the OS, not
    /// yet durable, when this returns: they survive the process being killed but not a power loss until `sync()`.
    ///
    /// The caller checks the LogStorage preconditions; replay applies the records to the index.
    func write(_ records: [WALRecord]) throws {
        if let failure { throw failure }
        guard !records.isEmpty else { return }
        if let active = segments.last, active.size >= options.segmentSize { try rotate() }
        guard let active = segments.last else { throw StorageError("WAL \(directory) has no segment") }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(records.reduce(WALRecord.headerSize + 8) { $0 + $1.estimatedFrameSize })
        var spans: [(Int, Int)] = []
        spans.reserveCapacity(records.count + 1)
        var records = records
        let markedBefore = active.markedSyncedSize
        if active.markedSyncedSize != active.syncedSize {
            records.insert(.syncMark(offset: UInt64(active.syncedSize)), at: 0)
            active.markedSyncedSize = active.syncedSize
        }
        for record in records {
            let start = buffer.count
            record.frame(into: &buffer)
            guard buffer.count - start - WALRecord.headerSize <= WALRecord.maxPayload else {
                throw StorageError("record of \(buffer.count - start) bytes exceeds the WAL record limit")
            }
            spans.append((start, buffer.count - start))
        }
        do {
            try active.file.write(buffer, at: active.size)
        } catch let io as StorageIOError {
            guard io.kind == .noSpace else { throw poison(io, "writing to the log") }
            // A full disk: cut off what part of the batch reached the file, and the log is as it was. Only the
            // unsynced tail is touched, and nothing in it was reported written.
            do { try active.file.truncate(to: active.size) } catch let cut as StorageIOError {
                throw poison(cut, "undoing a write the full disk cut short")
            }
            active.markedSyncedSize = markedBefore
            throw StorageNoSpaceError(io, context: "writing to the log")
        }
        for (record, span) in zip(records, spans) {
            replay(record, at: Location(segment: active.sequence, offset: active.size + span.0, length: span.1, term: 0))
        }
        active.size += buffer.count
        hasUnsyncedWrites = true
    }

    private func poison(_ io: StorageIOError, _ context: String) -> StorageFatalError {
        let fatal = StorageFatalError(io, context: context)
        failure = fatal
        return fatal
    }

    /// Starts a new segment: fsync the current one (so that only the last segment can ever be torn), then create the
    /// next through a temporary file holding the header and the prologue, fsync it, rename it, fsync the directory.
    private func rotate() throws {
        try sync()
        let next = (segments.last?.sequence ?? 0) + 1
        let create = {
            try Self.createSegment(
                in: self.directory, sequence: next, firstIndex: self.lastIndex + 1, prologue: self.prologue(),
                fs: self.fs)
        }
        do {
            let segment: Segment
            do {
                segment = try create()
            } catch let io as StorageIOError where io.kind == .noDescriptors && spareDescriptor >= 0 {
                // Every descriptor is taken (by connections, say): the spare one makes room for the segment.
                try? fs.remove(directory + "/" + Self.segmentName(sequence: next, firstIndex: lastIndex + 1) + ".tmp")
                _ = Glibc.close(spareDescriptor)
                spareDescriptor = -1
                segment = try create()
            }
            segments.append(segment)
            if spareDescriptor < 0 { spareDescriptor = Glibc.open("/dev/null", O_RDONLY | O_CLOEXEC) }
            // The prologue restates what is already in the index; replaying it changes nothing.
        } catch let io as StorageIOError {
            // The segment is created under a temporary name and renamed: a full disk leaves the log as it was.
            if io.kind == .noSpace || io.kind == .noDescriptors, io.operation != "fsync" {
                try? fs.remove(directory + "/" + Self.segmentName(sequence: next, firstIndex: lastIndex + 1) + ".tmp")
                if io.kind == .noDescriptors {
                    throw StorageNoDescriptorsError(io, context: "starting a new log segment")
                }
                throw StorageNoSpaceError(io, context: "starting a new log segment")
            }
            throw poison(io, "starting a new log segment")
        }
    }

    private func prologue() -> [WALRecord] {
        [.checkpoint(baseIndex: baseIndex, baseTerm: baseTerm, snapshot: snapshot, hardState: hardState)]
    }

    static func segmentName(sequence: UInt64, firstIndex: LogIndex) -> String {
        func pad(_ v: UInt64) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, 20 - s.count)) + s
        }
        return "\(pad(sequence))-\(pad(firstIndex)).seg"
    }

    static func parseSegmentName(_ name: String) -> (UInt64, LogIndex)? {
        guard name.hasSuffix(".seg") else { return nil }
        let parts = name.dropLast(4).split(separator: "-")
        guard parts.count == 2, let seq = UInt64(parts[0]), let first = UInt64(parts[1]) else { return nil }
        return (seq, first)
    }

    private static func createSegment(
        in directory: String, sequence: UInt64, firstIndex: LogIndex, prologue: [WALRecord], fs: any StorageFileSystem
    ) throws -> Segment {
        var bytes = SegmentHeader(sequence: sequence, firstIndex: firstIndex).encoded
        for record in prologue { record.frame(into: &bytes) }
        let path = directory + "/" + segmentName(sequence: sequence, firstIndex: firstIndex)
        try fs.writeAtomically(bytes, to: path)
        let file = try fs.open(path, writable: true)
        return Segment(sequence: sequence, firstIndex: firstIndex, path: path, file: file, size: bytes.count)
    }

    /// Deletes the oldest segments while none of their records is needed: every live entry is in a later segment
    /// and a later compaction record (already fsynced) covers what they held.
    private func deleteUnneededSegments() throws {
        let keepFrom = locations.first?.segment ?? segments.last!.sequence
        var removed = false
        while let oldest = segments.first, oldest.sequence < keepFrom, segments.count > 1 {
            oldest.file.close()
            do { try fs.remove(oldest.path) } catch let io as StorageIOError {
                throw poison(io, "deleting an old log segment")
            }
            segments.removeFirst()
            removed = true
        }
        if removed {
            do { try fs.syncDirectory(directory) } catch let io as StorageIOError {
                throw poison(io, "syncing the log directory")
            }
        }
    }

    // MARK: - Replay

    /// Applies one record to the in-memory state. Used both when writing and when recovering, so that what is on
    /// disk and what is in memory follow the same rules. Permissive: recovery checks contiguity at the end.
    private func replay(_ record: WALRecord, at location: Location) {
        switch record {
        case .entry(let entry):
            var loc = location
            loc.term = entry.term
            let i = entry.index
            if i <= baseIndex { return }
            let runEnd = runStart + LogIndex(locations.count)  // one past the last
            if !locations.isEmpty && i >= runStart && i <= runEnd {
                locations.removeSubrange(Int(i - runStart)...)
            } else {
                locations.removeAll(keepingCapacity: true)
                runStart = i
            }
            locations.append(loc)
        case .hardState(let hs):
            hardState = hs
        case .snapshot(let meta, let keepsLog):
            // As `MemoryStorage`: keep the log if it held the snapshot's last entry, else the snapshot is the base.
            if !keepsLog && meta.index >= baseIndex {
                locations.removeAll()
                baseIndex = meta.index
                baseTerm = meta.term
                runStart = meta.index + 1
            }
            if snapshot == nil || snapshot!.index <= meta.index { snapshot = meta }
        case .syncMark:
            break
        case .checkpoint(let index, let term, let snap, let hs):
            // Restates the state; from an empty replay (older segments deleted) it establishes it.
            hardState = hs
            if let snap, snapshot == nil || snapshot!.index <= snap.index { snapshot = snap }
            replay(.compact(index: index, term: term), at: location)
        case .compact(let index, let term):
            guard index > baseIndex else { return }
            let runEnd = runStart + LogIndex(locations.count)
            if index >= runEnd || locations.isEmpty {
                locations.removeAll()
                runStart = index + 1
            } else if index >= runStart {
                locations.removeFirst(Int(index - runStart + 1))
                runStart = index + 1
            }
            baseIndex = index
            baseTerm = term
        }
    }

    // MARK: - Open and recovery

    /// Creates the first segment of an empty WAL in `directory` (which must exist and be empty).
    static func initialize(directory: String, fs: any StorageFileSystem) throws {
        let segment = try createSegment(
            in: directory, sequence: 1, firstIndex: 1,
            prologue: [.checkpoint(baseIndex: 0, baseTerm: 0, snapshot: nil, hardState: HardState())], fs: fs)
        segment.file.close()
    }

    /// Opens the WAL in `directory`, replaying every segment.
    ///
    /// A torn tail (an incomplete or checksum-failing last record of the last segment, or a zero-filled tail) is
    /// truncated and reported in `recoveryWarnings`. Damage anywhere else throws `StorageOpenError` (`.corruption`)
    /// naming the file and offset; nothing is modified then.
    public static func open(
        directory: String, options: Options = Options(), fs: any StorageFileSystem = POSIXFileSystem()
    ) throws -> WAL {
        let wal = WAL(directory: directory, options: options, fs: fs)
        do {
            try wal.recover()
        } catch let io as StorageIOError {
            throw StorageOpenError(io)
        }
        return wal
    }

    /// Whether a readable sync mark after `after` in `bytes` says the file was fsynced beyond `offset`.
    ///
    /// Every byte position is tried, so the scan looks only at positions whose header says "sync mark with an
    /// 8-byte payload" before checking any checksum (linear, even over a tail full of client data shaped like
    /// record headers), and it believes a mark only for bytes before the mark itself: a writer records how far the
    /// file was fsynced when it appends the mark, which is never past where the mark stands.
    static func syncMarkCovers(_ offset: Int, in bytes: [UInt8], after: Int) -> Bool {
        var at = after + 1
        let syncMarkType = WALRecord.RecordType.syncMark.rawValue
        while at + WALRecord.headerSize + 8 <= bytes.count {
            let isMarkHeader = bytes[at] == 8 && bytes[at + 1] == 0 && bytes[at + 2] == 0 && bytes[at + 3] == 0
                && bytes[at + 4] == syncMarkType
            if isMarkHeader, case .record(.syncMark(let mark), _) = WALRecord.parse(bytes[at...]),
                mark > UInt64(offset), mark <= UInt64(at)
            {
                return true
            }
            at += 1
        }
        return false
    }

    private func recover() throws {
        var found: [(UInt64, LogIndex, String)] = []
        for name in try fs.list(directory) {
            if name.hasSuffix(".tmp") {
                // A segment whose creation was interrupted before its rename: it never held a record.
                try fs.remove(directory + "/" + name)
                recoveryWarnings.append("removed unfinished segment file \(directory)/\(name)")
            } else if let (seq, first) = Self.parseSegmentName(name) {
                found.append((seq, first, directory + "/" + name))
            }
        }
        found.sort { $0.0 < $1.0 }
        guard !found.isEmpty else {
            throw StorageOpenError(
                .missingFiles,
                "no WAL segment in \(directory): the data directory is initialised but its log is missing; refusing "
                    + "to start with an empty log (the node's vote and term would be lost)",
                path: directory)
        }
        for (k, (seq, _, path)) in found.enumerated() where k > 0 && seq != found[k - 1].0 + 1 {
            throw StorageOpenError(
                .missingFiles, "WAL segment \(found[k - 1].0 + 1) is missing before \(path)", path: path)
        }
        for (k, (seq, first, path)) in found.enumerated() {
            let isLast = k == found.count - 1
            let file = try fs.open(path, writable: true)
            let bytes = try file.readAll()
            let header: SegmentHeader
            do {
                header = try SegmentHeader.decode(bytes[...])
            } catch {
                throw StorageOpenError.corruption(path: path, offset: 0, "bad segment header: \(error)")
            }
            guard header.sequence == seq, header.firstIndex == first else {
                throw StorageOpenError.corruption(
                    path: path, offset: 0, "segment header says \(header.sequence)-\(header.firstIndex), "
                        + "the file name \(seq)-\(first)")
            }
            let segment = Segment(sequence: seq, firstIndex: first, path: path, file: file, size: bytes.count)
            segments.append(segment)
            var offset = SegmentHeader.size
            // Format 2: the newest sync mark read so far (at least the prologue, fsynced when the segment was made).
            var provenSynced = 0
            while offset < bytes.count {
                let parsed = WALRecord.parse(bytes[offset...])
                if case .record(let record, let length) = parsed {
                    if offset == SegmentHeader.size { provenSynced = offset + length }
                    if case .syncMark(let mark) = record { provenSynced = max(provenSynced, Int(clamping: mark)) }
                    replay(record, at: Location(segment: seq, offset: offset, length: length, term: 0))
                    offset += length
                    continue
                }
                let rest = bytes[offset...]
                let tailIsZero = rest.allSatisfy { $0 == 0 }
                let isTorn: Bool
                let what: String
                switch parsed {
                case .incomplete:
                    isTorn = true
                    what = "incomplete record"
                case .badHeader:
                    isTorn = tailIsZero
                    what = "record header checksum mismatch"
                case .badPayload(let length):
                    isTorn = tailIsZero || offset + length == bytes.count
                        || bytes[(offset + length)...].allSatisfy { $0 == 0 }
                    what = "record payload checksum mismatch"
                case .malformed(let reason, _):
                    isTorn = false
                    what = "malformed record: \(reason)"
                case .record:
                    isTorn = false
                    what = ""
                }
                // Format 2: past the last synced offset, any damage is an unsynced write the power cut left half done
                // or out of order (under both strategies nothing there was acknowledged), unless a later sync mark
                // proves the offset was synced.
                let unsynced = header.version >= 2 && offset >= provenSynced
                    && !Self.syncMarkCovers(offset, in: bytes, after: offset)
                guard isLast, isTorn || unsynced else {
                    throw StorageOpenError.corruption(path: path, offset: offset, what)
                }
                try file.truncate(to: offset)
                try file.sync()
                segment.size = offset
                // What stays is fsynced now, and nothing after it: the next sync mark must not claim the bytes cut.
                segment.syncedSize = offset
                segment.markedSyncedSize = -1
                recoveryWarnings.append(
                    "torn tail in \(path): \(what) at offset \(offset); truncated \(bytes.count - offset) bytes "
                        + "(the last write before a crash did not complete)")
                break
            }
            // What recovery read is what the next sync marks claim as synced: make it so (after a kill -9 it may
            // still be only in the page cache).
            if isLast { try file.sync() }
        }
        if !locations.isEmpty && runStart != baseIndex + 1 {
            throw StorageOpenError(
                .missingFiles,
                "the WAL in \(directory) is missing entries \(baseIndex + 1)...\(runStart - 1) (a segment was "
                    + "deleted or replaced)", path: directory)
        }
        runStart = baseIndex + 1
        if hardState.commit > lastIndex {
            recoveryWarnings.append(
                "hard state commit \(hardState.commit) is beyond the last log index \(lastIndex); using \(lastIndex)")
            hardState.commit = lastIndex
        }
    }
}
