import ClusterAPI
import NIOConcurrencyHelpers
import RaftCore

// MARK: - The ring

/// The node's recent events (`GET /events`): a bounded ring, so a new subscriber gets the recent history.
///
/// Written on the Raft loop (events are rare: elections, snapshots, alarms), read by the metrics port's threads under
/// a lock. Appending never allocates once the ring is full (the slot is overwritten).
final class EventRing: Sendable {
    /// Events kept.
    static let defaultCapacity = 512

    private struct State {
        var slots: [NodeEvent] = []
        /// Where the next event goes once `slots` is full.
        var head = 0
        var nextSeq: UInt64
    }

    private let capacity: Int
    private let state: NIOLockedValueBox<State>
    let nodeID: UInt64

    init(nodeID: UInt64, bootWallMs: UInt64, capacity: Int = EventRing.defaultCapacity) {
        self.nodeID = nodeID
        self.capacity = max(1, capacity)
        // Ids keep increasing across restarts (NodeEvent.seq).
        self.state = NIOLockedValueBox(State(nextSeq: bootWallMs &* 1000))
    }

    /// Records one event, stamped with the next id.
    func append(
        atMs: UInt64, kind: NodeEventKind, term: UInt64, message: String, peer: UInt64? = nil, index: UInt64? = nil,
        bytes: UInt64? = nil, durationMs: UInt64? = nil, votes: VoteCount? = nil, role: String? = nil
    ) {
        state.withLockedValue { state in
            state.nextSeq &+= 1
            let event = NodeEvent(
                seq: state.nextSeq, nodeID: nodeID, atMs: atMs, kind: kind, term: term, message: message, peer: peer,
                index: index, bytes: bytes, durationMs: durationMs, votes: votes, role: role)
            if state.slots.count < capacity {
                state.slots.append(event)
            } else {
                state.slots[state.head] = event
                state.head = (state.head + 1) % capacity
            }
        }
    }

    /// The events with an id above `after`, oldest first (at most the ring's capacity).
    func events(after: UInt64) -> [NodeEvent] {
        state.withLockedValue { state in
            let ordered = state.slots.count < capacity
                ? state.slots : Array(state.slots[state.head...] + state.slots[..<state.head])
            return ordered.filter { $0.seq > after }
        }
    }
}

// MARK: - What the loop saw

/// Turns what the Raft loop sees (soft-state changes, peer acknowledgements, slow fsyncs) into events. Loop-confined;
/// every method is a few comparisons unless something happened.
struct EventRecorder {
    /// A log write that fsynced slower than this is a `slow_fsync` event.
    static let slowFsyncMs: UInt64 = 100
    /// At most one `slow_fsync` event per this many ms (the others are counted into the next one).
    static let slowFsyncEveryMs: UInt64 = 1000
    /// How often the leader looks at its peers' acknowledgements.
    static let peerCheckEveryMs: UInt64 = 200

    private var role: Role = .follower
    private var leader: NodeID?
    private var learner = false
    private var removed = false
    private var campaignStartedAt: UInt64?
    private var lastSlowFsyncEventAt: UInt64 = 0
    private var slowFsyncsSuppressed = 0
    private var lastPeerCheck: UInt64 = 0
    private var lostPeers: Set<NodeID> = []

