/// The role of a node in its current term.
public enum Role: String, Sendable, Equatable {
    case follower, preCandidate = "pre-candidate", candidate, leader
}

/// Volatile facts the shell logs when they change (etcd's `SoftState`).
public struct SoftState: Sendable, Equatable, CustomStringConvertible {
    public var role: Role
    public var term: Term
    public var leader: NodeID?

    public var description: String { "\(role.rawValue) term=\(term) leader=\(leader.map(String.init) ?? "-")" }
}

/// A read confirmed by ReadIndex: serve request `id` once the state machine has applied `index`.
public struct ReadState: Sendable, Equatable, CustomStringConvertible {
    public var id: UInt64
    public var index: LogIndex
    public init(id: UInt64, index: LogIndex) {
        self.id = id
        self.index = index
    }
    public var description: String { "read #\(id) at \(index)" }
}

/// Why a read or proposal was dropped without being served or proposed.
public enum DropReason: String, Sendable, Equatable {
    case notLeader = "not-leader"
    case leadershipTransfer = "leadership-transfer"
    /// A follower read: the leader it asked changed (or this node started an election) before the answer came.
    case leaderChanged = "leader-changed"
    /// A follower read: the leader refused to give a read index (it is no longer leader, or a transfer is under way).
    case refusedByLeader = "refused-by-leader"
    /// A follower read: no answer from the leader within an election timeout (the request or answer was lost).
    case noAnswer = "no-answer"
}

/// Everything the shell must do after feeding the core, in this order:
///
/// 0. Send `earlyMessages` at once: a leader's AppendEntries do not wait for its own disk (thesis §10.2.1).
/// 1. Persist: if `snapshot` is set, install it (its data was staged by the shell when the InstallSnapshot arrived)
///    and restore the state machine from it; append `entries` (discarding any stored suffix from
///    `entries.first.index` on); store `hardState`. Make them durable according to the persistence strategy.
/// 2. Send `messages` — only after step 1, because they depend on it (a vote depends on the persisted vote and
///    term; an AppendEntries acknowledgement on the persisted entries).
/// 3. Apply `committedEntries` in order; serve `readStates` once applied reaches their index; fail `droppedReads`.
/// 4. Call `advance(_:)` with this value once step 1 is done (step 3 may go on in the background).
///
/// Readies must be persisted in the order they were produced; several may be outstanding.
public struct Ready: Sendable, Equatable, CustomStringConvertible {
    public var softState: SoftState?
    public var hardState: HardState?
    public var snapshot: SnapshotMetadata?
    public var entries: [Entry] = []
    public var messages: [Message] = []
    /// Messages that may be sent before step 1 (a leader's replication traffic in a term already persisted).
    public var earlyMessages: [Message] = []
    public var committedEntries: [Entry] = []
    public var readStates: [ReadState] = []
    public var droppedReads: [(id: UInt64, reason: DropReason)] = []

    public init() {}

    public var isEmpty: Bool {
        softState == nil && hardState == nil && snapshot == nil && entries.isEmpty && messages.isEmpty
            && earlyMessages.isEmpty && committedEntries.isEmpty && readStates.isEmpty && droppedReads.isEmpty
    }

    /// Whether step 1 has anything to write.
    public var needsPersistence: Bool { hardState != nil || snapshot != nil || !entries.isEmpty }

    public static func == (a: Ready, b: Ready) -> Bool {
        a.softState == b.softState && a.hardState == b.hardState && a.snapshot == b.snapshot && a.entries == b.entries
            && a.messages == b.messages && a.earlyMessages == b.earlyMessages && a.committedEntries == b.committedEntries && a.readStates == b.readStates
            && a.droppedReads.map(\.id) == b.droppedReads.map(\.id)
            && a.droppedReads.map(\.reason) == b.droppedReads.map(\.reason)
    }

    public var description: String {
        var lines: [String] = []
        if let s = softState { lines.append("soft: \(s)") }
        if let h = hardState { lines.append("hard: \(h)") }
        if let s = snapshot { lines.append("install: \(s)") }
        for e in entries { lines.append("persist: \(e)") }
        for e in committedEntries { lines.append("apply: \(e)") }
        for r in readStates { lines.append("\(r)") }
        for d in droppedReads { lines.append("drop read #\(d.id) \(d.reason.rawValue)") }
        for m in earlyMessages { lines.append("send early: \(m)") }
        for m in messages { lines.append("send: \(m)") }
        return lines.joined(separator: "\n")
    }
}
