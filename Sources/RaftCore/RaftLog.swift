/// The core's in-memory copy of the log since its base (the last compacted entry), with the bookkeeping that says
/// which parts have been handed to the shell for persistence and for applying.
///
/// Invariants (asserted): `base <= handedApply <= commit <= lastIndex`; `stable <= lastIndex`;
/// `persistFrom <= lastIndex + 1`; with a snapshot, `base <= snapshot.index`.
struct RaftLog: Sendable {
    /// The last compacted entry: its index and term (`0/0` for an uncompacted log).
    private(set) var baseIndex: LogIndex = 0
    private(set) var baseTerm: Term = 0
    private(set) var entries: [Entry] = []
    /// The latest snapshot (local or installed).
    private(set) var snapshot: SnapshotMetadata?
    /// A received snapshot not yet handed to the shell.
    var pendingSnapshot: SnapshotMetadata?
    var commit: LogIndex = 0
    /// Entries up to here have been handed out in `Ready.committedEntries`.
    var handedApply: LogIndex = 0
    /// Entries up to here are on stable storage (confirmed by `advance`).
    var stable: LogIndex = 0
    /// Entries up to here survive a power loss (fsynced); `synced <= stable`. A leader counts itself toward commit
    /// only up to here: under MemFirst a leader's fsync may lag its write(2) (`RaftNode.markSynced`).
    var synced: LogIndex = 0
    /// The first entry not yet handed out in `Ready.entries`.
    var persistFrom: LogIndex = 1

    /// Configuration entries in the log (index ascending) and the configuration in force at the base.
    private(set) var configHistory: [(index: LogIndex, membership: Membership)] = []
    private(set) var baseMembership: Membership

    init(membership: Membership) {
        baseMembership = membership
    }

    /// Loads the log from storage: everything there is already stable.
    ///
    /// Membership: without a snapshot the log starts at index 1 and its configuration entries replay on top of
    /// `initialMembership`. With one, the snapshot's membership is authoritative at its index and the configuration
    /// entries after it replay on top; indexes below the snapshot are never asked about again.
    init(storage: some LogStorage, initialMembership: Membership) throws {
        snapshot = storage.snapshot
        baseIndex = storage.firstIndex - 1
        baseTerm = storage.term(at: baseIndex) ?? 0
        baseMembership = storage.snapshot?.membership ?? initialMembership
        if storage.lastIndex >= storage.firstIndex {
            entries = try storage.entries(from: storage.firstIndex, to: storage.lastIndex)
        }
        let replayAfter = snapshot?.index ?? 0
        for entry in entries where entry.kind == .config && entry.index > replayAfter { recordConfig(entry) }
        let hard = storage.hardState
        commit = min(max(hard.commit, snapshot?.index ?? 0, baseIndex), lastIndex)
        handedApply = max(snapshot?.index ?? 0, baseIndex)
        stable = lastIndex
        synced = lastIndex
        persistFrom = lastIndex + 1
    }

    var firstIndex: LogIndex { baseIndex + 1 }
    var lastIndex: LogIndex { baseIndex + LogIndex(entries.count) }
    var lastTerm: Term { entries.last?.term ?? baseTerm }

    func term(at index: LogIndex) -> Term? {
        if index == baseIndex { return baseTerm }
        if index == 0 { return 0 }
        guard index > baseIndex, index <= lastIndex else { return nil }
        return entries[Int(index - baseIndex - 1)].term
    }

    func entry(at index: LogIndex) -> Entry? {
        guard index > baseIndex, index <= lastIndex else { return nil }
        return entries[Int(index - baseIndex - 1)]
    }

