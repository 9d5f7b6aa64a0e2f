import ClusterAPI
import Foundation

/// The `dtop --once -o json` document: the header's verdict, one entry per row with the node's own `/status`
/// (the SPEC status schema, unchanged) and dtop's derived numbers, and the events so far.
public struct JSONFrame: Sendable, Codable, Hashable {
    public static let currentSchemaVersion = 1

    public struct Node: Sendable, Codable, Hashable {
        /// The metrics endpoint dtop polled; `null` for a member known only from the leader's view.
        public var endpoint: String?
        public var nodeID: UInt64?
        public var reachable: Bool
        /// Why the last poll failed; `null` when reachable.
        public var error: String?
        public var lagEntries: UInt64?
        public var lagMs: UInt64?
        public var lagClass: LagClass?
        /// The leader's view of how much of its log this member holds (0-100); `null` without a leader's view.
        public var catchUpPercent: Double?
        public var opsPerSecond: Double?
        /// The node's `/status` as it answered (the last answer when it is unreachable; `null` if never).
        public var status: NodeStatus?

        enum CodingKeys: String, CodingKey {
            case endpoint, reachable, error, status
            case nodeID = "node_id"
            case lagEntries = "lag_entries"
            case lagMs = "lag_ms"
            case lagClass = "lag_class"
            case catchUpPercent = "catch_up_percent"
            case opsPerSecond = "ops_per_sec"
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(endpoint, forKey: .endpoint)
            try container.encode(nodeID, forKey: .nodeID)
            try container.encode(reachable, forKey: .reachable)
            try container.encode(error, forKey: .error)
            try container.encode(lagEntries, forKey: .lagEntries)
            try container.encode(lagMs, forKey: .lagMs)
            try container.encode(lagClass, forKey: .lagClass)
            try container.encode(catchUpPercent, forKey: .catchUpPercent)
            try container.encode(opsPerSecond, forKey: .opsPerSecond)
            try container.encode(status, forKey: .status)
        }
    }

    public var schemaVersion: Int
    public var generatedAtMs: UInt64
    public var health: ClusterHealth
    public var leaderID: UInt64?
    public var term: UInt64?
    public var voters: [UInt64]
    public var learners: [UInt64]
    public var votersUp: Int
    public var tolerates: Int
    /// `tls`, `insecure` or `null` (see `ClusterSummary.security`).
    public var security: String?
    public var nodes: [Node]
    public var events: [DashboardEvent]

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case generatedAtMs = "generated_at_ms"
        case health
        case leaderID = "leader_id"
        case term, voters, learners
        case votersUp = "voters_up"
        case tolerates, nodes, events, security
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(generatedAtMs, forKey: .generatedAtMs)
        try container.encode(health, forKey: .health)
        try container.encode(leaderID, forKey: .leaderID)
        try container.encode(term, forKey: .term)
        try container.encode(voters, forKey: .voters)
        try container.encode(learners, forKey: .learners)
        try container.encode(votersUp, forKey: .votersUp)
        try container.encode(tolerates, forKey: .tolerates)
        try container.encode(security, forKey: .security)
        try container.encode(nodes, forKey: .nodes)
        try container.encode(events, forKey: .events)
    }

    public init(_ model: DashboardModel, nowMs: UInt64) {
        let summary = model.summary
        schemaVersion = Self.currentSchemaVersion
        generatedAtMs = nowMs
        health = summary.health
        leaderID = summary.leaderID
        term = summary.term
        voters = summary.voters
        learners = summary.learners
        votersUp = summary.votersUp
        tolerates = summary.tolerates
        security = summary.security
        nodes = model.tracks.map { track in
            Node(
                endpoint: track.endpoint?.description, nodeID: track.nodeID, reachable: track.reachable == true,
                error: track.reachable == true ? nil : (track.error ?? "not polled yet"),
                lagEntries: track.replication?.lagEntries, lagMs: track.replication?.lagMs,
                lagClass: track.replication?.lagClass, catchUpPercent: track.replication?.catchUpPercent,
                opsPerSecond: track.opsPerSecond, status: track.status)
        }
        events = model.events
    }

    /// Compact JSON with sorted keys (`WireJSON`), one line.
    public func encoded() throws -> String {
        String(decoding: try WireJSON.encode(self), as: UTF8.self)
    }
}
