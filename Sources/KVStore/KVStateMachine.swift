import RaftCore

/// The deterministic key-value state machine: committed entries in, results out.
///
/// **Determinism.** Apply depends only on the entries: no wall clock, no randomness, no hash-order iteration. The
/// state machine's clock is the largest proposal stamp (log time, `LogClock`) applied so far (`clockMs`); a key
/// whose expiry is `<= clockMs` is gone, and is purged at apply time in (expiry, key) order. Reads pass the serving
/// node's log time now as `nowMs` to also hide keys that have expired by log time since the last entry.
///
/// **Exactly once.** Entries with a session (`clientID != 0`) are deduplicated (Raft thesis §6.3): a sequence
/// number `<=` the session's last one returns the cached result of the last one without applying anything again.
/// Sessions not seen for `sessionTimeoutEntries` entries, or the least recently seen beyond `maxSessions`, are
/// evicted, deterministically (by log index, ties by client id).
///
/// **Idempotency keys.** An operation tagged with a client's `Idempotency-Key` (`KVOperation.idempotency`) is applied
/// once per key: a later entry with the same key and fingerprint returns `.replayed(index:result:)` (the first
/// outcome) and applies nothing; the same key with another fingerprint returns `.idempotencyKeyReused`. The table is
/// bounded (`maxIdempotencyKeys`) and expires entries by the log's clock (`idempotencyTTLMs` after they were
/// applied), oldest first, so every replica keeps exactly the same keys.
///
/// **Ordered keys.** Values live in a hash map (O(1) point reads); the key order in a chunked sorted list (O(log n)
/// insert and delete, prefix scans in O(log n + k)).
///
/// Invariant: `appliedIndex` only grows, by one per applied entry.
public struct KVStateMachine: Sendable {
    public struct Options: Sendable, Equatable {
        public var sessionTimeoutEntries: UInt64
        public var maxSessions: Int
        /// How long (log clock, ms) an idempotency key is remembered after its first use, and how many at most.
        public var idempotencyTTLMs: UInt64
        public var maxIdempotencyKeys: Int
        public init(
            sessionTimeoutEntries: UInt64 = 100_000, maxSessions: Int = 10_000,
            idempotencyTTLMs: UInt64 = 24 * 3_600_000, maxIdempotencyKeys: Int = 100_000
        ) {
            self.sessionTimeoutEntries = sessionTimeoutEntries
            self.maxSessions = max(1, maxSessions)
            self.idempotencyTTLMs = idempotencyTTLMs
            self.maxIdempotencyKeys = max(1, maxIdempotencyKeys)
        }
    }

    struct Record: Sendable, Equatable {
        var value: Bytes
        var expiresAtMs: UInt64?
        /// The index of the entry that last set the key (0 for keys restored from an image older than version 4).
        var modIndex: LogIndex = 0
    }

    struct Session: Sendable, Equatable {
        var lastSequence: UInt64
        var lastResult: KVResult
        var lastSeenIndex: UInt64
    }

    struct IdempotencyRecord: Sendable, Equatable {
        var fingerprint: UInt64
        var index: LogIndex
        var result: KVResult
        var appliedAtMs: UInt64
    }

    public let options: Options
    public private(set) var appliedIndex: LogIndex = 0
    public private(set) var appliedTerm: Term = 0
    /// The largest proposal timestamp applied so far (ms).
    public private(set) var clockMs: UInt64 = 0

    private var values: [Bytes: Record] = [:]
    private var order = SortedKeys()
    /// A min-heap of (expiry, key); entries are stale when the key's expiry changed since.
    private var expiries = ExpiryHeap()
    private var sessions: [UInt64: Session] = [:]
    private var idempotency: [Bytes: IdempotencyRecord] = [:]
    /// Idempotency keys in the order they were applied (so `appliedAtMs` never decreases); `idempotencyHead` is the
    /// oldest live one.
    private var idempotencyOrder: [Bytes] = []
    private var idempotencyHead = 0
    /// While `apply(_:changes:)` runs: the changes made so far (not part of the state: never hashed or imaged).
    private var recorded: [KVChange]?

