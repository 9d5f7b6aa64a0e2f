import KVStore
import RaftCore
import Testing

private func b(_ s: String) -> Bytes { Array(s.utf8) }

/// Issue #17 part 2: transactions applied atomically in one entry, the modification index they compare, the changes
/// watches report, and their encodings.
@Suite struct TransactionTests {
    private func transfer(from: String, to: String, fromValue: String, toValue: String, amount: Int) -> KVTransaction {
        KVTransaction(
            compare: [
                KVCompare(key: b(from), op: .equal, target: .value(b(fromValue))),
                KVCompare(key: b(to), op: .equal, target: .value(b(toValue))),
            ],
            success: [
                .put(key: b(from), value: b(String(Int(fromValue)! - amount))),
                .put(key: b(to), value: b(String(Int(toValue)! + amount))),
            ],
            failure: [.get(key: b(from)), .get(key: b(to))])
    }

    @Test func successBranchRunsWhenEveryCompareHolds() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("a"), value: b("10"), expiresAtMs: nil)))
        _ = sm.apply(log.entry(.put(key: b("b"), value: b("5"), expiresAtMs: nil)))
        var changes: [KVChange] = []
        let result = sm.apply(
            log.entry(.txn(transfer(from: "a", to: "b", fromValue: "10", toValue: "5", amount: 3))), changes: &changes)
        #expect(result == .txn(succeeded: true, results: [.put, .put]))
        #expect(sm.get(b("a")) == b("7"))
        #expect(sm.get(b("b")) == b("8"))
        #expect(sm.modIndex(of: b("a")) == 3)
        #expect(changes.map(\.kind) == [.put, .put])
        #expect(changes.map(\.index) == [3, 3])
    }

    @Test func failureBranchRunsWhenACompareFails() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("a"), value: b("10"), expiresAtMs: nil)))
        var changes: [KVChange] = []
        let result = sm.apply(
            log.entry(.txn(transfer(from: "a", to: "b", fromValue: "10", toValue: "5", amount: 3))), changes: &changes)
        #expect(result == .txn(succeeded: false, results: [.get(value: b("10"), modIndex: 1), .get(value: nil, modIndex: 0)]))
        #expect(sm.get(b("a")) == b("10"))
        #expect(changes.isEmpty)
    }

    @Test(arguments: [
        (KVCompare.Target.exists(false), KVCompare.Operator.equal, true),
        (.exists(true), .notEqual, true),
        (.exists(true), .equal, false),
        (.value(b("x")), .notEqual, true),
        (.value(b("x")), .equal, false),
        (.index(0), .equal, true),
        (.index(1), .less, true),
    ])
    func comparesOnAnAbsentKey(target: KVCompare.Target, op: KVCompare.Operator, holds: Bool) {
        var sm = KVStateMachine()
        var log = Log()
        let txn = KVTransaction(compare: [KVCompare(key: b("absent"), op: op, target: target)], success: [], failure: [])
        #expect(sm.apply(log.entry(.txn(txn))) == .txn(succeeded: holds, results: []))
    }

    @Test func indexComparesSeeTheLastChange() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("k"), value: b("1"), expiresAtMs: nil)))
        _ = sm.apply(log.entry(.put(key: b("other"), value: b("1"), expiresAtMs: nil)))
        let txn = KVTransaction(
            compare: [KVCompare(key: b("k"), op: .equal, target: .index(1))], success: [.delete(key: b("k"))],
            failure: [])
        var changes: [KVChange] = []
        #expect(sm.apply(log.entry(.txn(txn)), changes: &changes) == .txn(succeeded: true, results: [.delete(existed: true)]))
        #expect(changes == [KVChange(kind: .delete, key: b("k"), value: [], index: 3)])
    }

    @Test func expiriesAreReportedAtTheEntryThatPassesThem() {
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("t"), value: b("v"), expiresAtMs: 1500), at: 1000))
        var changes: [KVChange] = []
        _ = sm.apply(log.entry(.put(key: b("u"), value: b("w"), expiresAtMs: nil), at: 2000), changes: &changes)
        #expect(changes.map(\.kind) == [.expire, .put])
        #expect(changes.map(\.index) == [2, 2])
    }

    @Test func transactionsAndTheirResultsRoundTrip() throws {
        let txn = KVTransaction(
            compare: [
                KVCompare(key: b("a"), op: .greater, target: .value(b("1"))),
                KVCompare(key: b("b"), op: .less, target: .index(9)),
                KVCompare(key: b("c"), op: .notEqual, target: .exists(true)),
            ],
            success: [.put(key: b("a"), value: b("2")), .delete(key: b("b")), .get(key: b("c"))],
            failure: [.get(key: b("a"))])
        let op = KVOperation(timestampMs: 5, command: .txn(txn))
        #expect(try KVOperation(decoding: op.encoded) == op)

        // A result cached in a session survives the snapshot image.
        var sm = KVStateMachine()
        var log = Log()
        _ = sm.apply(log.entry(.put(key: b("a"), value: b("5"), expiresAtMs: nil)))
        _ = sm.apply(log.entry(.txn(txn), client: 42, seq: 1))
        let image = sm.snapshot(membership: Membership(voters: [1]))
        let (restored, _) = try KVStateMachine.restore(from: image)
        #expect(restored.stateHash == sm.stateHash)
        #expect(restored.modIndex(of: b("a")) == 2)
        #expect(restored.lastResult(clientID: 42)?.result == sm.lastResult(clientID: 42)?.result)
    }

    @Test func truncatedTransactionsAreRefused() {
        let txn = KVTransaction(compare: [], success: [.put(key: b("a"), value: b("2"))], failure: [])
        let bytes = KVOperation(timestampMs: 5, command: .txn(txn)).encoded
        for cut in 1..<bytes.count {
            #expect(throws: KVDecodeError.self) { try KVOperation(decoding: Array(bytes.prefix(cut))) }
        }
    }
}