    /// A new soft state: role, election and leader events.
    mutating func softStateChanged(
        _ soft: SoftState, core: RaftNode, wallMs: UInt64, monoMs: UInt64, ring: EventRing
    ) {
        let roleName = Self.roleName(soft.role, learner: core.isLearner, removed: core.isRemoved)
        let before = role
        if soft.role != before || core.isLearner != learner || core.isRemoved != removed {
            ring.append(
                atMs: wallMs, kind: .roleChanged, term: soft.term,
                message: "became \(roleName) at term \(soft.term)", role: roleName)
        }
        let tally = core.lastElection.flatMap { tally -> ElectionTally? in
            tally.term == soft.term || tally.term == soft.term + 1 ? tally : nil
        }
        let took = campaignStartedAt.map { monoMs - min($0, monoMs) }
        if soft.role == .candidate && before != .candidate {
            campaignStartedAt = monoMs
            ring.append(
                atMs: wallMs, kind: .electionStarted, term: soft.term,
                message: "started an election for term \(soft.term)")
        } else if soft.role == .leader && before != .leader {
            let votes = tally.map { VoteCount(granted: $0.granted, refused: $0.refused, voters: $0.voters) }
            let counted = votes.map { " with \($0.granted) of \($0.voters) votes" } ?? ""
            ring.append(
                atMs: wallMs, kind: .electionWon, term: soft.term,
                message: "won the election for term \(soft.term)\(counted)", durationMs: took, votes: votes)
            campaignStartedAt = nil
        } else if before == .candidate && soft.role != .candidate {
            let refused = tally.flatMap { $0.won ? nil : $0 }
            let votes = refused.map { VoteCount(granted: $0.granted, refused: $0.refused, voters: $0.voters) }
            var why = votes.map { ": \($0.refused) of \($0.voters) refused" } ?? ""
            if let leader = soft.leader { why += "; node \(leader) leads" }
            ring.append(
                atMs: wallMs, kind: .electionLost, term: soft.term,
                message: "lost the election for term \(soft.term)\(why)", peer: soft.leader, durationMs: took,
                votes: votes)
            campaignStartedAt = nil
        }
        if soft.leader != leader {
            let text = soft.leader.map { "leader is node \($0) at term \(soft.term)" } ?? "no leader known"
            ring.append(atMs: wallMs, kind: .leaderChanged, term: soft.term, message: text, peer: soft.leader)
        }
        role = soft.role
        leader = soft.leader
        learner = core.isLearner
        removed = core.isRemoved
        if role != .leader { lostPeers = [] }
    }

    /// A log write that fsynced took `ms`.
    mutating func fsynced(ms: UInt64, monoMs: UInt64, wallMs: UInt64, term: UInt64, ring: EventRing) {
        guard ms >= Self.slowFsyncMs else { return }
        guard monoMs >= lastSlowFsyncEventAt + Self.slowFsyncEveryMs else {
            slowFsyncsSuppressed += 1
            return
        }
        let more = slowFsyncsSuppressed > 0 ? " (and \(slowFsyncsSuppressed) more since the last report)" : ""
        ring.append(
            atMs: wallMs, kind: .slowFsync, term: term,
            message: "a log write with fsync took \(ms) ms\(more)", durationMs: ms)
        lastSlowFsyncEventAt = monoMs
        slowFsyncsSuppressed = 0
    }

    /// As leader: peers silent for an election timeout are lost, and found again when they answer.
    mutating func checkPeers(core: RaftNode, monoMs: UInt64, wallMs: UInt64, silentAfterMs: UInt64, ring: EventRing) {
        guard core.role == .leader, monoMs >= lastPeerCheck + Self.peerCheckEveryMs else { return }
        lastPeerCheck = monoMs
        for (id, progress) in core.progress {
            let silentFor = monoMs - min(progress.lastAckAt, monoMs)
            let silent = silentFor >= silentAfterMs
            if silent && !lostPeers.contains(id) {
                lostPeers.insert(id)
                ring.append(
                    atMs: wallMs, kind: .peerLost, term: core.term,
                    message: "lost node \(id): no answer for \(silentFor) ms", peer: id, durationMs: silentFor)
            } else if !silent && lostPeers.contains(id) {
                lostPeers.remove(id)
                ring.append(atMs: wallMs, kind: .peerFound, term: core.term, message: "node \(id) answers again", peer: id)
            }
        }
        lostPeers = lostPeers.filter { core.progress[$0] != nil }
    }

    static func roleName(_ role: Role, learner: Bool, removed: Bool) -> String {
        switch role {
        case .leader: return "leader"
        case .candidate: return "candidate"
        case .preCandidate: return "pre-candidate"
        case .follower: return removed ? "removed" : learner ? "learner" : "follower"
        }
    }
}
