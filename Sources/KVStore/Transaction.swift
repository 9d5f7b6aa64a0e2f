/// Multi-key transactions (etcd's Txn shape): compares, then the `success` or the `failure` operations, applied
/// atomically in one log entry, and their binary encodings.

// MARK: - Transaction

/// One condition of a transaction, on the current state of `key`.
public struct KVCompare: Sendable, Equatable {
    public enum Operator: UInt8, Sendable, Equatable {
        case equal = 1, notEqual = 2, less = 3, greater = 4
    }

    /// What is compared: the key's value (byte order), its modification index, or whether it exists.
    public enum Target: Sendable, Equatable {
        case value(Bytes)
        case index(UInt64)
        case exists(Bool)
    }

    public var key: Bytes
    public var op: Operator
    public var target: Target

    public init(key: Bytes, op: Operator, target: Target) {
        self.key = key
        self.op = op
        self.target = target
    }

    /// Whether the condition holds for a key whose current value and modification index are given (`nil`: absent).
    /// An absent key has no value: a value comparison with it holds only for `!=`. Its modification index is 0.
    func holds(current: Bytes?, modIndex: UInt64) -> Bool {
        switch target {
        case .value(let target):
            guard let current else { return op == .notEqual }
            return Self.apply(op, current == target ? 0 : (SortedKeys.less(current, target) ? -1 : 1))
        case .index(let target):
            return Self.apply(op, modIndex == target ? 0 : (modIndex < target ? -1 : 1))
        case .exists(let target):
            let exists = current != nil
            switch op {
            case .equal: return exists == target
            case .notEqual: return exists != target
            case .less, .greater: return false
            }
        }
    }

    private static func apply(_ op: Operator, _ order: Int) -> Bool {
        switch op {
        case .equal: return order == 0
        case .notEqual: return order != 0
        case .less: return order < 0
        case .greater: return order > 0
        }
    }
}

/// One operation of a transaction branch.
public enum KVTxnOp: Sendable, Equatable {
    case put(key: Bytes, value: Bytes)
    case delete(key: Bytes)
    case get(key: Bytes)

    public var key: Bytes {
        switch self {
        case .put(let key, _), .delete(let key), .get(let key): return key
        }
    }
}

/// The outcome of one transaction operation.
public enum KVTxnOpResult: Sendable, Equatable {
    case put
    case delete(existed: Bool)
    /// `value` is `nil` for an absent key; `modIndex` is the index of the key's last change (0 when absent).
    case get(value: Bytes?, modIndex: UInt64)
}

/// `if all(compare) then success else failure`, applied atomically.
public struct KVTransaction: Sendable, Equatable {
    public var compare: [KVCompare]
    public var success: [KVTxnOp]
    public var failure: [KVTxnOp]

    public init(compare: [KVCompare], success: [KVTxnOp], failure: [KVTxnOp]) {
        self.compare = compare
        self.success = success
        self.failure = failure
    }

    /// The bytes of keys, values and targets (what the size limit counts).
    public var payloadBytes: Int {
        var total = 0
        for c in compare {
            total += c.key.count
            if case .value(let v) = c.target { total += v.count }
        }
        for op in success + failure {
            total += op.key.count
            if case .put(_, let value) = op { total += value.count }
        }
        return total
    }

    func encode(into w: inout KVWriter) {
        w.varint(UInt64(compare.count))
        for c in compare {
            w.blob(c.key)
            w.u8(c.op.rawValue)
            switch c.target {
            case .value(let v):
                w.u8(1)
                w.blob(v)
            case .index(let i):
                w.u8(2)
                w.u64(i)
            case .exists(let e):
                w.u8(e ? 4 : 3)
            }
        }
        for branch in [success, failure] {
            w.varint(UInt64(branch.count))
            for op in branch {
                switch op {
                case .put(let key, let value):
                    w.u8(1)
                    w.blob(key)
                    w.blob(value)
                case .delete(let key):
                    w.u8(2)
                    w.blob(key)
                case .get(let key):
                    w.u8(3)
                    w.blob(key)
                }
            }
        }
    }

    static func decode(_ r: inout KVReader) throws -> KVTransaction {
        var compare: [KVCompare] = []
        for _ in 0..<(try r.count("compares", minSize: 3)) {
            let key = try r.blob("compare key")
            guard let op = KVCompare.Operator(rawValue: try r.u8("compare operator")) else {
                throw KVDecodeError("unknown compare operator")
            }
            let target: KVCompare.Target
            switch try r.u8("compare target") {
            case 1: target = .value(try r.blob("compare value"))
            case 2: target = .index(try r.u64("compare index"))
            case 3: target = .exists(false)
            case 4: target = .exists(true)
            case let tag: throw KVDecodeError("unknown compare target \(tag)")
            }
            compare.append(KVCompare(key: key, op: op, target: target))
        }
        var branches: [[KVTxnOp]] = []
        for _ in 0..<2 {
            var ops: [KVTxnOp] = []
            for _ in 0..<(try r.count("txn ops", minSize: 2)) {
                switch try r.u8("txn op") {
                case 1:
                    let key = try r.blob("put key")
                    ops.append(.put(key: key, value: try r.blob("put value")))
                case 2: ops.append(.delete(key: try r.blob("delete key")))
                case 3: ops.append(.get(key: try r.blob("get key")))
                case let tag: throw KVDecodeError("unknown txn op \(tag)")
                }
            }
            branches.append(ops)
        }
        return KVTransaction(compare: compare, success: branches[0], failure: branches[1])
    }
}

extension KVTxnOpResult {
    func encode(into w: inout KVWriter) {
        switch self {
        case .put: w.u8(1)
        case .delete(let existed): w.u8(existed ? 3 : 2)
        case .get(let value, let modIndex):
            w.u8(4)
            w.optionalBlob(value)
            w.u64(modIndex)
        }
    }

    static func decode(_ r: inout KVReader) throws -> KVTxnOpResult {
        switch try r.u8("txn op result") {
        case 1: return .put
        case 2: return .delete(existed: false)
        case 3: return .delete(existed: true)
        case 4:
            let value = try r.optionalBlob("got value")
            return .get(value: value, modIndex: try r.u64("mod index"))
        case let tag: throw KVDecodeError("unknown txn op result \(tag)")
        }
    }
}

// MARK: - Changes

/// A change to one key made by an applied entry: what a watch reports. Every change of one entry carries that
/// entry's index; expiries are reported at the index of the entry whose stamp advanced the clock past them.
public struct KVChange: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case put, delete, expire
    }

    public var kind: Kind
    public var key: Bytes
    /// The new value of a put; empty for a delete or an expiry.
    public var value: Bytes
    public var index: UInt64

    public init(kind: Kind, key: Bytes, value: Bytes, index: UInt64) {
        self.kind = kind
        self.key = key
        self.value = value
        self.index = index
    }
}
