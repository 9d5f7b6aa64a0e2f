import Glibc
import RaftCore
import SystemClock

// MARK: - Strategy

/// When a write counts as persisted (`[raft.persistence] strategy`).
public enum PersistenceStrategy: Sendable, Equatable, CustomStringConvertible {
    /// Entries count toward commit only after fsync. Group commit: one fsync per `persist` call, however many
    /// entries it carries.
    case diskFirst
    /// A leader's own batches are written to the OS and fsynced when `threshold` entries are unsynced or the oldest
    /// unsynced write is `intervalMs` old (`flush_policy.Batch`); a batch that acknowledges entries to a leader is
    /// fsynced before the acknowledgement leaves. Entries count toward commit only once fsynced (issue #15: counting
    /// a copy that a power cut can take back loses acknowledged writes; docs/storage.md).
    case memFirst(threshold: Int, intervalMs: UInt64)

    public var description: String {
        switch self {
        case .diskFirst: return "DiskFirst"
        case .memFirst(let threshold, let interval): return "MemFirst(threshold=\(threshold), interval_ms=\(interval))"
        }
    }
}

/// How far the log is persisted.
public struct Durability: Sendable, Equatable, CustomStringConvertible {
    /// The last index written to the OS: it survives the process being killed.
    public var written: LogIndex
    /// The last index fsynced: it survives a power loss.
    public var synced: LogIndex
    /// The last index that may count toward commit on this node: `synced`, under both strategies.
    public var acknowledged: LogIndex

    public init(written: LogIndex, synced: LogIndex, acknowledged: LogIndex) {
        self.written = written
        self.synced = synced
        self.acknowledged = acknowledged
    }

    public var description: String { "written=\(written) synced=\(synced) ack=\(acknowledged)" }
}

// MARK: - Writer

/// The durability layer above the WAL, driven by the node's dedicated I/O thread: "write these entries and this hard
/// state; tell me how durable they are". Never call it from the core's loop.
///
/// Ordering on disk, per call: the snapshot record, the term/vote change (if any), the entries, then the commit
/// index, all in one `write(2)`. A term or vote change is fsynced before the call returns under both strategies: a
/// vote that a power loss could undo would let a node vote twice in one term (Raft §5.2).
///
/// `maxBufferedEntries` bounds how many entries may sit written-but-unsynced; reaching it forces an fsync before
/// `persist` returns (backpressure on the I/O thread, which the core sees as slower acknowledgements).
///
/// A failed write or fsync throws `StorageFatalError`; the writer and its WAL are unusable afterwards and the node
/// must exit. An fsync is never retried.
// @unchecked Sendable: confined to one thread at a time (the node's WAL thread), like its WAL.
public final class LogWriter: @unchecked Sendable {
    public let wal: WAL
    public let strategy: PersistenceStrategy
    public let maxBufferedEntries: Int
    public private(set) var durability: Durability
    /// Entries written to the OS since the last fsync.
    public private(set) var unsyncedEntries = 0
    /// When the oldest unsynced write happened (monotonic ms), if any.
    private var oldestUnsyncedAt: UInt64?

    public init(wal: WAL, strategy: PersistenceStrategy, maxBufferedEntries: Int = 10_000) {
        self.wal = wal
        self.strategy = strategy
        self.maxBufferedEntries = max(1, maxBufferedEntries)
        // Whatever recovery found is on disk (a torn tail was truncated away).
        durability = Durability(written: wal.lastIndex, synced: wal.lastIndex, acknowledged: wal.lastIndex)
    }

    /// fsyncs performed by the underlying WAL.
    public var fsyncCount: Int { wal.syncCount }

    /// A monotonic clock in milliseconds, for `now` arguments.
    public static func monotonicMillis() -> UInt64 { MonotonicClock.milliseconds() }

    /// Writes one batch: `snapshot` (metadata of a snapshot whose file is already saved), the `hardState`, and
    /// `entries` (conflict truncation if the first index is `<= lastIndex`), then syncs as the strategy says.
    ///
    /// - Returns: the durability after the call; `acknowledged` tells the core which entries count.
    /// - Parameter acknowledges: the batch's messages acknowledge entries to a leader: under MemFirst it is fsynced
    ///   before returning (a follower never vouches for a copy that a power cut can take back).
    @discardableResult
    public func persist(
        entries: [Entry], hardState: HardState? = nil, snapshot: SnapshotMetadata? = nil, acknowledges: Bool = false,
        now: UInt64 = LogWriter.monotonicMillis()
    ) throws -> Durability {
        try write(entries: entries, hardState: hardState, snapshot: snapshot, now: now)
        if acknowledges { mustSync = true }
        return try commitBatch(now: now)
    }

    /// The last fsynced index and its term, for `RaftNode.markSynced` after a flush.
    public var syncedPoint: (index: LogIndex, term: Term)? {
        wal.term(at: durability.synced).map { (durability.synced, $0) }
    }

