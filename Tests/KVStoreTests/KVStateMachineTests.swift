import KVStore
import RaftCore
import Testing

private func b(_ s: String) -> Bytes { Array(s.utf8) }

/// Builds committed entries with increasing indexes.
struct Log {
    var next: LogIndex = 1
    var term: Term = 1

    mutating func entry(_ command: KVCommand, at ms: UInt64 = 1000, client: UInt64 = 0, seq: UInt64 = 0) -> Entry {
        defer { next += 1 }
        let data = KVOperation(timestampMs: ms, command: command).encoded
        return Entry(term: term, index: next, kind: .normal, clientID: client, sequence: seq, data: data)
    }

    /// An entry tagged with an idempotency key; the fingerprint stands for the request it was sent with.
    mutating func tagged(_ command: KVCommand, key: String, fingerprint: UInt64 = 7, at ms: UInt64 = 1000) -> Entry {
        defer { next += 1 }
        let tag = IdempotencyTag(key: Array(key.utf8), fingerprint: fingerprint)
        let data = KVOperation(timestampMs: ms, command: command, idempotency: tag).encoded
        return Entry(term: term, index: next, kind: .normal, data: data)
    }

    mutating func raw(_ kind: EntryKind, data: [UInt8] = []) -> Entry {
        defer { next += 1 }
        return Entry(term: term, index: next, kind: kind, data: data)
    }
}

struct SeededRNG: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("KV state machine")
struct KVStateMachineTests {
    @Test func putGetDeleteAndCas() {
        var sm = KVStateMachine()
        var log = Log()
        #expect(sm.apply(log.entry(.put(key: b("a"), value: b("1"), expiresAtMs: nil))) == .stored)
        #expect(sm.get(b("a")) == b("1"))
        #expect(sm.apply(log.entry(.cas(key: b("a"), expected: b("2"), value: b("3")))) == .cas(succeeded: false))
        #expect(sm.apply(log.entry(.cas(key: b("a"), expected: b("1"), value: b("3")))) == .cas(succeeded: true))
        #expect(sm.get(b("a")) == b("3"))
        #expect(sm.apply(log.entry(.cas(key: b("n"), expected: nil, value: b("x")))) == .cas(succeeded: true))
        #expect(sm.apply(log.entry(.cas(key: b("n"), expected: nil, value: b("y")))) == .cas(succeeded: false))
        #expect(sm.apply(log.entry(.delete(key: b("a")))) == .deleted(existed: true))
        #expect(sm.apply(log.entry(.delete(key: b("a")))) == .deleted(existed: false))
        #expect(sm.get(b("a")) == nil)
        #expect(sm.appliedIndex == 7)
    }

    @Test func noopConfigGarbageAndOrder() {
        var sm = KVStateMachine()
        var log = Log()
        #expect(sm.apply(log.raw(.noop)) == .none)
        #expect(sm.apply(log.raw(.config, data: MembershipChange.addLearner(4).encoded)) == .none)
        if case .invalid = sm.apply(log.raw(.normal, data: [9, 9, 9])) {} else { Issue.record("garbage accepted") }
        #expect(sm.appliedIndex == 3)
        #expect(sm.apply(Entry(term: 1, index: 9)) == .outOfOrder(expected: 4, got: 9))
        #expect(sm.appliedIndex == 3)
    }