    public init(options: Options = Options()) { self.options = options }

    /// Keys present (expired keys are purged at apply time, so this counts what the log's clock considers live).
    public var count: Int { values.count }
    public var sessionCount: Int { sessions.count }
    public var idempotencyKeyCount: Int { idempotency.count }

    // MARK: - Apply

    /// `apply(_:)`, also appending to `changes` every key the entry changed (puts, deletes of present keys, expiries),
    /// in the order they happened: what watches report.
    public mutating func apply(_ entry: Entry, changes: inout [KVChange]) -> KVResult {
        recorded = []
        let result = apply(entry)
        if let recorded { changes.append(contentsOf: recorded) }
        recorded = nil
        return result
    }

    /// Applies a committed entry. `.noop` and `.config` entries advance the applied index and return `.none`.
    public mutating func apply(_ entry: Entry) -> KVResult {
        guard entry.index == appliedIndex + 1 else {
            return .outOfOrder(expected: appliedIndex + 1, got: entry.index)
        }
        appliedIndex = entry.index
        appliedTerm = entry.term
        defer { evictSessions(at: entry.index) }
        guard entry.kind == .normal else { return .none }
        let operation: KVOperation
        do {
            operation = try KVOperation(decoding: entry.data)
        } catch {
            return .invalid("\(error)")
        }
        advanceClock(to: operation.timestampMs)
        if let tag = operation.idempotency {
            if let first = idempotency[tag.key] {
                return first.fingerprint == tag.fingerprint
                    ? .replayed(index: first.index, result: first.result)
                    : .idempotencyKeyReused(firstIndex: first.index)
            }
            let result = execute(operation.command)
            idempotency[tag.key] = IdempotencyRecord(
                fingerprint: tag.fingerprint, index: entry.index, result: result, appliedAtMs: clockMs)
            idempotencyOrder.append(tag.key)
            expireIdempotencyKeys()
            return result
        }
        if entry.clientID != 0, var session = sessions[entry.clientID], entry.sequence <= session.lastSequence {
            session.lastSeenIndex = entry.index
            sessions[entry.clientID] = session
            return session.lastResult
        }
        let result = execute(operation.command)
        if entry.clientID != 0 {
            sessions[entry.clientID] = Session(
                lastSequence: entry.sequence, lastResult: result, lastSeenIndex: entry.index)
        }
        return result
    }

    private mutating func execute(_ command: KVCommand) -> KVResult {
        switch command {
        case .put(let key, let value, let expiry):
            // Judged by the entry's own stamp (the clock has just advanced to it): the same rule as reads.
            if let expiry, expiry <= clockMs { return .expiredOnArrival }
            store(key, Record(value: value, expiresAtMs: expiry, modIndex: appliedIndex))
            return .stored
        case .delete(let key):
            let existed = values[key] != nil
            if existed { remove(key, .delete) }
            return .deleted(existed: existed)
        case .cas(let key, let expected, let value):
            guard values[key]?.value == expected else { return .cas(succeeded: false) }
            store(key, Record(value: value, expiresAtMs: nil, modIndex: appliedIndex))
            return .cas(succeeded: true)
        case .txn(let txn):
            // Compares see the state before the transaction (keys expired by this entry's stamp are already purged).
            let succeeded = txn.compare.allSatisfy { c in
                let record = values[c.key]
                return c.holds(current: record?.value, modIndex: record?.modIndex ?? 0)
            }
            var results: [KVTxnOpResult] = []
            results.reserveCapacity(succeeded ? txn.success.count : txn.failure.count)
            for op in succeeded ? txn.success : txn.failure {
                switch op {
                case .put(let key, let value):
                    store(key, Record(value: value, expiresAtMs: nil, modIndex: appliedIndex))
                    results.append(.put)
                case .delete(let key):
                    let existed = values[key] != nil
                    if existed { remove(key, .delete) }
                    results.append(.delete(existed: existed))
                case .get(let key):
                    let record = values[key]
                    results.append(.get(value: record?.value, modIndex: record?.modIndex ?? 0))
                }
            }
            return .txn(succeeded: succeeded, results: results)
        }
    }

