import NodeConfig
import PeerTransport
import RaftCore

/// Follows the core's configuration for the shell: when it changes (what to log, whom to dial), when this node learns
/// it was removed, and whose peer frames the transport may take. A value confined to the Raft loop; it performs no
/// I/O: `RaftServer` acts on what it returns.
struct MembershipTracker {
    let selfID: NodeID
    /// The configuration last reported.
    private(set) var known: Membership?
    /// What `known` was derived from: the latest configuration entry (index and term: a new leader may put another one
    /// at the same index) and the snapshot. The configuration changes only when one of them does, so each Ready
    /// compares three integers, not two memberships.
    private var key: (configIndex: LogIndex, configTerm: Term, snapshotIndex: LogIndex)?
    /// This node knows it was removed (its latest configuration entry removes it): it serves and forwards nothing.
    private(set) var removed = false
    private var announcedRemoval = false
    /// The admission view last published (issue #14: who may speak to this node).
    private var admitted: PeerAdmission?

    init(selfID: NodeID) { self.selfID = selfID }

    /// What changed since the last call.
    struct Change {
        var membership: Membership
        /// Log line for a change of voters or learners (not for the first configuration seen).
        var changedLine: String?
        /// `removed` flipped.
        var removedChanged: Bool
        /// Log line when this node learns it was removed, or that it is a member again.
        var removalLine: String?
    }

    /// `nil` when the configuration is the one last seen.
    mutating func update(_ core: RaftNode) -> Change? {
        let current = (
            configIndex: core.lastConfigIndex, configTerm: core.term(at: core.lastConfigIndex) ?? 0,
            snapshotIndex: core.snapshotMetadata?.index ?? 0
        )
        if let key, key == current { return nil }
        key = current
        let membership = core.membership
        var change = Change(membership: membership, changedLine: nil, removedChanged: false, removalLine: nil)
        if let known, known.voters != membership.voters || known.learners != membership.learners {
            change.changedLine = "Membership changed node=\(selfID) \(membership)"
        }
        known = membership
        if core.isRemoved != removed {
            removed = core.isRemoved
            change.removedChanged = true
        }
        if core.isRemoved && !announcedRemoval {
            announcedRemoval = true
            change.removalLine =
                "Removed from the cluster node=\(selfID) \(membership): this node no longer takes part; "
                + "stop it, or wipe its data directory to join again"
        } else if !core.isRemoved && announcedRemoval {
            announcedRemoval = false
            change.removalLine = "Member again node=\(selfID) \(membership)"
        }
        return change
    }

    /// Whose peer frames to take, when it differs from what was last published: the members of the configuration in
    /// force, the nodes a leader still tells of their removal, and the leader this node follows (a follower that
    /// appended the leader's own removal must still hear it until the removal commits); chunks only from that leader.
    mutating func admission(_ core: RaftNode) -> PeerAdmission? {
        var members = core.membership.members
        members.formUnion(core.departing.keys)
        if let leader = core.leader { members.insert(leader) }
        let admission = PeerAdmission(members: members, leader: core.leader == selfID ? nil : core.leader)
        guard admission != admitted else { return nil }
        admitted = admission
        return admission
    }

    /// The peers to keep dialable: every node of the address book but this one, members or not (a follower that
    /// appends the removal of the leader must still hear the leader's answer to a request it forwarded, and the leader
    /// must still reach a departing node). Links connect only when something is sent to them.
    static func dialable(_ book: [NodeID: String], selfID: NodeID) -> [NodeID: (host: String, port: Int)] {
        var peers: [NodeID: (host: String, port: Int)] = [:]
        for (id, text) in book where id != selfID {
            guard let address = HostPort(text)?.dialAddress else { continue }
            peers[id] = (address.host, address.port)
        }
        return peers
    }
}
