import ClusterAPI

/// Overall state of the cluster, as `dctl health` exits with it.
public enum ClusterHealth: String, Sendable, CaseIterable {
    /// Every node answered, one leader, every node follows it and keeps up.
    case healthy
    /// A leader with a quorum, but some node is down, lagging or does not know the leader.
    case degraded
    /// No node answered, no leader, or fewer than a quorum of voters up.
    case unavailable

    public var exitStatus: ExitStatus {
        switch self {
        case .healthy: return .ok
        case .degraded: return .degraded
        case .unavailable: return .unavailable
        }
    }
}

/// One row of `dctl status`: a node that answered, did not answer, or is a member nobody could ask.
public struct NodeRow: Sendable {
    public var id: UInt64?
    /// The client address (from the endpoints, or the leader's peer list).
    public var address: String
    public var metricsAddress: String?
    public var status: NodeStatus?
    /// Why there is no status.
    public var error: String?
    /// Entries behind the leader (the leader's view); 0 for the leader, `nil` when unknown.
    public var lagEntries: UInt64?
    /// Milliseconds since the leader last heard from the node; `nil` for the leader or when unknown.
    public var lastSeenMsAgo: UInt64?
    /// `ok`, or what is wrong: `unreachable: connection refused`, `lagging 1500 entries`, `no leader known`.
    public var health: String

    public var reachable: Bool { status != nil }
}

/// The cluster as `dctl status`, `health`, `leader` and `wait` see it: one row per node, every node present.
public struct ClusterView: Sendable {
    public var health: ClusterHealth
    public var leaderID: UInt64?
    public var leaderAddress: String?
    public var term: UInt64?
    public var votersUp: Int
    public var voterCount: Int
    /// Sentences explaining a health other than `healthy`.
    public var reasons: [String]
    public var rows: [NodeRow]
    /// The voters the leader (or the newest node) reports; empty when no node answered.
    public var voterIDs: [UInt64] = []

    /// How many more voters may fail before the cluster loses its quorum (0 when it has none).
    public var tolerates: Int {
        guard voterCount > 0 else { return 0 }
        return max(0, votersUp - (voterCount / 2 + 1))
    }

    public init(
        health: ClusterHealth, leaderID: UInt64?, leaderAddress: String?, term: UInt64?, votersUp: Int,
        voterCount: Int, reasons: [String], rows: [NodeRow]
    ) {
        self.health = health
        self.leaderID = leaderID
        self.leaderAddress = leaderAddress
        self.term = term
        self.votersUp = votersUp
        self.voterCount = voterCount
        self.reasons = reasons
        self.rows = rows
    }

    /// Judges a set of probes. A node lagging by more than `maxLag` entries makes the cluster degraded.
    public init(probes: [NodeProbe], maxLag: UInt64 = 1000) {
        let statuses = probes.compactMap(\.status)
        let leader = statuses.filter { $0.role == .leader }.max { $0.term < $1.term }
        let newest = statuses.max { $0.term < $1.term }
        let reference = leader ?? newest
        let voters = reference?.voters ?? []
        let learners = reference?.learners ?? []
        let peers = Dictionary((leader?.peers ?? []).map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })

        var rows: [NodeRow] = []
        for probe in probes {
            let id = probe.status?.nodeID ?? probe.target.id
            let peer = id.flatMap { peers[$0] }
            var row = NodeRow(
                id: id, address: "\(probe.target.client)",
                metricsAddress: probe.target.metrics.map { "\($0)" }, status: probe.status, error: probe.error,
                lagEntries: id == leader?.nodeID && leader != nil ? 0 : peer?.lagEntries,
                lastSeenMsAgo: peer?.lastAckMsAgo, health: "ok")
            row.health = Self.judge(row, leader: leader, maxLag: maxLag)
            // A node the cluster no longer lists (removed, or never joined) is not a health problem.
            if let id, reference != nil, !voters.contains(id), !learners.contains(id) {
                row.health = probe.status?.role == .removed ? Self.removed : Self.notAMember
            }
            rows.append(row)
        }
        // Members the cluster reports that no endpoint reached: listed, never dropped.
        let seen = Set(rows.compactMap(\.id))
        for id in (voters + learners) where !seen.contains(id) {
            let peer = peers[id]
            rows.append(
                NodeRow(
                    id: id, address: peer.map { dialable($0.address) } ?? "-", metricsAddress: nil, status: nil,
                    error: "not probed: not among the endpoints", lagEntries: peer?.lagEntries,
                    lastSeenMsAgo: peer?.lastAckMsAgo, health: "not probed: not among the endpoints (add it to --endpoints)"))
        }
        rows.sort { ($0.id ?? .max, $0.address) < ($1.id ?? .max, $1.address) }

        let up = Set(rows.filter(\.reachable).compactMap(\.id))
        let votersUp = voters.filter { up.contains($0) }.count
        var reasons: [String] = []
        let health: ClusterHealth
        if statuses.isEmpty {
            health = .unavailable
            reasons.append("no node answered (\(rows.count) tried)")
        } else if leader == nil {
            health = .unavailable
            reasons.append("no leader: \(statuses.count) of \(rows.count) nodes answered and none is leader")
        } else if votersUp < voters.count / 2 + 1 {
            health = .unavailable
            reasons.append("only \(votersUp) of \(voters.count) voters answered; a quorum needs \(voters.count / 2 + 1)")
        } else {
            for row in rows where row.health != "ok" && row.health != Self.removed && row.health != Self.notAMember {
                reasons.append("\(row.id.map { "node \($0)" } ?? row.address): \(row.health)")
            }
            health = reasons.isEmpty ? .healthy : .degraded
        }
        // A warning, not a health problem: the operator chose it (`[security] insecure = true`).
        for status in statuses where status.security?.mode == "insecure" {
            reasons.append(
                "node \(status.nodeID): INSECURE: plaintext without authentication on \(status.address) "
                    + "([security] insecure = true)")
        }
        self.init(
            health: health, leaderID: leader?.nodeID, leaderAddress: leader.map { dialable($0.address) },
            term: reference?.term, votersUp: votersUp, voterCount: voters.count, reasons: reasons, rows: rows)
        self.voterIDs = voters
    }

    /// The health of a row whose node says it was removed from the cluster.
    public static let removed = "removed from the cluster"
    /// The health of a row whose node the cluster does not list (and that does not answer, or has not joined yet).
    public static let notAMember = "not a member"

    private static func judge(_ row: NodeRow, leader: NodeStatus?, maxLag: UInt64) -> String {
        guard let status = row.status else { return "unreachable: \(row.error ?? "no answer")" }
        if let alarm = status.alarms?.first {
            return "alarm \(alarm.type): \(alarm.reason) (writes refused; `dctl alarm disarm` once there is space)"
        }
        guard let leader else { return status.leaderID == nil ? "no leader known" : "ok" }
        if status.nodeID == leader.nodeID { return "ok" }
        if status.leaderID != leader.nodeID || status.term != leader.term {
            let known = status.leaderID.map { "follows node \($0)" } ?? "no leader known"
            return "\(known) at term \(status.term) (leader is node \(leader.nodeID) at term \(leader.term))"
        }
        if let lag = row.lagEntries, lag > maxLag { return "lagging \(lag) entries" }
        return "ok"
    }
}

/// `0.0.0.0:9081` as a client would dial it.
func dialable(_ address: String) -> String {
    guard let endpoint = Endpoint(parsing: address) else { return address }
    return endpoint.description
}