    private mutating func store(_ key: Bytes, _ record: Record) {
        if let expiry = record.expiresAtMs, expiry <= clockMs {
            // Already expired by the log's clock: the put leaves the key absent.
            if values[key] != nil { remove(key, .delete) }
            return
        }
        if values.updateValue(record, forKey: key) == nil { order.insert(key) }
        if let expiry = record.expiresAtMs { expiries.push(expiry, key) }
        recorded?.append(KVChange(kind: .put, key: key, value: record.value, index: appliedIndex))
    }

    private mutating func remove(_ key: Bytes, _ kind: KVChange.Kind) {
        values[key] = nil
        order.remove(key)
        recorded?.append(KVChange(kind: kind, key: key, value: [], index: appliedIndex))
    }

    private mutating func advanceClock(to timestamp: UInt64) {
        guard timestamp > clockMs else { return }
        clockMs = timestamp
        while let (expiry, key) = expiries.peek(), expiry <= clockMs {
            expiries.pop()
            if let record = values[key], record.expiresAtMs == expiry { remove(key, .expire) }
        }
        expireIdempotencyKeys()
    }

    /// Forgets idempotency keys older than `idempotencyTTLMs` by the log's clock, and the oldest beyond
    /// `maxIdempotencyKeys`.
    private mutating func expireIdempotencyKeys() {
        while idempotencyHead < idempotencyOrder.count {
            let key = idempotencyOrder[idempotencyHead]
            guard let record = idempotency[key] else {
                idempotencyHead += 1
                continue
            }
            guard idempotency.count > options.maxIdempotencyKeys
                || record.appliedAtMs &+ options.idempotencyTTLMs <= clockMs
            else { break }
            idempotency[key] = nil
            idempotencyHead += 1
        }
        if idempotencyHead > 1024 && idempotencyHead * 2 > idempotencyOrder.count {
            idempotencyOrder.removeFirst(idempotencyHead)
            idempotencyHead = 0
        }
    }

    /// Live idempotency keys, oldest first.
    private var liveIdempotencyKeys: ArraySlice<Bytes> { idempotencyOrder[idempotencyHead...] }

    /// The first outcome recorded for an idempotency key, if it is still remembered.
    public func firstOutcome(idempotencyKey: Bytes) -> (fingerprint: UInt64, index: LogIndex, result: KVResult)? {
        idempotency[idempotencyKey].map { ($0.fingerprint, $0.index, $0.result) }
    }

    private mutating func evictSessions(at index: LogIndex) {
        if index % 1024 == 0 {
            let timeout = options.sessionTimeoutEntries
            sessions = sessions.filter { $0.value.lastSeenIndex &+ timeout >= index }
        }
        if sessions.count > options.maxSessions {
            // Evict the least recently seen down to 90% of the cap, so the O(n) sort is rare.
            let keep = max(1, options.maxSessions * 9 / 10)
            let victims = sessions.sorted {
                ($0.value.lastSeenIndex, $0.key) < ($1.value.lastSeenIndex, $1.key)
            }.prefix(sessions.count - keep)
            for (id, _) in victims { sessions[id] = nil }
        }
    }

    // MARK: - Reads

    private func isLive(_ record: Record, nowMs: UInt64?) -> Bool {
        guard let expiry = record.expiresAtMs else { return true }
        return expiry > max(clockMs, nowMs ?? 0)
    }

    /// The value of `key`, hiding keys expired by the log's clock or by `nowMs` (log time now, ms).
    public func get(_ key: Bytes, nowMs: UInt64? = nil) -> Bytes? {
        guard let record = values[key], isLive(record, nowMs: nowMs) else { return nil }
        return record.value
    }