    @Test func ttlFollowsTheLogClockAndWallClockReads() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("t"), value: b("v"), expiresAtMs: 5000), at: 1000))
        _ = sm.apply(log.entry(.put(key: b("p"), value: b("v"), expiresAtMs: nil), at: 1000))
        #expect(sm.get(b("t")) == b("v"))
        #expect(sm.get(b("t"), nowMs: 5000) == nil, "hidden by wall time")
        #expect(sm.count == 2)
        // A later command's timestamp moves the state machine's clock: the key is purged on every replica.
        _ = sm.apply(log.entry(.delete(key: b("zzz")), at: 5000))
        #expect(sm.get(b("t")) == nil)
        #expect(sm.count == 1)
        #expect(sm.clockMs == 5000)
        // A clock that goes backwards (an older leader's timestamp) does not resurrect anything.
        _ = sm.apply(log.entry(.put(key: b("t2"), value: b("v"), expiresAtMs: 4000), at: 3000))
        #expect(sm.get(b("t2")) == nil)
        // An overwrite without TTL cancels the expiry.
        _ = sm.apply(log.entry(.put(key: b("u"), value: b("1"), expiresAtMs: 6000), at: 5000))
        _ = sm.apply(log.entry(.put(key: b("u"), value: b("2"), expiresAtMs: nil), at: 5000))
        _ = sm.apply(log.entry(.delete(key: b("x")), at: 7000))
        #expect(sm.get(b("u")) == b("2"))
    }

    @Test func duplicatesReturnTheCachedResult() {  // Raft thesis §6.3
        var sm = KVStateMachine()
        var log = Log()
        #expect(sm.apply(log.entry(.cas(key: b("k"), expected: nil, value: b("1")), client: 7, seq: 1)) == .cas(succeeded: true))
        // The retry of the same request must not fail the CAS the second time.
        #expect(sm.apply(log.entry(.cas(key: b("k"), expected: nil, value: b("1")), client: 7, seq: 1)) == .cas(succeeded: true))
        #expect(sm.apply(log.entry(.delete(key: b("k")), client: 7, seq: 2)) == .deleted(existed: true))
        #expect(sm.apply(log.entry(.delete(key: b("k")), client: 7, seq: 2)) == .deleted(existed: true))
        #expect(sm.get(b("k")) == nil)
        #expect(sm.lastResult(clientID: 7)?.sequence == 2)
    }

    @Test func sessionsAreBoundedDeterministically() {
        var a = KVStateMachine(options: .init(sessionTimeoutEntries: 100_000, maxSessions: 10))
        var b2 = KVStateMachine(options: .init(sessionTimeoutEntries: 100_000, maxSessions: 10))
        var log = Log()
        for client in UInt64(1)...25 {
            let e = log.entry(.put(key: b("k"), value: b("v"), expiresAtMs: nil), client: client, seq: 1)
            _ = a.apply(e)
            _ = b2.apply(e)
        }
        #expect(a.sessionCount <= 10)
        #expect(a.lastResult(clientID: 25) != nil, "the most recent session is kept")
        #expect(a.lastResult(clientID: 1) == nil, "the least recent is evicted")
        #expect(a.stateHash == b2.stateHash)
    }

    @Test func prefixScanIsOrderedAndLimited() {
        var sm = KVStateMachine()
        var log = Log()
        var rng = SeededRNG(state: 5)
        var keys = Set<String>()
        for _ in 0..<3000 {
            let k = "user/\(Int.random(in: 0..<5000, using: &rng))"
            keys.insert(k)
            _ = sm.apply(log.entry(.put(key: b(k), value: b("v" + k), expiresAtMs: nil)))
        }
        for k in ["a", "user0", "usea", "zz"] { _ = sm.apply(log.entry(.put(key: b(k), value: b(k), expiresAtMs: nil))) }
        let all = sm.scan(prefix: b("user/"))
        #expect(all.map { String(decoding: $0.key, as: UTF8.self) } == keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) })
        #expect(all.allSatisfy { $0.value == b("v") + $0.key })
        let some = sm.scan(prefix: b("user/1"), limit: 5)
        #expect(some.count == 5)
        #expect(some.map(\.key) == all.filter { $0.key.starts(with: b("user/1")) }.prefix(5).map(\.key))
        #expect(sm.scan(prefix: b("nothing")).isEmpty)
        #expect(sm.scan(prefix: []).count == keys.count + 4)
    }

    @Test func pagesWalkEveryKeyOnceWithinTheirCaps() {
        var sm = KVStateMachine()
        var log = Log()
        var rng = SeededRNG(state: 9)
        for _ in 0..<2000 {
            let k = "p/\(Int.random(in: 0..<3000, using: &rng))"
            let size = Int.random(in: 0..<300, using: &rng)
            _ = sm.apply(log.entry(.put(key: b(k), value: Array(repeating: 120, count: size), expiresAtMs: nil)))
        }
        for k in ["o", "p", "q/1"] { _ = sm.apply(log.entry(.put(key: b(k), value: b(k), expiresAtMs: nil))) }
        let expected = sm.scan(prefix: b("p/")).map(\.key)
        for (limit, maxBytes) in [(1, 1 << 20), (7, 1 << 20), (500, 4000), (10_000, 0)] {
            var seen: [Bytes] = []
            var after: Bytes?
            var pages = 0
            while true {
                let page = sm.scanPage(prefix: b("p/"), after: after, limit: limit, maxBytes: maxBytes)
                pages += 1
                #expect(!page.rows.isEmpty || !page.more)
                #expect(page.rows.count <= limit)
                // Past its first row a page stays within the byte cap.
                let sizes = page.rows.map { $0.key.count + $0.value.count }
                #expect(sizes.reduce(0, +) <= max(maxBytes, sizes.first ?? 0))
                seen += page.rows.map(\.key)
                guard page.more, let last = page.rows.last else { break }
                after = last.key
            }
            #expect(seen == expected, "limit \(limit), maxBytes \(maxBytes)")
            #expect(pages > 1)
        }
        // `after` before the prefix starts at the prefix; after the prefix ends, nothing.
        #expect(sm.scanPage(prefix: b("p/"), after: b("a"), limit: 3, maxBytes: 1 << 20).rows.map(\.key)
            == Array(expected.prefix(3)))
        #expect(sm.scanPage(prefix: b("p/"), after: b("p0"), limit: 3, maxBytes: 1 << 20).rows.isEmpty)
        #expect(sm.scanPage(prefix: b("p/"), after: nil, limit: 0, maxBytes: 1 << 20).rows.isEmpty)
    }

    @Test func snapshotRestoresTheSameState() throws {
        var sm = KVStateMachine()
        var log = Log()
        var rng = SeededRNG(state: 9)
        for i in 0..<2000 {
            let key = b("k\(Int.random(in: 0..<300, using: &rng))")
            let command: KVCommand
            switch Int.random(in: 0..<4, using: &rng) {
            case 0: command = .delete(key: key)
            case 1: command = .put(key: key, value: b("t\(i)"), expiresAtMs: UInt64(i) * 10 + 500)
            case 2: command = .cas(key: key, expected: sm.get(key), value: b("c\(i)"))
            default: command = .put(key: key, value: b("v\(i)"), expiresAtMs: nil)
            }
            _ = sm.apply(log.entry(command, at: UInt64(i) * 10, client: UInt64(i % 17), seq: UInt64(i)))
        }
        let membership = Membership(voters: [1, 2, 3], learners: [4], addresses: [4: "127.0.0.1:9084"])
        let image = sm.snapshot(membership: membership)
        #expect(KVStateMachine.isIntactImage(image))
        var damaged = image
        damaged[damaged.count / 2] ^= 0x40
        #expect(!KVStateMachine.isIntactImage(damaged))
        #expect(!KVStateMachine.isIntactImage(Array(image.dropLast())))
        var (restored, meta) = try KVStateMachine.restore(from: image)
        #expect(meta == SnapshotMetadata(index: sm.appliedIndex, term: sm.appliedTerm, membership: membership))
        #expect(restored.stateHash == sm.stateHash)
        #expect(restored.scan(prefix: []).map(\.key) == sm.scan(prefix: []).map(\.key))
        // Both continue identically, expiries included.
        var original = sm
        for _ in 0..<200 {
            let e = log.entry(.put(key: b("k\(Int.random(in: 0..<300, using: &rng))"), value: b("x"), expiresAtMs: nil), at: 30_000)
            #expect(original.apply(e) == restored.apply(e))
        }
        #expect(original.stateHash == restored.stateHash)
        #expect(original.stateHash != sm.stateHash)
    }

    @Test func replicasConverge() {
        var log = Log()
        var rng = SeededRNG(state: 3)
        var entries: [Entry] = []
        for i in 0..<1000 {
            let key = b("k\(Int.random(in: 0..<50, using: &rng))")
            entries.append(log.entry(
                i % 3 == 0 ? .delete(key: key) : .put(key: key, value: b("\(i)"), expiresAtMs: UInt64(i + 40)),
                at: UInt64(i)))
        }
        var a = KVStateMachine()
        var c = KVStateMachine()
        for e in entries { _ = a.apply(e) }
        for e in entries { _ = c.apply(e) }
        #expect(a.stateHash == c.stateHash)
    }

    @Test(arguments: [UInt64(31), 32])
    func decodersSurviveGarbage(seed: UInt64) throws {
        var rng = SeededRNG(state: seed)
        var sm = KVStateMachine()
        var log = Log()
        for i in 0..<50 { _ = sm.apply(log.entry(.put(key: b("k\(i)"), value: b("v"), expiresAtMs: i % 2 == 0 ? 99_999 : nil), client: UInt64(i), seq: 1)) }
        let image = sm.snapshot(membership: Membership(voters: [1]))
        let command = KVOperation(timestampMs: 5, command: .cas(key: b("key"), expected: b("e"), value: b("v"))).encoded
        #expect(try KVOperation(decoding: command).command == .cas(key: b("key"), expected: b("e"), value: b("v")))
        var acceptedImages = 0
        for i in 0..<3000 {
            var input = i % 2 == 0 ? image : command
            for _ in 0..<Int.random(in: 1...3, using: &rng) where !input.isEmpty {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1: input.removeLast(Int.random(in: 0...input.count, using: &rng))
                default: input = (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                }
            }
            _ = try? KVOperation(decoding: input)
            if (try? KVStateMachine.restore(from: input)) != nil { acceptedImages += 1 }
            _ = sm.apply(Entry(term: 1, index: sm.appliedIndex + 1, data: input))
        }
        #expect(acceptedImages < 10)
    }
}

