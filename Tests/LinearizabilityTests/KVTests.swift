import Linearizability
import Testing

/// Hand-made key-value histories, checked per key.
@Suite struct KVTests {
    @Test func independentKeysAreCheckedSeparately() {
        // Across keys there is no single order that explains these reads if the keys were one object, but each
        // key on its own is fine: partitioning must not mix them.
        let result = checkKV([
            kv(0, .put(key: "a", value: "1"), .ok(.done), 0, 1),
            kv(1, .put(key: "b", value: "1"), .ok(.done), 2, 3),
            kv(2, .get(key: "a"), .ok(.value("1")), 4, 5),
            kv(3, .get(key: "b"), .ok(.value("1")), 4, 5),
            kv(4, .get(key: "c"), .ok(.value(nil)), 0, 9),
        ])
        #expect(result.isLinearizable)
    }

    @Test func staleReadOnOneKeyNamesThatKeyOnly() throws {
        let result = checkKV([
            kv(0, .put(key: "a", value: "1"), .ok(.done), 0, 1),
            kv(1, .put(key: "b", value: "x"), .ok(.done), 0, 1),
            kv(0, .put(key: "a", value: "2"), .ok(.done), 2, 3),
            kv(1, .get(key: "b"), .ok(.value("x")), 4, 5),
            kv(2, .get(key: "a"), .ok(.value("1")), 4, 5),
        ])
        let witness = try #require(result.witness)
        #expect(witness.failures.map(\.partition) == ["a"])
        let keyA: Set<Int> = [0, 2, 4]
        #expect(!witness.operationIDs.isEmpty)
        #expect(witness.operationIDs.isSubset(of: keyA))
        #expect(witness.failures[0].blocked.id == 4)
        #expect(witness.description.contains("key a: no linearization"))
    }

    @Test func appendsConcatenateInLinearizationOrder() {
        let appends = [
            kv(0, .append(key: "k", value: "x"), .ok(.done), 0, 10),
            kv(1, .append(key: "k", value: "y"), .ok(.done), 1, 9),
        ]
        #expect(checkKV(appends + [kv(2, .get(key: "k"), .ok(.value("yx")), 11, 12)]).isLinearizable)
        #expect(checkKV(appends + [kv(2, .get(key: "k"), .ok(.value("xy")), 11, 12)]).isLinearizable)
        // Only one append seen after both completed: the other was lost.
        #expect(!checkKV(appends + [kv(2, .get(key: "k"), .ok(.value("x")), 11, 12)]).isLinearizable)
        // porcupine's convention: a missing key reads as "".
        #expect(checkKV([kv(0, .get(key: "k"), .ok(.value("")), 0, 1)], initialValue: "").isLinearizable)
        #expect(!checkKV([kv(0, .get(key: "k"), .ok(.value("")), 0, 1)]).isLinearizable)
    }

    @Test func getOfNeverWrittenValueIsNoted() {
        let result = checkKV([
            kv(0, .put(key: "k", value: "v1"), .ok(.done), 0, 1),
            kv(1, .get(key: "k"), .ok(.value("ghost")), 2, 3),
        ])
        #expect(result.witness?.failures.first?.notes == ["#1 get(k) → \"ghost\": a value never written"])
    }

    @Test func deleteAndCompareAndSwap() {
        let base = [
            kv(0, .cas(key: "k", expected: nil, new: "a"), .ok(.swapped(true)), 0, 1),
            kv(0, .delete(key: "k"), .ok(.done), 2, 3),
        ]
        #expect(checkKV(base + [kv(1, .get(key: "k"), .ok(.value(nil)), 4, 5)]).isLinearizable)
        #expect(!checkKV(base + [kv(1, .get(key: "k"), .ok(.value("a")), 4, 5)]).isLinearizable)
        let create = kv(1, .cas(key: "k", expected: nil, new: "b"), .ok(.swapped(true)), 4, 5)
        #expect(checkKV(base + [create]).isLinearizable)
        let refused = kv(1, .cas(key: "k", expected: nil, new: "b"), .ok(.swapped(false)), 4, 5)
        #expect(!checkKV(base + [refused]).isLinearizable)
    }

    @Test func infoPutOnlyAfterItsInvoke() {
        let late = [
            kv(0, .get(key: "k"), .ok(.value(nil)), 0, 1),
            kv(1, .put(key: "k", value: "v"), .info, 2, nil),
            kv(0, .get(key: "k"), .ok(.value("v")), 30, 31),
            kv(0, .get(key: "k"), .ok(.value("v")), 40, 41),
        ]
        #expect(checkKV(late).isLinearizable)
        let early = [
            kv(0, .get(key: "k"), .ok(.value("v")), 0, 1),
            kv(1, .put(key: "k", value: "v"), .info, 2, nil),
        ]
        #expect(!checkKV(early).isLinearizable)
    }

