/// The leader's view of one follower's log (etcd's `tracker.Progress`, Raft §5.3 `nextIndex`/`matchIndex`).
///
/// Invariant: `match < next`.
public struct Progress: Sendable, Equatable, CustomStringConvertible {
    public enum State: String, Sendable, Equatable {
        /// The leader does not know where the logs diverge: one AppendEntries at a time, then wait.
        case probe
        /// The follower is in sync: AppendEntries are pipelined, up to `maxInflight` unacknowledged.
        case replicate
        /// The entries the follower needs are compacted: a snapshot is on its way.
        case snapshot
    }

    public private(set) var match: LogIndex
    public private(set) var next: LogIndex
    public private(set) var state: State = .probe
    /// In probe state: an AppendEntries is outstanding, send nothing more until a response or a heartbeat reply.
    public private(set) var probeSent = false
    /// In snapshot state: the index of the snapshot being sent.
    public private(set) var pendingSnapshot: LogIndex = 0
    /// Last indexes of the AppendEntries in flight (replicate state), oldest first.
    private var inflight: [LogIndex] = []
    /// When this follower last answered anything (clock of the core); for check-quorum and status. Starts at the
    /// leader's election, as the grace period of check-quorum.
    public var lastAckAt: UInt64
    /// Whether the follower has answered this leader at all (status shows "never" otherwise).
    public var hasAnswered = false
    /// The highest read/lease round this follower has acknowledged.
    public var ackedRound: UInt64 = 0
    /// When `match` last moved or the state last changed: a replicate stream that stops moving for an election
    /// timeout (messages lost without the transport noticing) falls back to probing.
    public private(set) var lastProgressAt: UInt64

    public init(next: LogIndex, now: UInt64) {
        self.match = 0
        self.next = next
        self.lastAckAt = now
        self.lastProgressAt = now
    }

    public mutating func noteProgress(at now: UInt64) { lastProgressAt = now }

    public var inflightCount: Int { inflight.count }

    /// Whether the leader should hold back AppendEntries with entries for now.
    public func isPaused(maxInflight: Int) -> Bool {
        switch state {
        case .probe: return probeSent
        case .replicate: return inflight.count >= maxInflight
        case .snapshot: return true
        }
    }

    public mutating func becomeProbe() {
        if state == .snapshot {
            next = max(match + 1, pendingSnapshot + 1)
        } else {
            next = match + 1
        }
        state = .probe
        probeSent = false
        pendingSnapshot = 0
        inflight.removeAll()
    }

    public mutating func becomeReplicate() {
        state = .replicate
        next = match + 1
        probeSent = false
        pendingSnapshot = 0
        inflight.removeAll()
    }

    public mutating func becomeSnapshot(index: LogIndex) {
        state = .snapshot
        pendingSnapshot = index
        probeSent = false
        inflight.removeAll()
    }

    /// Records that an AppendEntries ending at `lastIndex` was sent.
    public mutating func sentEntries(lastIndex: LogIndex, count: Int) {
        switch state {
        case .replicate:
            if count > 0 {
                next = lastIndex + 1
                inflight.append(lastIndex)
            }
        case .probe:
            probeSent = true
        case .snapshot:
            break
        }
    }

    /// A heartbeat reply lets a paused probe try again.
    public mutating func resumeProbe() { probeSent = false }

    /// Applies a successful AppendEntries response. Returns whether `match` moved.
    public mutating func acknowledge(_ index: LogIndex) -> Bool {
        var moved = false
        if index > match {
            match = index
            moved = true
            probeSent = false
        }
        next = max(next, index + 1)
        while let first = inflight.first, first <= index { inflight.removeFirst() }
        assert(match < next, "progress invariant: match \(match) < next \(next)")
        return moved
    }

    /// Applies a rejection. Returns `false` when the rejection is stale (already superseded).
    public mutating func reject(rejectedIndex: LogIndex, nextGuess: LogIndex) -> Bool {
        if state == .replicate {
            // A rejection at or below match is a reordered old message.
            if rejectedIndex <= match { return false }
            becomeProbe()
            next = max(match + 1, min(nextGuess, rejectedIndex))
            return true
        }
        // In probe state only the answer to the probe we sent counts (prev == next - 1).
        if next == 0 || rejectedIndex != next - 1 { return false }
        next = max(match + 1, min(nextGuess, rejectedIndex))
        probeSent = false
        return true
    }

    public var description: String {
        var text = "match=\(match) next=\(next) \(state.rawValue)"
        if state == .snapshot { text += " pending=\(pendingSnapshot)" }
        if state == .probe && probeSent { text += " paused" }
        if !inflight.isEmpty { text += " inflight=\(inflight.count)" }
        return text
    }
}