/// Issue #15: `Idempotency-Key` writes apply once, replicated through the log and snapshots.
@Suite("KV state machine: idempotency keys")
struct IdempotencyKeyTests {
    @Test func aRetryReturnsTheFirstOutcomeAndAppliesNothing() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("k"), value: b("old"), expiresAtMs: nil)))
        let cas = KVCommand.cas(key: b("k"), expected: b("old"), value: b("new"))
        #expect(sm.apply(log.tagged(cas, key: "r1")) == .cas(succeeded: true))
        // Someone else writes in between; the retried CAS would now fail if it were applied again.
        _ = sm.apply(log.entry(.put(key: b("k"), value: b("old"), expiresAtMs: nil)))
        #expect(sm.apply(log.tagged(cas, key: "r1")) == .replayed(index: 2, result: .cas(succeeded: true)))
        #expect(sm.get(b("k")) == b("old"))
        // A delete retried after the key is gone still reports the first outcome (it existed).
        #expect(sm.apply(log.tagged(.delete(key: b("k")), key: "d1")) == .deleted(existed: true))
        #expect(sm.apply(log.tagged(.delete(key: b("k")), key: "d1")) == .replayed(index: 5, result: .deleted(existed: true)))
    }

    @Test func theSameKeyWithAnotherRequestIsRefused() {
        var sm = KVStateMachine()
        var log = Log()
        #expect(sm.apply(log.tagged(.put(key: b("a"), value: b("1"), expiresAtMs: nil), key: "x", fingerprint: 1)) == .stored)
        #expect(
            sm.apply(log.tagged(.put(key: b("a"), value: b("2"), expiresAtMs: nil), key: "x", fingerprint: 2))
                == .idempotencyKeyReused(firstIndex: 1))
        #expect(sm.get(b("a")) == b("1"))
    }

    @Test func keysExpireByTheLogClockAndAreBounded() {
        var sm = KVStateMachine(options: .init(idempotencyTTLMs: 10_000, maxIdempotencyKeys: 3))
        var log = Log()
        _ = sm.apply(log.tagged(.put(key: b("a"), value: b("1"), expiresAtMs: nil), key: "k1", at: 1000))
        // 9 s later by the log: still remembered.
        #expect(sm.apply(log.tagged(.put(key: b("a"), value: b("1"), expiresAtMs: nil), key: "k1", at: 10_000))
            == .replayed(index: 1, result: .stored))
        // 10 s after its first use: forgotten, so the same key applies again.
        _ = sm.apply(log.entry(.delete(key: b("z")), at: 11_000))
        #expect(sm.firstOutcome(idempotencyKey: b("k1")) == nil)
        #expect(sm.apply(log.tagged(.put(key: b("a"), value: b("2"), expiresAtMs: nil), key: "k1", at: 11_000)) == .stored)
        // At most 3 keys: the oldest goes first.
        for i in 2...4 { _ = sm.apply(log.tagged(.delete(key: b("z")), key: "k\(i)", at: 11_000)) }
        #expect(sm.idempotencyKeyCount == 3)
        #expect(sm.firstOutcome(idempotencyKey: b("k1")) == nil)
        #expect(sm.firstOutcome(idempotencyKey: b("k4")) != nil)
    }

    @Test func theTableTravelsInSnapshotsAndTheStateHash() throws {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.tagged(.put(key: b("a"), value: b("1"), expiresAtMs: nil), key: "p"))
        let plain = KVStateMachine()
        #expect(sm.stateHash != plain.stateHash)
        let image = sm.snapshot(membership: Membership(voters: [1]))
        var (restored, _) = try KVStateMachine.restore(from: image)
        #expect(restored.stateHash == sm.stateHash)
        #expect(restored.apply(log.tagged(.put(key: b("a"), value: b("1"), expiresAtMs: nil), key: "p"))
            == .replayed(index: 1, result: .stored))
    }

    @Test func taggedOperationsRoundTripAndUntaggedKeepVersionOne() throws {
        let tag = IdempotencyTag(key: b("key-1"), fingerprint: 42)
        let op = KVOperation(timestampMs: 5, command: .delete(key: b("a")), idempotency: tag)
        #expect(try KVOperation(decoding: op.encoded) == op)
        #expect(KVOperation(timestampMs: 5, command: .delete(key: b("a"))).encoded.first == 1)
        #expect(op.encoded.first == 2)
    }
}

