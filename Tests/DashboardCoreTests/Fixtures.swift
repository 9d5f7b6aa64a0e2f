import ClusterAPI
import DashboardCore

/// Statuses and rounds for the view-model tests: a three-node cluster on the local ports (metrics 808N, client
/// 908N), as the SPEC's example.
enum Fixture {
    static let endpoints = (1...3).map { Endpoint(host: "127.0.0.1", port: 8080 + $0) }
    /// 2026-01-01 12:00:00 UTC.
    static let t0: UInt64 = 1_767_268_800_000

    static func endpoint(_ id: UInt64) -> Endpoint { Endpoint(host: "127.0.0.1", port: 8080 + Int(id)) }

    static func status(
        _ id: UInt64, role: NodeRole, term: UInt64, leader: UInt64?, commit: UInt64 = 100, lastLog: UInt64? = nil,
        voters: [UInt64] = [1, 2, 3], learners: [UInt64] = [], peers: [PeerStatus] = [], writes: UInt64 = 0,
        reads: UInt64 = 0, lease: UInt64 = 0, p99: Double = 1.5
    ) -> NodeStatus {
        NodeStatus(
            nodeID: id, address: "127.0.0.1:\(9080 + id)", role: role, term: term, leaderID: leader,
            commitIndex: commit, appliedIndex: commit, lastLogIndex: lastLog ?? commit, snapshotIndex: 0,
            voters: voters, learners: learners, leaseRemainingMs: lease, uptimeMs: 60_000, peers: peers,
            stats: NodeStats(writesTotal: writes, readsTotal: reads, writeP99Ms: p99))
    }

    static func peer(_ id: UInt64, lag: UInt64 = 0, ack: UInt64? = 20, match: UInt64 = 100) -> PeerStatus {
        PeerStatus(
            id: id, address: "127.0.0.1:\(9080 + id)", matchIndex: match, lagEntries: lag, lastAckMsAgo: ack,
            state: .replicate)
    }

    /// A healthy round: node `leader` leads `term`, the others follow.
    static func healthyRound(
        leader: UInt64 = 1, term: UInt64 = 7, commit: UInt64 = 100, writes: UInt64 = 0, lags: [UInt64: UInt64] = [:]
    ) -> [PollResult] {
        (UInt64(1)...3).map { id in
            let status: NodeStatus
            if id == leader {
                let peers = (UInt64(1)...3).filter { $0 != leader }.map { peer($0, lag: lags[$0] ?? 0, match: commit) }
                status = Fixture.status(
                    id, role: .leader, term: term, leader: leader, commit: commit, peers: peers, writes: writes,
                    lease: 120)
            } else {
                status = Fixture.status(id, role: .follower, term: term, leader: leader, commit: commit)
            }
            return PollResult(endpoint: endpoint(id), outcome: .status(status))
        }
    }

    static func down(_ id: UInt64, _ reason: String = "connection refused") -> PollResult {
        PollResult(endpoint: endpoint(id), outcome: .failure(reason))
    }

    static func up(_ status: NodeStatus) -> PollResult {
        PollResult(endpoint: endpoint(status.nodeID), outcome: .status(status))
    }

    static func options(width: Int = 120, height: Int? = nil, at now: UInt64) -> FrameOptions {
        var options = FrameOptions(width: width, height: height, nowMs: now, utcOffsetSeconds: 0, intervalMs: 500)
        options.interactive = false
        options.unicode = false
        return options
    }
}
