/// The commands of the key-value state machine and their results, with their compact binary encodings.

public typealias Bytes = [UInt8]

// MARK: - Commands

/// A write the state machine applies.
public enum KVCommand: Sendable, Equatable, CustomStringConvertible {
    /// Sets `key` to `value`. `expiresAtMs` (wall clock, ms) makes the key vanish once the state machine's clock
    /// reaches it; the leader computes it from the TTL when it proposes the command.
    case put(key: Bytes, value: Bytes, expiresAtMs: UInt64?)
    case delete(key: Bytes)
    /// Sets `key` to `value` only if its current value is `expected` (`nil`: only if absent).
    case cas(key: Bytes, expected: Bytes?, value: Bytes)
    /// A multi-key transaction, applied atomically (`KVTransaction`).
    case txn(KVTransaction)

    /// The key the command is about (a transaction's first key, or empty).
    public var key: Bytes {
        switch self {
        case .put(let key, _, _), .delete(let key), .cas(let key, _, _): return key
        case .txn(let txn): return txn.compare.first?.key ?? (txn.success + txn.failure).first?.key ?? []
        }
    }

    public var description: String {
        let k = String(decoding: key.prefix(32), as: UTF8.self)
        switch self {
        case .put(_, let value, let expiry):
            return "put \(k) (\(value.count) bytes)" + (expiry.map { " expires=\($0)" } ?? "")
        case .delete: return "delete \(k)"
        case .cas(_, let expected, let value):
            return "cas \(k) expected=\(expected.map { "\($0.count) bytes" } ?? "absent") (\(value.count) bytes)"
        case .txn(let txn):
            return "txn \(txn.compare.count) compares, \(txn.success.count) success, \(txn.failure.count) failure ops"
        }
    }
}

/// A client's `Idempotency-Key` and a fingerprint of the request it was sent with: a retry with the same key and
/// fingerprint returns the first outcome; the same key with another fingerprint is refused (`422`).
public struct IdempotencyTag: Sendable, Equatable {
    public var key: Bytes
    public var fingerprint: UInt64

    public init(key: Bytes, fingerprint: UInt64) {
        self.key = key
        self.fingerprint = fingerprint
    }

    /// A fingerprint of a request's parts (its route and fields, as the client sent them: a TTL, not the expiry
    /// the leader computes from it), FNV-1a over length-prefixed parts.
    public static func fingerprint(_ parts: [Bytes]) -> UInt64 {
        var h = FNV1a64()
        for part in parts {
            h.add(UInt64(part.count))
            h.add(part)
        }
        return h.value
    }
}

/// What a `.normal` entry carries: a command and the leader's wall-clock time when it was proposed. The time drives
/// the state machine's clock, so TTL expiry is the same on every replica.
public struct KVOperation: Sendable, Equatable {
    /// Version 1: no idempotency tag; version 2 appends one. Both decode.
    public static let version: UInt8 = 1
    static let taggedVersion: UInt8 = 2

    public var timestampMs: UInt64
    public var command: KVCommand
    public var idempotency: IdempotencyTag?

    public init(timestampMs: UInt64, command: KVCommand, idempotency: IdempotencyTag? = nil) {
        self.timestampMs = timestampMs
        self.command = command
        self.idempotency = idempotency
    }

    /// `[version][timestamp u64][tag][fields]`, then under version 2 `[key blob][fingerprint u64]`; keys and values
    /// are varint-length-prefixed.
    public var encoded: Bytes {
        // Room for the fixed fields, up to three varint-prefixed blobs and the tag (exact for put, delete and cas).
        var capacity = 1 + 8 + 1 + 8 + 3 * 10
        switch command {
        case .put(let key, let value, _): capacity += key.count + value.count
        case .delete(let key): capacity += key.count
        case .cas(let key, let expected, let value): capacity += key.count + (expected?.count ?? 0) + value.count + 1
        case .txn: capacity += 256
        }
        if let idempotency { capacity += 10 + idempotency.key.count + 8 }
        var w = KVWriter(capacity: capacity)
        w.u8(idempotency == nil ? Self.version : Self.taggedVersion)
        w.u64(timestampMs)
        switch command {
        case .put(let key, let value, let expiry):
            w.u8(expiry == nil ? 1 : 2)
            w.blob(key)
            w.blob(value)
            if let expiry { w.u64(expiry) }
        case .delete(let key):
            w.u8(3)
            w.blob(key)
        case .cas(let key, let expected, let value):
            w.u8(4)
            w.blob(key)
            w.optionalBlob(expected)
            w.blob(value)
        case .txn(let txn):
            w.u8(5)
            txn.encode(into: &w)
        }
        if let idempotency {
            w.blob(idempotency.key)
            w.u64(idempotency.fingerprint)
        }
        return w.bytes
    }