    /// The expiry of `key` (ms), if it has one.
    public func expiry(of key: Bytes) -> UInt64? { values[key]?.expiresAtMs }

    /// The earliest expiry (ms, log time) of a key still held, if any (possibly of a key set again since: then the
    /// next entry that passes it changes nothing).
    public var nextExpiryMs: UInt64? { expiries.peek()?.0 }

    /// The index of the entry that last set `key` (0 when absent, or set before a version 4 image).
    public func modIndex(of key: Bytes) -> LogIndex { values[key]?.modIndex ?? 0 }

    /// Keys starting with `prefix`, in byte order, at most `limit`.
    public func scan(prefix: Bytes, limit: Int = .max, nowMs: UInt64? = nil) -> [(key: Bytes, value: Bytes)] {
        var out: [(key: Bytes, value: Bytes)] = []
        guard limit > 0 else { return out }
        order.forEach(from: prefix) { key in
            guard key.starts(with: prefix) else { return false }
            if let record = values[key], isLive(record, nowMs: nowMs) { out.append((key, record.value)) }
            return out.count < limit
        }
        return out
    }

    /// One page of the keys starting with `prefix`, in byte order: keys after `after` (exclusive; `nil` starts at the
    /// prefix), at most `limit` rows and, past the first row, at most `maxBytes` of keys and values. `more` says
    /// whether a live key with the prefix follows the page (the caller's continuation is the last key returned).
    ///
    /// The rows share the state machine's storage (no bytes are copied), so a node can collect a page on its Raft
    /// loop in O(log n + rows) and convert and encode it elsewhere.
    public func scanPage(
        prefix: Bytes, after: Bytes?, limit: Int, maxBytes: Int, nowMs: UInt64? = nil
    ) -> (rows: [(key: Bytes, value: Bytes)], more: Bool) {
        var rows: [(key: Bytes, value: Bytes)] = []
        var bytes = 0
        var more = false
        guard limit > 0 else { return (rows, false) }
        let start = after.map { SortedKeys.less($0, prefix) ? prefix : $0 } ?? prefix
        order.forEach(from: start) { key in
            guard key.starts(with: prefix) else { return false }
            if let after, key == after { return true }
            guard let record = values[key], isLive(record, nowMs: nowMs) else { return true }
            let size = key.count + record.value.count
            if rows.count == limit || (!rows.isEmpty && bytes + size > maxBytes) {
                more = true
                return false
            }
            rows.append((key, record.value))
            bytes += size
            return true
        }
        return (rows, more)
    }

    /// The cached result for a client's session, if any (for answering a retried request without proposing).
    public func lastResult(clientID: UInt64) -> (sequence: UInt64, result: KVResult)? {
        sessions[clientID].map { ($0.lastSequence, $0.lastResult) }
    }

    // MARK: - Hash

    /// A hash of the contents (keys, values, expiries, sessions) in key order; replicas at the same applied index
    /// must agree on it.
    public var stateHash: UInt64 {
        var h = FNV1a64()
        order.forEach { key in
            let record = values[key]!
            h.add(UInt64(key.count))
            h.add(key)
            h.add(UInt64(record.value.count))
            h.add(record.value)
            h.add(record.expiresAtMs ?? UInt64.max)
            h.add(record.modIndex)
        }
        for id in sessions.keys.sorted() {
            let s = sessions[id]!
            var w = KVWriter()
            s.lastResult.encode(into: &w)
            h.add(id)
            h.add(s.lastSequence)
            h.add(s.lastSeenIndex)
            h.add(w.bytes)
        }
        for key in liveIdempotencyKeys {
            guard let record = idempotency[key] else { continue }
            var w = KVWriter()
            record.result.encode(into: &w)
            h.add(UInt64(key.count))
            h.add(key)
            h.add(record.fingerprint)
            h.add(record.index)
            h.add(record.appliedAtMs)
            h.add(w.bytes)
        }
        h.add(clockMs)
        return h.value
    }

    // MARK: - Snapshot