    /// Entries in `[from, to]`, limited to `maxCount` and `maxBytes` (at least one is returned if any exist).
    func slice(from: LogIndex, to: LogIndex, maxCount: Int = .max, maxBytes: Int = .max) -> ArraySlice<Entry> {
        guard from <= to, from > baseIndex, to <= lastIndex else { return [] }
        let lo = Int(from - baseIndex - 1)
        var hi = Int(to - baseIndex - 1)
        if maxCount < hi - lo + 1 { hi = lo + max(maxCount, 1) - 1 }
        if maxBytes != .max {
            var bytes = 0
            for i in lo...hi {
                bytes += entries[i].data.count + 32
                if bytes > maxBytes && i > lo {
                    hi = i - 1
                    break
                }
            }
        }
        return entries[lo...hi]
    }

    /// Whether a candidate's log with this last entry is at least as up-to-date as ours (Raft §5.4.1).
    func isUpToDate(lastIndex candidateIndex: LogIndex, lastTerm candidateTerm: Term) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    // MARK: membership

    /// The configuration in force: the latest in the log, appended or not (thesis §4.1).
    var membership: Membership { configHistory.last?.membership ?? baseMembership }

    /// The index of the latest configuration entry (0 if none since the base).
    var lastConfigIndex: LogIndex { configHistory.last?.index ?? 0 }

    /// The configuration in force at `index` (for snapshot metadata).
    func membership(at index: LogIndex) -> Membership {
        configHistory.last { $0.index <= index }?.membership ?? baseMembership
    }

    private mutating func recordConfig(_ entry: Entry) {
        // An undecodable record (which a correct leader never writes) leaves the configuration as it is.
        let next = ConfigChangeRecord(encoded: entry.data)?.result ?? membership
        configHistory.append((entry.index, next))
    }

    // MARK: mutation

    /// Appends entries that follow `lastIndex` directly.
    mutating func append(_ new: [Entry]) {
        for entry in new {
            precondition(entry.index == lastIndex + 1, "append must be contiguous")
            entries.append(entry)
            if entry.kind == .config { recordConfig(entry) }
        }
    }

    /// Discards entries from `index` on. Never below the commit index (Raft §5.3: committed entries are never lost).
    mutating func truncate(from index: LogIndex) {
        precondition(index > commit, "truncating committed entry \(index) (commit \(commit))")
        precondition(index > baseIndex)
        guard index <= lastIndex else { return }
        entries.removeSubrange(Int(index - baseIndex - 1)...)
        configHistory.removeAll { $0.index >= index }
        stable = min(stable, index - 1)
        synced = min(synced, index - 1)
        persistFrom = min(persistFrom, index)
    }

    /// Replaces the log with a snapshot base (InstallSnapshot that does not match our log).
    mutating func restore(_ snap: SnapshotMetadata) {
        entries.removeAll()
        configHistory.removeAll()
        baseIndex = snap.index
        baseTerm = snap.term
        baseMembership = snap.membership
        snapshot = snap
        pendingSnapshot = snap
        commit = snap.index
        handedApply = snap.index
        stable = snap.index
        synced = snap.index
        persistFrom = snap.index + 1
    }

    /// Records a snapshot taken locally at `snap.index` and drops entries before `before` (never past it).
    mutating func compact(snapshot snap: SnapshotMetadata, before: LogIndex) {
        if snapshot == nil || snapshot!.index < snap.index { snapshot = snap }
        let limit = min(before, snap.index + 1, stable + 1, handedApply + 1)
        guard limit > firstIndex else { return }
        let newBaseTerm = term(at: limit - 1)!
        baseMembership = membership(at: limit - 1)
        configHistory.removeAll { $0.index < limit }
        entries.removeFirst(Int(limit - firstIndex))
        baseIndex = limit - 1
        baseTerm = newBaseTerm
    }

    func checkInvariants() {
        assert(baseIndex <= handedApply, "log invariant: base \(baseIndex) <= handedApply \(handedApply)")
        assert(handedApply <= commit, "log invariant: handedApply \(handedApply) <= commit \(commit)")
        assert(commit <= lastIndex, "log invariant: commit \(commit) <= last \(lastIndex)")
        assert(stable <= lastIndex, "log invariant: stable \(stable) <= last \(lastIndex)")
        assert(synced <= stable, "log invariant: synced \(synced) <= stable \(stable)")
    }
}
