import ClusterAPI
import RaftCore

/// The checks a leader makes before it proposes a membership change, as pure functions of what it knows of its peers:
/// a learner is promoted only once it has caught up, and a removal never leaves the reachable voters short of a quorum
/// (etcd's strict reconfiguration check).
struct MembershipGuard {
    /// What the leader knows of one peer.
    struct Peer: Equatable {
        var match: LogIndex
        /// The peer is being sent a snapshot.
        var receivingSnapshot: Bool
        /// How long ago it last answered, `nil` if it never has.
        var lastAckMsAgo: UInt64?
    }

    var selfID: NodeID
    /// A peer counts as reachable when it answered within this long (the election timeout).
    var reachableWithinMs: UInt64
    /// A learner is promotable at most this many entries behind the leader's last index.
    var promotionMaxLag: UInt64

    /// What `core` (a leader) knows of its peers, at `now`.
    static func peers(of core: RaftNode, now: UInt64) -> [NodeID: Peer] {
        core.progress.mapValues { pr in
            Peer(
                match: pr.match, receivingSnapshot: pr.state == .snapshot,
                lastAckMsAgo: pr.hasAnswered ? now - min(now, pr.lastAckAt) : nil)
        }
    }

    /// `nil` when learner `id` may be promoted; otherwise the 409 `not_caught_up` carrying its progress.
    func catchUpRefusal(_ id: NodeID, peer: Peer?, leaderLastIndex last: LogIndex) -> APIError? {
        guard let peer else {
            return APIError(
                code: .notCaughtUp, message: "node \(id) has not been heard from yet",
                progress: CatchUpProgress(matchIndex: 0, leaderLastIndex: last))
        }
        let lag = last > peer.match ? last - peer.match : 0
        let recent = peer.lastAckMsAgo.map { $0 < reachableWithinMs } ?? false
        guard !peer.receivingSnapshot, recent, lag <= promotionMaxLag else {
            let why: String
            if !recent {
                why = "has not answered within the last \(reachableWithinMs) ms"
            } else if peer.receivingSnapshot {
                why = "is receiving a snapshot"
            } else {
                why = "is \(lag) entries behind (at most \(promotionMaxLag) allowed)"
            }
            return APIError(
                code: .notCaughtUp, message: "node \(id) \(why); retry when it has caught up (dctl promote --wait)",
                progress: CatchUpProgress(matchIndex: peer.match, leaderLastIndex: last))
        }
        return nil
    }

    /// Refuses a removal after which the voters that answered within an election timeout would not form a quorum of
    /// the new configuration: it takes effect when appended, so it could never commit and the cluster would stall.
    func quorumLossRefusal(removing node: NodeID, voters: Set<NodeID>, peers: [NodeID: Peer]) -> APIError? {
        let remaining = voters.subtracting([node])
        guard !remaining.isEmpty else { return nil }
        let active = remaining.filter { id in
            id == selfID || (peers[id]?.lastAckMsAgo.map { $0 < reachableWithinMs } ?? false)
        }
        let quorum = remaining.count / 2 + 1
        guard active.count < quorum else { return nil }
        return APIError(
            code: .conflict,
            message: "removing node \(node) would leave \(active.count) of \(remaining.count) voters reachable, below the "
                + "quorum of \(quorum): the change could not commit; bring the unreachable voters back first")
    }
}