    static let snapshotMagic: Bytes = Array("DKVS".utf8)
    /// Version 2 added the members' address table after the learners, version 3 the idempotency keys after the
    /// sessions, version 4 each key's modification index after its expiry; version 1 to 3 images still restore
    /// (their keys with modification index 0).
    static let snapshotVersion: UInt8 = 4

    /// A consistent image of the whole state at `appliedIndex`, with `membership` (the configuration at that
    /// index, which the node knows) and a trailing FNV-1a checksum.
    public func snapshot(membership: Membership) -> Bytes {
        var w = KVWriter()
        w.bytes.append(contentsOf: Self.snapshotMagic)
        w.u8(Self.snapshotVersion)
        w.u64(appliedIndex)
        w.u64(appliedTerm)
        w.varint(UInt64(membership.voters.count))
        for id in membership.voters.sorted() { w.u64(id) }
        w.varint(UInt64(membership.learners.count))
        for id in membership.learners.sorted() { w.u64(id) }
        w.blob(membership.encodedAddresses)
        w.u64(clockMs)
        w.varint(UInt64(values.count))
        order.forEach { key in
            let record = values[key]!
            w.blob(key)
            w.blob(record.value)
            if let expiry = record.expiresAtMs {
                w.u8(1)
                w.u64(expiry)
            } else {
                w.u8(0)
            }
            w.u64(record.modIndex)
        }
        w.varint(UInt64(sessions.count))
        for id in sessions.keys.sorted() {
            let s = sessions[id]!
            w.u64(id)
            w.u64(s.lastSequence)
            w.u64(s.lastSeenIndex)
            s.lastResult.encode(into: &w)
        }
        w.varint(UInt64(idempotency.count))
        for key in liveIdempotencyKeys {
            guard let record = idempotency[key] else { continue }
            w.blob(key)
            w.u64(record.fingerprint)
            w.u64(record.index)
            w.u64(record.appliedAtMs)
            record.result.encode(into: &w)
        }
        var h = FNV1a64()
        h.add(w.bytes)
        w.u64(h.value)
        return w.bytes
    }

