/// Success bodies of the client HTTP API (SPEC.md, "Client HTTP API"). `index` is the Raft log index at which
/// the command was applied (writes) or the applied index the read was served at (reads).

// MARK: - Key-value responses

/// `200` body of `POST /put`.
public struct PutResponse: Sendable, Hashable, Codable {
    public var key: String
    public var index: UInt64

    public init(key: String, index: UInt64) {
        self.key = key
        self.index = index
    }
}

/// `200` body of `GET /get` (an absent key is `404 key_not_found` instead).
public struct GetResponse: Sendable, Hashable, Codable {
    public var key: String
    public var value: String
    public var index: UInt64

    public init(key: String, value: String, index: UInt64) {
        self.key = key
        self.value = value
        self.index = index
    }
}

/// `200` body of `POST /delete`; `deleted` is `false` when the key was already absent.
public struct DeleteResponse: Sendable, Hashable, Codable {
    public var key: String
    public var index: UInt64
    public var deleted: Bool

    public init(key: String, index: UInt64, deleted: Bool) {
        self.key = key
        self.index = index
        self.deleted = deleted
    }
}

/// `200` body of `POST /cas`; `succeeded` is `false` when the current value did not match `expected`.
public struct CasResponse: Sendable, Hashable, Codable {
    public var succeeded: Bool
    public var index: UInt64

    public init(succeeded: Bool, index: UInt64) {
        self.succeeded = succeeded
        self.index = index
    }
}

/// One key and its value, as listed by `GET /scan`.
public struct KeyValue: Sendable, Hashable, Codable {
    public var key: String
    public var value: String

    public init(key: String, value: String) {
        self.key = key
        self.value = value
    }
}

/// `200` body of `GET /scan?prefix=p[&limit=n][&after=k]`: one page of entries in key order, read at `index`.
///
/// `next` is present when more keys with the prefix follow the page: ask again with `after=<next>`. Each page is
/// consistent on its own (one applied index); pages read at different indexes.
public struct ScanResponse: Sendable, Hashable, Codable {
    public var entries: [KeyValue]
    public var index: UInt64
    public var next: String?

    public init(entries: [KeyValue], index: UInt64, next: String? = nil) {
        self.entries = entries
        self.index = index
        self.next = next
    }
}

// MARK: - Watch

/// What happened to a key, in a `GET /watch` event.
public enum WatchEventType: String, Sendable, Hashable, Codable, CaseIterable {
    case put
    case delete
    /// The key's TTL ran out (by the log's clock).
    case expire
}

/// One `data:` line of the `text/event-stream` served by `GET /watch`:
/// `{"type":"put","key":"k","value":"v","index":12}`; `value` is omitted for a delete or an expiry.
public struct WatchEvent: Sendable, Hashable, Codable {
    public var type: WatchEventType
    public var key: String
    public var value: String?
    public var index: UInt64

    public init(type: WatchEventType, key: String, value: String? = nil, index: UInt64) {
        self.type = type
        self.key = key
        self.value = value
        self.index = index
    }
}

// MARK: - Cluster

/// A member's state as seen by the node answering: `leader` for the leader, `learner` for a non-voter, and
/// `follower` for the other voters. Also the `role` of `GET /status`.
public enum NodeRole: String, Sendable, Hashable, Codable, CaseIterable {
    case leader
    case follower
    case candidate
    case learner
    /// Not a member any more: its last configuration, received from a leader, does not list it.
    case removed
}

/// A member's membership status, as in the config file's `status` (2 Active, 1 Promotable).
public enum MemberStatus: String, Sendable, Hashable, Codable, CaseIterable {
    /// A voter, or a learner that stays a learner.
    case active
    /// A learner waiting to be promoted to voter once caught up.
    case promotable
}

/// One member in `GET /cluster`.
public struct ClusterMember: Sendable, Hashable, Codable {
    public var id: UInt64
    public var address: String
    public var role: NodeRole
    public var status: MemberStatus

    public init(id: UInt64, address: String, role: NodeRole, status: MemberStatus) {
        self.id = id
        self.address = address
        self.role = role
        self.status = status
    }
}

/// `200` body of `GET /cluster`. `leader_id` is written as `null` (never omitted) when no leader is known.
public struct ClusterResponse: Sendable, Hashable, Codable {
    public var leaderID: UInt64?
    public var term: UInt64
    public var members: [ClusterMember]

    public init(leaderID: UInt64?, term: UInt64, members: [ClusterMember]) {
        self.leaderID = leaderID
        self.term = term
        self.members = members
    }

    enum CodingKeys: String, CodingKey {
        case leaderID = "leader_id"
        case term, members
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        leaderID = try container.decodeIfPresent(UInt64.self, forKey: .leaderID)
        term = try container.decode(UInt64.self, forKey: .term)
        members = try container.decode([ClusterMember].self, forKey: .members)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(leaderID, forKey: .leaderID)
        try container.encode(term, forKey: .term)
        try container.encode(members, forKey: .members)
    }
}

/// `200` body of `POST /join`, `/promote` and `/remove` once the membership change has committed.
public struct MembershipChangeResponse: Sendable, Hashable, Codable {
    public var nodeID: UInt64
    /// The log index of the committed configuration entry.
    public var index: UInt64

    public init(nodeID: UInt64, index: UInt64) {
        self.nodeID = nodeID
        self.index = index
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case index
    }
}