/// Issue #15: one clock for TTLs, leader-stamped log time that never runs faster than the monotonic clock.
@Suite("Log time (TTL clock)")
struct LogClockTests {
    @Test func aFreshClockTrustsTheWallClockOnce() {
        var clock = LogClock()
        #expect(clock.stamp(wallMs: 1_000_000, monotonicMs: 50) == 1_000_000)
        #expect(clock.anchorMs == 1_000_000)
    }

    @Test func aWallClockAheadCannotRunFasterThanTheMonotonicClock() {
        var clock = LogClock()
        clock.observe(1_000_000, monotonicMs: 100)
        // The wall clock jumped an hour ahead; only 2 s really passed.
        #expect(clock.stamp(wallMs: 1_000_000 + 3_600_000, monotonicMs: 2_100) == 1_002_000)
    }

    @Test func aWallClockBehindHoldsLogTimeStillAndNeverBackwards() {
        var clock = LogClock()
        clock.observe(1_000_000, monotonicMs: 100)
        #expect(clock.now(wallMs: 900_000, monotonicMs: 5_100) == 1_000_000)
        #expect(clock.now(wallMs: 1_003_000, monotonicMs: 5_100) == 1_003_000)
        // A stamp becomes the anchor; an older applied stamp does not move it back.
        _ = clock.stamp(wallMs: 1_003_000, monotonicMs: 5_100)
        clock.observe(1_001_000, monotonicMs: 6_000)
        #expect(clock.anchorMs == 1_003_000)
    }

    @Test func getCasAndDeleteJudgeExpiryByTheSameClock() {
        var sm = KVStateMachine()
        var log = Log()
        #expect(sm.apply(log.entry(.put(key: b("t"), value: b("old"), expiresAtMs: 5_000), at: 1_000)) == .stored)
        // A read at log time 5000 no longer sees the key...
        #expect(sm.get(b("t"), nowMs: 5_000) == nil)
        #expect(sm.get(b("t"), nowMs: 4_999) == b("old"))
        // ...and a CAS stamped at 5000 or later cannot match the old value.
        #expect(sm.apply(log.entry(.cas(key: b("t"), expected: b("old"), value: b("new")), at: 5_000)) == .cas(succeeded: false))
        #expect(sm.apply(log.entry(.delete(key: b("t")), at: 5_001)) == .deleted(existed: false))
    }

    @Test func aPutExpiredByLogTimeIsRefusedAndChangesNothing() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("k"), value: b("v"), expiresAtMs: nil), at: 10_000))
        #expect(sm.apply(log.entry(.put(key: b("k"), value: b("w"), expiresAtMs: 9_000), at: 10_000)) == .expiredOnArrival)
        #expect(sm.get(b("k")) == b("v"))
    }
}