    /// FNV-1a 64 of `bytes` as 16 hex digits: the `checksum` of a snapshot backup's header.
    public static func checksumText(of bytes: Bytes) -> String {
        var h = FNV1a64()
        h.add(bytes)
        let text = String(h.value, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    /// Whether `bytes` look like an intact image: the magic and the trailing checksum (cheap; `restore` checks all).
    public static func isIntactImage(_ bytes: Bytes) -> Bool {
        guard bytes.count >= snapshotMagic.count + 1 + 8, bytes.starts(with: snapshotMagic) else { return false }
        var h = FNV1a64()
        h.add(Array(bytes[..<(bytes.count - 8)]))
        var tail = KVReader(Array(bytes[(bytes.count - 8)...]))
        return (try? tail.u64("checksum")) == h.value
    }

    /// Rebuilds a state machine from `snapshot(membership:)` bytes. Throws `KVDecodeError` on any damage.
    public static func restore(from bytes: Bytes, options: Options = Options()) throws -> (
        KVStateMachine, SnapshotMetadata
    ) {
        guard bytes.count >= snapshotMagic.count + 1 + 8 else { throw KVDecodeError("snapshot image too short") }
        var h = FNV1a64()
        h.add(Array(bytes[..<(bytes.count - 8)]))
        var tail = KVReader(Array(bytes[(bytes.count - 8)...]))
        guard try tail.u64("checksum") == h.value else { throw KVDecodeError("snapshot image checksum mismatch") }
        var r = KVReader(Array(bytes[..<(bytes.count - 8)]))
        for b in snapshotMagic where try r.u8("magic") != b { throw KVDecodeError("not a key-value snapshot image") }
        let version = try r.u8("version")
        guard (1...snapshotVersion).contains(version) else {
            throw KVDecodeError("unsupported snapshot image version \(version)")
        }
        var sm = KVStateMachine(options: options)
        sm.appliedIndex = try r.u64("index")
        sm.appliedTerm = try r.u64("term")
        var voters = Set<NodeID>()
        for _ in 0..<(try r.count("voters", minSize: 8)) { voters.insert(try r.u64("voter")) }
        var learners = Set<NodeID>()
        for _ in 0..<(try r.count("learners", minSize: 8)) { learners.insert(try r.u64("learner")) }
        var addresses: [NodeID: String] = [:]
        if version >= 2 {
            let table = try r.blob("addresses")
            var offset = 0
            guard let decoded = Membership.decodeAddresses(table, at: &offset), offset == table.count else {
                throw KVDecodeError("malformed member address table")
            }
            addresses = decoded
        }
        sm.clockMs = try r.u64("clock")
        var previous: Bytes?
        for _ in 0..<(try r.count("keys", minSize: 3)) {
            let key = try r.blob("key")
            let value = try r.blob("value")
            let expiry: UInt64?
            switch try r.u8("expiry flag") {
            case 0: expiry = nil
            case 1: expiry = try r.u64("expiry")
            case let f: throw KVDecodeError("bad expiry flag \(f)")
            }
            let modIndex = version >= 4 ? try r.u64("mod index") : 0
            if let previous, !SortedKeys.less(previous, key) { throw KVDecodeError("keys out of order") }
            previous = key
            sm.values[key] = Record(value: value, expiresAtMs: expiry, modIndex: modIndex)
            sm.order.insert(key)
            if let expiry { sm.expiries.push(expiry, key) }
        }
        var lastID: UInt64?
        for _ in 0..<(try r.count("sessions", minSize: 25)) {
            let id = try r.u64("client id")
            if let lastID, lastID >= id { throw KVDecodeError("sessions out of order") }
            lastID = id
            let sequence = try r.u64("sequence")
            let seen = try r.u64("last seen")
            sm.sessions[id] = Session(lastSequence: sequence, lastResult: try KVResult.decode(&r), lastSeenIndex: seen)
        }
        if version >= 3 {
            var lastApplied: UInt64 = 0
            for _ in 0..<(try r.count("idempotency keys", minSize: 26)) {
                let key = try r.blob("idempotency key")
                let fingerprint = try r.u64("fingerprint")
                let index = try r.u64("first index")
                let appliedAt = try r.u64("applied at")
                guard appliedAt >= lastApplied, sm.idempotency[key] == nil else {
                    throw KVDecodeError("idempotency keys out of order or repeated")
                }
                lastApplied = appliedAt
                sm.idempotency[key] = IdempotencyRecord(
                    fingerprint: fingerprint, index: index, result: try KVResult.decode(&r), appliedAtMs: appliedAt)
                sm.idempotencyOrder.append(key)
            }
        }
        try r.expectEnd("snapshot image")
        let meta = SnapshotMetadata(
            index: sm.appliedIndex, term: sm.appliedTerm,
            membership: Membership(voters: voters, learners: learners, addresses: addresses))
        return (sm, meta)
    }
}

// MARK: - Expiry heap

/// A binary min-heap of (expiry, key), ordered by expiry then key bytes so that purging is deterministic.
struct ExpiryHeap: Sendable {
    private var items: [(UInt64, Bytes)] = []

    private static func less(_ a: (UInt64, Bytes), _ b: (UInt64, Bytes)) -> Bool {
        a.0 != b.0 ? a.0 < b.0 : SortedKeys.less(a.1, b.1)
    }

    func peek() -> (UInt64, Bytes)? { items.first }

    mutating func push(_ expiry: UInt64, _ key: Bytes) {
        items.append((expiry, key))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard Self.less(items[i], items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() {
        guard !items.isEmpty else { return }
        items.swapAt(0, items.count - 1)
        items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1
            let r = l + 1
            var m = i
            if l < items.count && Self.less(items[l], items[m]) { m = l }
            if r < items.count && Self.less(items[r], items[m]) { m = r }
            guard m != i else { break }
            items.swapAt(i, m)
            i = m
        }
    }
}
