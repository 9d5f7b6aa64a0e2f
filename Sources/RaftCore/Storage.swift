/// The storage contract shared by the in-memory storage (simulation) and the write-ahead log (the node).
///
/// The core never calls the write side: it *reads* a `LogStorage` once when it boots (`RaftNode.init(config:
/// storage:)`) and afterwards states in each `Ready` what the shell must persist. The shell performs the writes in
/// the order the `Ready` documents and calls `sync()` where it needs durability.
///
/// The log holds entries `[firstIndex, lastIndex]`; the entry just before (`firstIndex - 1`, the *base*) was
/// compacted away but its term is remembered so that AppendEntries consistency checks still work.
///
/// Invariants (checked by the storage conformance suite):
/// - no snapshot: `firstIndex == 1`; with one: `firstIndex - 1 <= snapshot.index <= lastIndex`;
/// - `term(at:)` answers for `[firstIndex - 1, lastIndex]` and is `nil` outside (0 for index 0);
/// - entries are contiguous: `entries(from: firstIndex, to: lastIndex)` has `lastIndex - firstIndex + 1` items.
public protocol LogStorage {
    // MARK: read
    var hardState: HardState { get }
    /// The latest snapshot the log was compacted to, if any.
    var snapshot: SnapshotMetadata? { get }
    var firstIndex: LogIndex { get }
    var lastIndex: LogIndex { get }
    /// The term of the entry at `index`; the snapshot's term at the snapshot index; `nil` if not present.
    func term(at index: LogIndex) -> Term?
    /// Entries in `[from, to]` (inclusive). Throws if any of them is compacted or absent.
    func entries(from: LogIndex, to: LogIndex) throws -> [Entry]

    // MARK: write
    /// Appends `entries` (contiguous, ascending). If the first index is `<= lastIndex`, the existing suffix from
    /// that index on is discarded first (Raft §5.3 conflict truncation). The first index must be `<= lastIndex + 1`
    /// and `>= firstIndex`.
    mutating func append(_ entries: [Entry]) throws
    mutating func setHardState(_ state: HardState) throws
    /// Records `snapshot` as the latest snapshot. If the log holds `snapshot.index` with `snapshot.term` (a snapshot
    /// taken locally, or a received one that matches), the log is kept as it is; otherwise the whole log is
    /// discarded and the snapshot becomes its base (`firstIndex == snapshot.index + 1`). Older snapshots are refused.
    mutating func applySnapshot(_ snapshot: SnapshotMetadata) throws
    /// Discards entries with index `< index`. Only entries covered by the snapshot may go: `index` is clamped to
    /// `snapshot.index + 1`; without a snapshot, or at or below `firstIndex`, it does nothing.
    mutating func compact(before index: LogIndex) throws
    /// Makes everything written so far durable.
    mutating func sync() throws
}

public struct StorageError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// An in-memory `LogStorage`, used by the simulator and as the reference for the conformance suite.
public struct MemoryStorage: LogStorage, Sendable {
    public private(set) var hardState = HardState()
    public private(set) var snapshot: SnapshotMetadata?
    /// Base of the log: the compaction point (index and term of the entry just before `log[0]`).
    private var baseIndex: LogIndex = 0
    private var baseTerm: Term = 0
    private var log: [Entry] = []

    public init() {}

    public var firstIndex: LogIndex { baseIndex + 1 }
    public var lastIndex: LogIndex { baseIndex + LogIndex(log.count) }

    public func term(at index: LogIndex) -> Term? {
        if index == 0 { return 0 }
        if index == baseIndex { return baseTerm }
        guard index > baseIndex, index <= lastIndex else { return nil }
        return log[Int(index - baseIndex - 1)].term
    }

    public func entries(from: LogIndex, to: LogIndex) throws -> [Entry] {
        if to < from { return [] }
        guard from > baseIndex, to <= lastIndex else {
            throw StorageError("entries \(from)...\(to) outside \(firstIndex)...\(lastIndex)")
        }
        return Array(log[Int(from - baseIndex - 1)...Int(to - baseIndex - 1)])
    }

    public mutating func append(_ entries: [Entry]) throws {
        guard let first = entries.first else { return }
        guard first.index >= firstIndex, first.index <= lastIndex + 1 else {
            throw StorageError("append at \(first.index) outside \(firstIndex)...\(lastIndex + 1)")
        }
        for (offset, entry) in entries.enumerated() where entry.index != first.index + LogIndex(offset) {
            throw StorageError("append: entries not contiguous at \(entry.index)")
        }
        log.removeSubrange(Int(first.index - baseIndex - 1)...)
        log.append(contentsOf: entries)
    }

    public mutating func setHardState(_ state: HardState) throws { hardState = state }

    public mutating func applySnapshot(_ snap: SnapshotMetadata) throws {
        if let current = snapshot, current.index >= snap.index {
            throw StorageError("snapshot \(snap.index) is not newer than current \(current.index)")
        }
        if snap.index > lastIndex || term(at: snap.index) != snap.term {
            log.removeAll()
            baseIndex = snap.index
            baseTerm = snap.term
        }
        snapshot = snap
    }

    public mutating func compact(before index: LogIndex) throws {
        guard let snap = snapshot else { return }
        let limit = min(index, snap.index + 1)
        guard limit > firstIndex else { return }
        let newBaseTerm = term(at: limit - 1)!
        log.removeFirst(Int(limit - firstIndex))
        baseIndex = limit - 1
        baseTerm = newBaseTerm
    }

    public mutating func sync() throws {}
}