    /// Decodes `bytes`; throws on an unknown version or tag, truncation or trailing bytes.
    public init(decoding bytes: Bytes) throws {
        var r = KVReader(bytes)
        let version = try r.u8("version")
        guard version == Self.version || version == Self.taggedVersion else {
            throw KVDecodeError("unsupported command version \(version)")
        }
        timestampMs = try r.u64("timestamp")
        switch try r.u8("tag") {
        case 1: command = .put(key: try r.blob("key"), value: try r.blob("value"), expiresAtMs: nil)
        case 2:
            let key = try r.blob("key")
            let value = try r.blob("value")
            command = .put(key: key, value: value, expiresAtMs: try r.u64("expiry"))
        case 3: command = .delete(key: try r.blob("key"))
        case 4:
            let key = try r.blob("key")
            let expected = try r.optionalBlob("expected")
            command = .cas(key: key, expected: expected, value: try r.blob("value"))
        case 5: command = .txn(try KVTransaction.decode(&r))
        case let tag: throw KVDecodeError("unknown command tag \(tag)")
        }
        if version == Self.taggedVersion {
            idempotency = IdempotencyTag(key: try r.blob("idempotency key"), fingerprint: try r.u64("fingerprint"))
        }
        try r.expectEnd("command")
    }
}

// MARK: - Results

/// The outcome of applying one entry. Deterministic: every replica computes the same result.
public enum KVResult: Sendable, Equatable, CustomStringConvertible {
    /// A put was applied.
    case stored
    /// A delete was applied; `existed` tells whether the key was present (and unexpired).
    case deleted(existed: Bool)
    /// A compare-and-swap was evaluated.
    case cas(succeeded: Bool)
    /// A `.noop` or `.config` entry: nothing for the key-value state.
    case none
    /// The payload did not decode; nothing was applied (the same on every replica).
    case invalid(String)
    /// The entry's index was not `appliedIndex + 1`; nothing was applied.
    case outOfOrder(expected: UInt64, got: UInt64)
    /// A retry with an `Idempotency-Key` already applied: nothing was applied again; `result` is the first outcome,
    /// at `index`.
    indirect case replayed(index: UInt64, result: KVResult)
    /// The `Idempotency-Key` was first used, at `firstIndex`, with a different request: nothing was applied.
    case idempotencyKeyReused(firstIndex: UInt64)
    /// A put whose expiry had already passed by the log's clock when it applied: nothing was applied (`400`).
    case expiredOnArrival
    /// A transaction ran: `succeeded` tells whether every compare held (the success branch ran) or not (the failure
    /// branch ran); `results` has one entry per operation of the branch that ran.
    case txn(succeeded: Bool, results: [KVTxnOpResult])

    public var description: String {
        switch self {
        case .stored: return "stored"
        case .deleted(let existed): return "deleted(existed=\(existed))"
        case .cas(let ok): return "cas(succeeded=\(ok))"
        case .none: return "none"
        case .invalid(let why): return "invalid(\(why))"
        case .outOfOrder(let e, let g): return "out-of-order(expected=\(e), got=\(g))"
        case .replayed(let index, let result): return "replayed(\(result) at \(index))"
        case .idempotencyKeyReused(let first): return "idempotency-key-reused(first=\(first))"
        case .expiredOnArrival: return "expired-on-arrival"
        case .txn(let ok, let results): return "txn(succeeded=\(ok), \(results.count) results)"
        }
    }

    func encode(into w: inout KVWriter) {
        switch self {
        case .stored: w.u8(1)
        case .deleted(let existed): w.u8(existed ? 3 : 2)
        case .cas(let ok): w.u8(ok ? 5 : 4)
        case .none: w.u8(6)
        case .invalid(let why):
            w.u8(7)
            w.blob(Array(why.utf8))
        case .outOfOrder(let e, let g):
            w.u8(8)
            w.u64(e)
            w.u64(g)
        case .replayed(let index, let result):
            w.u8(9)
            w.u64(index)
            result.encode(into: &w)
        case .idempotencyKeyReused(let first):
            w.u8(10)
            w.u64(first)
        case .expiredOnArrival:
            w.u8(11)
        case .txn(let ok, let results):
            w.u8(ok ? 13 : 12)
            w.varint(UInt64(results.count))
            for result in results { result.encode(into: &w) }
        }
    }

    static func decode(_ r: inout KVReader) throws -> KVResult {
        let tag = try r.u8("result tag")
        switch tag {
        case 1: return .stored
        case 2: return .deleted(existed: false)
        case 3: return .deleted(existed: true)
        case 4: return .cas(succeeded: false)
        case 5: return .cas(succeeded: true)
        case 6: return .none
        case 7: return .invalid(String(decoding: try r.blob("reason"), as: UTF8.self))
        case 8: return .outOfOrder(expected: try r.u64("expected"), got: try r.u64("got"))
        case 9:
            let index = try r.u64("replayed index")
            let inner = try decode(&r)
            if case .replayed = inner { throw KVDecodeError("nested replayed result") }
            return .replayed(index: index, result: inner)
        case 10: return .idempotencyKeyReused(firstIndex: try r.u64("first index"))
        case 11: return .expiredOnArrival
        case 12, 13:
            var results: [KVTxnOpResult] = []
            for _ in 0..<(try r.count("txn results", minSize: 1)) { results.append(try KVTxnOpResult.decode(&r)) }
            return .txn(succeeded: tag == 13, results: results)
        case let tag: throw KVDecodeError("unknown result tag \(tag)")
        }
    }
}
