/// Request bodies of the client HTTP API (SPEC.md, "Client HTTP API"). JSON keys are snake_case.
///
/// Decoding ignores unknown fields, so an older node accepts a newer client's body as long as the fields it
/// knows are present.

// MARK: - Key-value requests

/// `POST /put {"key":"k","value":"v","ttl_secs":60}`; `ttl_secs` is optional and omitted when `nil`.
public struct PutRequest: Sendable, Hashable, Codable {
    public var key: String
    public var value: String
    /// Seconds until the key expires; `nil` means never.
    public var ttlSecs: UInt64?

    public init(key: String, value: String, ttlSecs: UInt64? = nil) {
        self.key = key
        self.value = value
        self.ttlSecs = ttlSecs
    }

    enum CodingKeys: String, CodingKey {
        case key, value
        case ttlSecs = "ttl_secs"
    }
}

/// `POST /delete {"key":"k"}`.
public struct DeleteRequest: Sendable, Hashable, Codable {
    public var key: String

    public init(key: String) {
        self.key = key
    }
}

/// `POST /cas {"key":"k","expected":"old","value":"new"}`.
///
/// `expected: null` means "only if the key is absent". The `expected` field must be present (an explicit `null`
/// is fine): a body without it fails to decode, so a client that forgot it gets `400 invalid_request` instead of
/// a create-if-absent it did not ask for. Encoding always writes the field, as `null` when `nil`.
public struct CasRequest: Sendable, Hashable, Codable {
    public var key: String
    /// The value the key must hold for the swap to happen; `nil` means the key must be absent.
    public var expected: String?
    public var value: String

    public init(key: String, expected: String?, value: String) {
        self.key = key
        self.expected = expected
        self.value = value
    }

    enum CodingKeys: String, CodingKey {
        case key, expected, value
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        key = try container.decode(String.self, forKey: .key)
        guard container.contains(.expected) else {
            throw DecodingError.keyNotFound(
                CodingKeys.expected,
                .init(codingPath: container.codingPath, debugDescription: "\"expected\" is required (null allowed)")
            )
        }
        expected = try container.decode(String?.self, forKey: .expected)
        value = try container.decode(String.self, forKey: .value)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(key, forKey: .key)
        try container.encode(expected, forKey: .expected)
        try container.encode(value, forKey: .value)
    }
}

/// `GET /scan?prefix=p[&limit=n][&after=k][&consistency=c]`: one page of the keys starting with `prefix`.
///
/// A query, not a body; this type carries the decoded parameters. `after` is exclusive: pass the previous page's
/// `next` to continue. `limit` is `nil` when absent (the node's default page size).
public struct ScanRequest: Sendable, Hashable {
    public var prefix: String
    public var limit: Int?
    public var after: String?
    public var consistency: ReadConsistency?

    public init(prefix: String, limit: Int? = nil, after: String? = nil, consistency: ReadConsistency? = nil) {
        self.prefix = prefix
        self.limit = limit
        self.after = after
        self.consistency = consistency
    }
}

// MARK: - Membership requests

/// `POST /join {"node_id":4,"address":"127.0.0.1:9084"}`: adds a learner.
public struct JoinRequest: Sendable, Hashable, Codable {
    public var nodeID: UInt64
    /// The `host:port` other members dial to reach the new node.
    public var address: String

    public init(nodeID: UInt64, address: String) {
        self.nodeID = nodeID
        self.address = address
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case address
    }
}

/// `POST /promote {"node_id":4}`: learner to voter once caught up.
public struct PromoteRequest: Sendable, Hashable, Codable {
    public var nodeID: UInt64

    public init(nodeID: UInt64) {
        self.nodeID = nodeID
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
    }
}

/// `POST /remove {"node_id":4}`: removes a member (the last voter cannot be removed).
public struct RemoveRequest: Sendable, Hashable, Codable {
    public var nodeID: UInt64

    public init(nodeID: UInt64) {
        self.nodeID = nodeID
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
    }
}

/// `POST /transfer-leader {"node_id":2}`: hands leadership to a voter.
public struct TransferLeaderRequest: Sendable, Hashable, Codable {
    public var nodeID: UInt64

    public init(nodeID: UInt64) {
        self.nodeID = nodeID
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
    }
}
