import ClusterAPI
import RaftCore

/// `/status` and `/cluster` as functions of the core and what the shell knows (addresses, metrics): no loop, no clock.
struct StatusReport {
    var core: RaftNode
    var selfID: NodeID
    /// This node's dialable client address.
    var selfAddress: String
    /// Another member's dialable address.
    var address: (NodeID) -> String?
    /// Monotonic milliseconds, for "last ack ... ago".
    var now: UInt64

    var role: NodeRole {
        switch core.role {
        case .leader: return .leader
        case .candidate, .preCandidate: return .candidate
        case .follower: return core.isRemoved ? .removed : (core.isLearner ? .learner : .follower)
        }
    }

    /// The status document of SPEC (`/status`); a leader lists its peers' replication progress.
    func status(
        appliedIndex: LogIndex, stateHash: String?, uptimeMs: UInt64, metrics: NodeMetrics, alarms: [NodeAlarm] = [],
        storage: StorageStatus? = nil
    ) -> NodeStatus {
        var peers: [PeerStatus] = []
        if core.role == .leader {
            for (id, pr) in core.progress.sorted(by: { $0.key < $1.key }) {
                let state: PeerReplicationState
                switch pr.state {
                case .probe: state = .probe
                case .replicate: state = .replicate
                case .snapshot: state = .snapshot
                }
                peers.append(
                    PeerStatus(
                        id: id, address: address(id) ?? "", matchIndex: pr.match,
                        lagEntries: core.lastIndex > pr.match ? core.lastIndex - pr.match : 0,
                        lastAckMsAgo: pr.hasAnswered ? (now > pr.lastAckAt ? now - pr.lastAckAt : 0) : nil,
                        state: state, nextIndex: pr.next, inflight: UInt64(pr.inflightCount)))
            }
        }
        var status = NodeStatus(
            nodeID: selfID, address: selfAddress, role: role, term: core.term, leaderID: core.leader,
            commitIndex: core.commitIndex, appliedIndex: appliedIndex, lastLogIndex: core.lastIndex,
            snapshotIndex: core.snapshotMetadata?.index ?? 0, voters: core.membership.voters.sorted(),
            learners: core.membership.learners.sorted(), leaseRemainingMs: core.leaseRemaining, uptimeMs: uptimeMs,
            peers: peers,
            stats: NodeStats(
                writesTotal: metrics.writes, readsTotal: metrics.reads,
                writeP99Ms: metrics.writeLatencyMs.quantile(0.99)))
        status.stateHash = stateHash
        status.alarms = alarms.isEmpty ? nil : alarms
        status.storage = storage
        status.members = core.membership.members.sorted().map { id in
            MemberAddress(id: id, address: id == selfID ? selfAddress : address(id) ?? "")
        }
        return status
    }

    /// Members and leader for `/cluster`.
    func cluster() -> ClusterResponse {
        let m = core.membership
        let members = m.members.sorted().map { id in
            ClusterMember(
                id: id, address: id == selfID ? selfAddress : address(id) ?? "",
                role: id == core.leader ? .leader : (m.learners.contains(id) ? .learner : .follower),
                status: m.learners.contains(id) ? .promotable : .active)
        }
        return ClusterResponse(leaderID: core.leader, term: core.term, members: members)
    }

    /// `state_hash` as 16 lower-case hex digits.
    static func hashText(_ hash: UInt64) -> String {
        let text = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}
