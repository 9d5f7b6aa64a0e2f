/// Wire types of the coordination features: transactions (`POST /txn`) and snapshot backups (`GET /snapshot`).

// MARK: - Transactions

/// The value a compare tests against: a string (`"op":"value"`), an integer (`"op":"index"`) or a boolean
/// (`"op":"exists"`).
public enum TxnTarget: Sendable, Hashable, Codable {
    case string(String)
    case integer(UInt64)
    case bool(Bool)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let number = try? container.decode(UInt64.self) {
            self = .integer(number)
        } else if let text = try? container.decode(String.self) {
            self = .string(text)
        } else {
            throw DecodingError.dataCorruptedError(
                in: container, debugDescription: "target must be a string, a non-negative integer or a boolean")
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .string(let text): try container.encode(text)
        case .integer(let number): try container.encode(number)
        case .bool(let flag): try container.encode(flag)
        }
    }
}

/// `{"key":"k","op":"value|index|exists","cmp":"=|!=|<|>","target":...}`: one condition of a transaction.
/// `value` compares the key's value (byte order; an absent key only satisfies `!=`), `index` its modification index
/// (0 when absent), `exists` whether it is present (`=` or `!=` only).
public struct TxnCompare: Sendable, Hashable, Codable {
    public enum Subject: String, Sendable, Hashable, Codable, CaseIterable {
        case value, index, exists
    }

    public enum Comparison: String, Sendable, Hashable, Codable, CaseIterable {
        case equal = "=", notEqual = "!=", less = "<", greater = ">"
    }

    public var key: String
    public var op: Subject
    public var cmp: Comparison
    public var target: TxnTarget

    public init(key: String, op: Subject, cmp: Comparison, target: TxnTarget) {
        self.key = key
        self.op = op
        self.cmp = cmp
        self.target = target
    }
}

/// `{"op":"put","key":"k","value":"v"}`, `{"op":"delete","key":"k"}` or `{"op":"get","key":"k"}`.
public struct TxnOp: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable, CaseIterable {
        case put, delete, get
    }

    public var op: Kind
    public var key: String
    public var value: String?

    public init(op: Kind, key: String, value: String? = nil) {
        self.op = op
        self.key = key
        self.value = value
    }
}

/// `POST /txn`: if every compare holds, the `success` operations run, else the `failure` ones; atomically, in one
/// log entry. Missing arrays are empty.
public struct TxnRequest: Sendable, Hashable, Codable {
    public var compare: [TxnCompare]
    public var success: [TxnOp]
    public var failure: [TxnOp]

    public init(compare: [TxnCompare] = [], success: [TxnOp] = [], failure: [TxnOp] = []) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }

    enum CodingKeys: String, CodingKey {
        case compare, success, failure
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        compare = try container.decodeIfPresent([TxnCompare].self, forKey: .compare) ?? []
        success = try container.decodeIfPresent([TxnOp].self, forKey: .success) ?? []
        failure = try container.decodeIfPresent([TxnOp].self, forKey: .failure) ?? []
    }
}

/// The outcome of one operation: `{"op":"put","key":"k"}`, `{"op":"delete","key":"k","deleted":true}` or
/// `{"op":"get","key":"k","value":"v","mod_index":7}` (`value` omitted and `mod_index` 0 for an absent key).
public struct TxnOpResult: Sendable, Hashable, Codable {
    public var op: TxnOp.Kind
    public var key: String
    public var value: String?
    public var deleted: Bool?
    public var modIndex: UInt64?

    public init(op: TxnOp.Kind, key: String, value: String? = nil, deleted: Bool? = nil, modIndex: UInt64? = nil) {
        self.op = op
        self.key = key
        self.value = value
        self.deleted = deleted
        self.modIndex = modIndex
    }

    enum CodingKeys: String, CodingKey {
        case op, key, value, deleted
        case modIndex = "mod_index"
    }
}

/// `200` body of `POST /txn`: which branch ran (`succeeded`: the compares held, so `success` ran), each of its
/// operations' results in order, and the log index of the transaction.
public struct TxnResponse: Sendable, Hashable, Codable {
    public var succeeded: Bool
    public var results: [TxnOpResult]
    public var index: UInt64

    public init(succeeded: Bool, results: [TxnOpResult], index: UInt64) {
        self.succeeded = succeeded
        self.results = results
        self.index = index
    }
}

// MARK: - Snapshot backups

/// The header of a snapshot backup (`GET /snapshot`, the file `dctl snapshot save` writes): one JSON line after the
/// magic line, then `image_bytes` bytes of state-machine image. `checksum` is FNV-1a 64 over the image, in hex;
/// `state_hash` is the `/status` `state_hash` of a node whose applied state is the image.
public struct SnapshotHeader: Sendable, Hashable, Codable {
    /// The first line of a backup file.
    public static let magicLine = "dengine-snapshot v1"

    public var index: UInt64
    public var term: UInt64
    public var voters: [UInt64]
    public var learners: [UInt64]
    /// Client-facing addresses are not in the image; these are the members' peer addresses, by node id.
    public var addresses: [String: String]
    public var keyCount: Int
    public var stateHash: String
    public var checksum: String
    public var imageBytes: Int
    /// The node that served it.
    public var nodeID: UInt64

    public init(
        index: UInt64, term: UInt64, voters: [UInt64], learners: [UInt64], addresses: [String: String], keyCount: Int,
        stateHash: String, checksum: String, imageBytes: Int, nodeID: UInt64
    ) {
        self.index = index
        self.term = term
        self.voters = voters
        self.learners = learners
        self.addresses = addresses
        self.keyCount = keyCount
        self.stateHash = stateHash
        self.checksum = checksum
        self.imageBytes = imageBytes
        self.nodeID = nodeID
    }

    enum CodingKeys: String, CodingKey {
        case index, term, voters, learners, addresses, checksum
        case keyCount = "key_count"
        case stateHash = "state_hash"
        case imageBytes = "image_bytes"
        case nodeID = "node_id"
    }
}
