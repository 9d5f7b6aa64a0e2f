import ClusterAPI

/// How the node table is ordered (`s` cycles through them).
public enum SortKey: String, Sendable, CaseIterable {
    /// By node id; rows not identified yet last, by endpoint.
    case id
    /// Leader, candidates, followers, learners, then unreachable rows.
    case role
    /// Unreachable rows first, then the most entries behind.
    case lag

    public var next: SortKey {
        let all = SortKey.allCases
        return all[(all.firstIndex(of: self)! + 1) % all.count]
    }
}

/// What the sparkline column plots (`l` toggles).
public enum SparkSource: String, Sendable, CaseIterable {
    /// ops/s (writes + reads) of each node.
    case ops
    /// Entries behind the leader, in the current term.
    case lag

    public var next: SparkSource { self == .ops ? .lag : .ops }
}

/// One row of the node table, ready to format.
public struct NodeRow: Sendable, Hashable {
    public enum State: Sendable, Hashable {
        /// Answered in the last round.
        case up
        /// Did not answer; the reason.
        case down(String)
        /// Never polled yet (first round pending).
        case pending
        /// Known only from the leader's membership; dtop has no metrics endpoint for it.
        case unpolled
    }

    public var state: State
    public var nodeID: UInt64?
    public var address: String
    public var role: NodeRole?
    public var isLeader: Bool
    public var status: NodeStatus?
    public var replication: ReplicationView?
    public var lastSeenMsAgo: UInt64?
    public var opsPerSecond: Double?
    public var opsHistory: [Double]
    public var lagHistory: [Double]

    public var isUp: Bool { state == .up }
}

extension DashboardModel {
    /// The table rows at wall-clock `nowMs`, in `order`.
    public func rows(nowMs: UInt64, order: SortKey = .id) -> [NodeRow] {
        let rows = tracks.map { track -> NodeRow in
            let state: NodeRow.State
            if track.endpoint == nil {
                state = .unpolled
            } else if track.reachable == true {
                state = .up
            } else if track.reachable == false {
                state = .down(track.error ?? "unreachable")
            } else {
                state = .pending
            }
            let address = track.status?.address ?? track.address ?? track.endpoint.map { "\($0)" } ?? "?"
            return NodeRow(
                state: state, nodeID: track.nodeID, address: address,
                role: state == .up ? track.status?.role : nil,
                isLeader: state == .up && track.nodeID != nil && track.nodeID == leaderID,
                status: track.status, replication: track.replication,
                lastSeenMsAgo: track.lastSeenMs.map { nowMs - min($0, nowMs) },
                opsPerSecond: track.opsPerSecond, opsHistory: track.opsHistory, lagHistory: track.lagHistory)
        }
        return rows.sorted { lhs, rhs in
            switch order {
            case .id:
                return Self.idOrder(lhs, rhs)
            case .role:
                let (left, right) = (Self.roleRank(lhs), Self.roleRank(rhs))
                return left != right ? left < right : Self.idOrder(lhs, rhs)
            case .lag:
                let (left, right) = (Self.lagRank(lhs), Self.lagRank(rhs))
                return left != right ? left > right : Self.idOrder(lhs, rhs)
            }
        }
    }

    private static func idOrder(_ lhs: NodeRow, _ rhs: NodeRow) -> Bool {
        switch (lhs.nodeID, rhs.nodeID) {
        case let (left?, right?): return left < right
        case (.some, nil): return true
        case (nil, .some): return false
        case (nil, nil): return lhs.address < rhs.address
        }
    }

    private static func roleRank(_ row: NodeRow) -> Int {
        if row.isLeader { return 0 }
        switch row.role {
        case .leader: return 1
        case .candidate: return 2
        case .follower: return 3
        case .learner: return 4
        case .removed: return 5
        case nil: return 6
        }
    }

    private static func lagRank(_ row: NodeRow) -> UInt64 {
        row.isUp ? (row.replication?.lagEntries ?? 0) : UInt64.max
    }
}
