import RaftCore

/// When this node takes a snapshot and what it keeps of its snapshots: the newest one (its image is what a lagging
/// follower is sent), the bytes applied since, one in progress at a time, a back-off after one failed for want of space,
/// and the image of a received snapshot staged until its Ready installs it. A value confined to the Raft loop; it
/// performs no I/O and reads no clock: `RaftServer` takes, installs and sends as it says (`SnapshotFiles` writes).
struct SnapshotSchedule {
    /// `snapshot.enable`.
    let enabled: Bool
    /// A snapshot is taken once this many entries were applied since the last one.
    let every: UInt64
    /// ... or once this many bytes of entries were, so that large values cannot grow the in-memory log without bound.
    let everyBytes: UInt64
    /// The entries kept after a snapshot for slow followers ...
    let retainedEntries: UInt64
    /// ... holding at most about this many bytes.
    let retainedBytes: UInt64

    /// The newest snapshot taken or installed, with its image.
    private(set) var latest: (meta: SnapshotMetadata, data: [UInt8])?
    private(set) var lastIndex: LogIndex = 0
    private(set) var inProgress = false
    /// No snapshot is tried before this (monotonic ms): one failed for want of space or descriptors.
    private var retryAt: UInt64 = 0
    /// Bytes of entry data applied since the last snapshot was taken.
    private(set) var appliedBytes: UInt64 = 0
    /// A received snapshot's image, by index, until the Ready that installs it.
    private var staged: [LogIndex: [UInt8]] = [:]

    init(
        enabled: Bool, every: UInt64, everyBytes: UInt64, retainedEntries: UInt64, retainedBytes: UInt64,
        restored: (meta: SnapshotMetadata, data: [UInt8])?
    ) {
        self.enabled = enabled
        self.every = every
        self.everyBytes = everyBytes
        self.retainedEntries = retainedEntries
        self.retainedBytes = retainedBytes
        latest = restored
        lastIndex = restored?.meta.index ?? 0
    }

    /// An entry of `bytes` was applied.
    mutating func applied(bytes: UInt64) { appliedBytes += bytes }

    /// Whether to take a snapshot of the state applied through `applied`, at `now`. Under the NOSPACE alarm
    /// (`noSpace`) every applied entry is compacted as soon as it can be: that is what frees space.
    func isDue(applied: LogIndex, noSpace: Bool, now: UInt64) -> Bool {
        let due = applied >= lastIndex + every
            || (appliedBytes >= everyBytes && applied > lastIndex)
            || (noSpace && applied > lastIndex)
        return enabled && !inProgress && due && now >= retryAt
    }

    /// One snapshot being taken.
    struct Plan: Equatable {
        /// The entries to keep before its index.
        var retain: UInt64
        /// The applied bytes it covers.
        var bytesCovered: UInt64
    }

    /// Starts the snapshot of the state applied through `applied`. It keeps `retainedEntries` for slow followers,
    /// fewer when they would hold more than `retainedBytes` (judged by the average entry since the last snapshot).
    mutating func begin(applied: LogIndex) -> Plan {
        inProgress = true
        let averageEntryBytes = max(1, appliedBytes / max(1, applied - min(applied, lastIndex)))
        return Plan(retain: min(retainedEntries, retainedBytes / averageEntryBytes), bytesCovered: appliedBytes)
    }

    /// The snapshot `plan` was taken and recorded at `meta`: `true` when it is the newest (compact the log), `false`
    /// when a snapshot installed meanwhile is newer.
    mutating func taken(_ meta: SnapshotMetadata, data: [UInt8], plan: Plan) -> Bool {
        inProgress = false
        guard meta.index > lastIndex else { return false }
        appliedBytes -= min(appliedBytes, plan.bytesCovered)
        latest = (meta, data)
        lastIndex = meta.index
        return true
    }

    /// The snapshot in progress was not taken: superseded by an installed one, or it failed (`retryAt`: none is tried
    /// before then).
    mutating func notTaken(retryAt: UInt64? = nil) {
        inProgress = false
        if let retryAt { self.retryAt = retryAt }
    }

    /// A snapshot received from the leader was installed.
    mutating func installed(_ meta: SnapshotMetadata, data: [UInt8]) {
        latest = (meta, data)
        lastIndex = meta.index
    }

    /// Keeps a received image until its Ready (only the newest: one the core took replaces any earlier one).
    mutating func stage(_ meta: SnapshotMetadata, data: [UInt8]) { staged = [meta.index: data] }

    /// The staged image for the snapshot at `index`, removed.
    mutating func takeStaged(_ index: LogIndex) -> [UInt8]? { staged.removeValue(forKey: index) }

    /// The image to send for a snapshot at `index`, if it is the newest one.
    func image(at index: LogIndex) -> [UInt8]? {
        guard let latest, latest.meta.index == index else { return nil }
        return latest.data
    }
}
