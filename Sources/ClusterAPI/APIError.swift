/// The one error envelope of the client HTTP API:
/// `{"error":{"code":"no_leader","message":"...","leader_id":1,"leader_address":"127.0.0.1:9081"}}`.

// MARK: - Codes

/// A stable, machine-readable error code. Each maps to exactly one HTTP status (SPEC.md, "Errors").
public enum APIErrorCode: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// 400: malformed JSON, missing field, bad consistency name, invalid UTF-8.
    case invalidRequest = "invalid_request"
    /// 401: secure mode, and the request carried no credentials or bad ones (no client certificate, unknown token).
    case unauthenticated
    /// 403: secure mode, and the caller's role may not do this.
    case forbidden
    /// 404: the key does not exist.
    case keyNotFound = "key_not_found"
    /// 404: the route or the member does not exist.
    case notFound = "not_found"
    /// 409: a learner cannot be promoted yet; the error carries its progress.
    case notCaughtUp = "not_caught_up"
    /// 409: another membership change is still in flight.
    case membershipChangeInProgress = "membership_change_in_progress"
    /// 409: the request contradicts the current state (e.g. removing the last voter, joining an existing id).
    case conflict
    /// 413: key over `max_key_bytes` or value over `max_value_bytes`.
    case tooLarge = "too_large"
    /// The same `Idempotency-Key` was first used with a different request (`422`).
    case idempotencyKeyReused = "idempotency_key_reused"
    /// 429: backpressure; the command was not proposed.
    case overloaded
    /// 503: no leader is known; the command was not proposed.
    case noLeader = "no_leader"
    /// 503: the node cannot serve now (shutting down, no quorum); the command was not proposed.
    case unavailable
    /// 504: the outcome is unknown: the write may or may not have been applied.
    case timeout
    /// 507: the node's disk is full or over its quota (the `NOSPACE` alarm): writes are refused, nothing was
    /// proposed; reads still work. Cleared by `dctl alarm disarm` once there is space.
    case noSpace = "no_space"
    /// 410: a watch asked for history (`since`) older than the node keeps; the error names the oldest index it has.
    case compacted

    /// The HTTP status this code is always sent with.
    public var httpStatus: Int {
        switch self {
        case .invalidRequest: return 400
        case .unauthenticated: return 401
        case .forbidden: return 403
        case .keyNotFound, .notFound: return 404
        case .compacted: return 410
        case .notCaughtUp, .membershipChangeInProgress, .conflict: return 409
        case .tooLarge: return 413
        case .idempotencyKeyReused: return 422
        case .overloaded: return 429
        case .noLeader, .unavailable: return 503
        case .timeout: return 504
        case .noSpace: return 507
        }
    }

    /// `true` when the server guarantees the command was not proposed, so resending it cannot apply it twice.
    public var isSafeToRetry: Bool {
        switch self {
        case .overloaded, .noLeader, .unavailable: return true
        case .invalidRequest, .unauthenticated, .forbidden, .keyNotFound, .notFound, .notCaughtUp,
            .membershipChangeInProgress, .conflict, .tooLarge, .idempotencyKeyReused, .timeout, .noSpace, .compacted:
            return false
        }
    }

    public var description: String { rawValue }
}

// MARK: - Error body

/// How far a learner is behind, attached to `not_caught_up`.
public struct CatchUpProgress: Sendable, Hashable, Codable {
    /// The highest log index known to be replicated on the learner.
    public var matchIndex: UInt64
    /// The leader's last log index.
    public var leaderLastIndex: UInt64
    /// `leaderLastIndex - matchIndex`.
    public var lagEntries: UInt64

    public init(matchIndex: UInt64, leaderLastIndex: UInt64) {
        self.matchIndex = matchIndex
        self.leaderLastIndex = leaderLastIndex
        self.lagEntries = leaderLastIndex >= matchIndex ? leaderLastIndex - matchIndex : 0
    }

    enum CodingKeys: String, CodingKey {
        case matchIndex = "match_index"
        case leaderLastIndex = "leader_last_index"
        case lagEntries = "lag_entries"
    }
}

/// The inner object of the envelope. `leader_id`, `leader_address` and `progress` are omitted when `nil`.
public struct APIError: Error, Sendable, Hashable, Codable, CustomStringConvertible {
    public var code: APIErrorCode
    /// A human-readable explanation; not for matching.
    public var message: String
    /// The leader the answering node knows of, if any.
    public var leaderID: UInt64?
    /// The client address (`host:port`) of that leader, if known.
    public var leaderAddress: String?
    /// Present on `not_caught_up`: the learner's replication progress.
    public var progress: CatchUpProgress?
    /// Present on `compacted`: the oldest index a watch on this node can still start from.
    public var oldestIndex: UInt64?

    public init(
        code: APIErrorCode, message: String, leaderID: UInt64? = nil, leaderAddress: String? = nil,
        progress: CatchUpProgress? = nil, oldestIndex: UInt64? = nil
    ) {
        self.code = code
        self.message = message
        self.leaderID = leaderID
        self.leaderAddress = leaderAddress
        self.progress = progress
        self.oldestIndex = oldestIndex
    }

    enum CodingKeys: String, CodingKey {
        case code, message, progress
        case leaderID = "leader_id"
        case leaderAddress = "leader_address"
        case oldestIndex = "oldest_index"
    }

    /// The HTTP status of the response carrying this error.
    public var httpStatus: Int { code.httpStatus }

    /// `code: message`, with the leader hint when there is one.
    public var description: String {
        var text = "\(code): \(message)"
        if let leaderID {
            text += " (leader \(leaderID)\(leaderAddress.map { " at \($0)" } ?? ""))"
        }
        return text
    }
}

/// `{"error":{...}}`: every non-2xx body of the client API.
public struct APIErrorEnvelope: Sendable, Hashable, Codable {
    public var error: APIError

    public init(error: APIError) {
        self.error = error
    }
}