    /// The write half of `persist`: records go to the OS, no fsync. Several `write`s followed by one `commitBatch`
    /// form one group commit (what `PersistenceWorker` does with the requests that queued up during an fsync).
    public func write(entries: [Entry], hardState: HardState?, snapshot: SnapshotMetadata?, now: UInt64) throws {
        let before = wal.hardState
        let forceSync = snapshot != nil || (hardState.map { $0.term != before.term || $0.vote != before.vote } ?? false)
        try wal.writeBatch(snapshot: snapshot, hardState: hardState, entries: entries)
        if let first = entries.first, first.index <= durability.synced { durability.synced = first.index - 1 }
        if snapshot != nil { durability.synced = min(durability.synced, wal.lastIndex) }
        durability.written = wal.lastIndex
        unsyncedEntries += entries.count
        if wal.hasUnsyncedWrites && oldestUnsyncedAt == nil { oldestUnsyncedAt = now }
        if forceSync { mustSync = true }
        updateAcknowledged()
    }

    private var mustSync = false

    /// The sync half of `persist`: fsync if the strategy requires it now.
    @discardableResult
    public func commitBatch(now: UInt64) throws -> Durability {
        switch strategy {
        case .diskFirst:
            try syncNow()
        case .memFirst(let threshold, let interval):
            if mustSync || unsyncedEntries >= max(1, threshold) || unsyncedEntries >= maxBufferedEntries
                || isDue(now: now, interval: interval)
            {
                try syncNow()
            }
        }
        return durability
    }

    /// Under MemFirst, fsyncs when the oldest unsynced write is `interval_ms` old. Call it when `nextFlushDeadline`
    /// passes. Returns the new durability if it synced.
    public func flushIfDue(now: UInt64) throws -> Durability? {
        guard case .memFirst(_, let interval) = strategy, isDue(now: now, interval: interval) else { return nil }
        try syncNow()
        return durability
    }

    /// When `flushIfDue` should next be called (monotonic ms), or `nil` if nothing is waiting for an fsync.
    public var nextFlushDeadline: UInt64? {
        guard case .memFirst(_, let interval) = strategy, let oldest = oldestUnsyncedAt else { return nil }
        return oldest + interval
    }

    /// fsyncs everything written so far (shutdown, tests).
    @discardableResult
    public func flush() throws -> Durability {
        try syncNow()
        return durability
    }

    /// Compacts the log before `index` (clamped to the snapshot), keeping the caller's retained entries; deletes
    /// segments that are no longer needed. Implies an fsync.
    public func compact(before index: LogIndex) throws {
        try wal.compact(before: index)
        markSynced()
    }

    private func isDue(now: UInt64, interval: UInt64) -> Bool {
        guard let oldest = oldestUnsyncedAt else { return false }
        return now >= oldest + interval
    }

    private func syncNow() throws {
        try wal.sync()
        markSynced()
    }

    private func markSynced() {
        durability.synced = wal.lastIndex
        durability.written = wal.lastIndex
        unsyncedEntries = 0
        oldestUnsyncedAt = nil
        mustSync = false
        updateAcknowledged()
    }

    private func updateAcknowledged() {
        durability.acknowledged = durability.synced
    }
}

// MARK: - WAL batch

extension WAL {
    /// Validates and writes a snapshot record, a hard state and entries with one `write(2)`, in the order that keeps
    /// every prefix of the log consistent: snapshot; term/vote (with the commit index clamped to entries already in
    /// the log); entries; the full hard state.
    public func writeBatch(snapshot snap: SnapshotMetadata?, hardState hs: HardState?, entries: [Entry]) throws {
        var records: [WALRecord] = []
        var first = firstIndex
        var last = lastIndex
        if let snap {
            if let current = snapshot, current.index >= snap.index {
                throw StorageError("snapshot \(snap.index) is not newer than current \(current.index)")
            }
            let keepsLog = term(at: snap.index) == snap.term
            records.append(.snapshot(snap, keepsLog: keepsLog))
            if !keepsLog {
                first = snap.index + 1
                last = snap.index
            }
        }
        var recorded = hardState
        if let hs, hs.term != recorded.term || hs.vote != recorded.vote {
            recorded = HardState(term: hs.term, vote: hs.vote, commit: min(recorded.commit, last))
            records.append(.hardState(recorded))
        }
        if let head = entries.first {
            guard head.index >= first, head.index <= last + 1 else {
                throw StorageError("append at \(head.index) outside \(first)...\(last + 1)")
            }
            for (offset, entry) in entries.enumerated() where entry.index != head.index + LogIndex(offset) {
                throw StorageError("append: entries not contiguous at \(entry.index)")
            }
            records.append(contentsOf: entries.map { .entry($0) })
        }
        if let hs, hs != recorded { records.append(.hardState(hs)) }
        try write(records)
    }
}