    @Test func linearizationOrderIsReturned() {
        let (result, order) = LinearizabilityChecker.linearize(
            History([
                kv(0, .put(key: "k", value: "1"), .ok(.done), 0, 10),
                kv(1, .put(key: "k", value: "2"), .ok(.done), 1, 9),
                kv(2, .get(key: "k"), .ok(.value("1")), 11, 12),
                kv(3, .put(key: "j", value: "z"), .ok(.done), 0, 1),
            ]),
            model: KVModel()
        )
        #expect(result.isLinearizable)
        #expect(order["k"] == [1, 0, 2])
        #expect(order["j"] == [3])
    }

    @Test func recorderStampsStrictlyIncreasingTimesAndLeavesOpenOperationsInfo() {
        let recorder = HistoryRecorder<KVInput, KVOutput>()
        let put = recorder.invoke(process: 0, .put(key: "k", value: "v"))
        let get = recorder.invoke(process: 1, .get(key: "k"))
        recorder.ok(put, .done, index: 7)
        let lost = recorder.invoke(process: 2, .put(key: "k", value: "w"))
        recorder.fail(lost)
        let pending = recorder.invoke(process: 3, .put(key: "k", value: "u"))
        let history = recorder.history()
        #expect(history.operations.count == 4)
        #expect(history.operations[put].index == 7)
        let stamps = [
            history.operations[put].invokedAt, history.operations[get].invokedAt,
            history.operations[put].returnedAt ?? 0, history.operations[lost].invokedAt,
            history.operations[lost].returnedAt ?? 0, history.operations[pending].invokedAt,
        ]
        #expect(zip(stamps, stamps.dropFirst()).allSatisfy { $0 < $1 })
        #expect(history.operations[get].isInfo && history.operations[pending].isInfo)
        #expect(history.operations[lost].isFail)
        // The open get may still return "v" or nil; "u" may have been written.
        #expect(LinearizabilityChecker.check(history, model: KVModel()).isLinearizable)
    }
}

/// Partitions are interleaved: a hard key cannot hide an easy failure on another.
@Suite struct PartitionSchedulingTests {
    /// 30 concurrent puts then an impossible get on `hard`; a plain stale read on `easy`.
    static let operations: [KVOperation] =
        (0..<30).map { kv($0, .put(key: "hard", value: "\($0)"), .ok(.done), UInt64($0), 100 + UInt64($0)) } + [
            kv(99, .get(key: "hard"), .ok(.value("none")), 200, 201),
            kv(100, .put(key: "easy", value: "1"), .ok(.done), 300, 301),
            kv(100, .put(key: "easy", value: "2"), .ok(.done), 302, 303),
            kv(101, .get(key: "easy"), .ok(.value("1")), 304, 305),
        ]

    @Test func easyFailureIsFoundDespiteAHardKey() throws {
        let result = LinearizabilityChecker.check(History(Self.operations), model: KVModel(), timeout: .seconds(20))
        let witness = try #require(result.witness)
        #expect(witness.failures.map(\.partition) == ["easy"])
        #expect(witness.failures[0].blocked.id == 33)
        #expect(witness.incomplete)
    }

    @Test func findAllFailuresReportsWhatItDecidedBeforeTheTimeout() throws {
        let result = LinearizabilityChecker.check(
            History(Self.operations), model: KVModel(), timeout: .milliseconds(300), findAllFailures: true
        )
        let witness = try #require(result.witness)
        #expect(witness.failures.map(\.partition) == ["easy"])
        #expect(witness.incomplete)
        #expect(witness.description.hasSuffix("(other keys not fully checked)"))
    }

    @Test func findAllFailuresListsEveryFailingKey() {
        let result = LinearizabilityChecker.check(
            History([
                kv(0, .put(key: "a", value: "1"), .ok(.done), 0, 1),
                kv(1, .get(key: "a"), .ok(.value(nil)), 2, 3),
                kv(2, .get(key: "b"), .ok(.value("x")), 0, 1),
                kv(3, .get(key: "c"), .ok(.value(nil)), 0, 1),
            ]),
            model: KVModel(),
            findAllFailures: true
        )
        #expect(result.witness?.failures.map(\.partition) == ["a", "b"])
        #expect(result.witness?.incomplete == false)
    }
}
