import Linearizability
import Testing

/// Hand-made register histories with known verdicts. Times are abstract ticks on one clock.
@Suite struct RegisterTests {
    @Test func emptyHistoryIsLinearizable() {
        #expect(checkRegister([]).isLinearizable)
    }

    @Test func sequentialWriteThenReadIsLinearizable() {
        let result = checkRegister([
            reg(0, .read, .ok(.value(nil)), 0, 1),
            reg(0, .write(1), .ok(.done), 2, 3),
            reg(1, .read, .ok(.value(1)), 4, 5),
        ])
        #expect(result.isLinearizable)
    }

    @Test func staleReadIsNotLinearizable() throws {
        let result = checkRegister([
            reg(0, .write(1), .ok(.done), 0, 1),
            reg(0, .write(2), .ok(.done), 2, 3),
            reg(1, .read, .ok(.value(1)), 4, 5),
        ])
        let witness = try #require(result.witness)
        #expect(witness.failures.map(\.partition) == ["register"])
        #expect(witness.failures.first?.blocked.id == 2)
        #expect(witness.failures.first?.longestPrefix.map(\.id) == [0, 1])
        #expect(witness.failures.first?.stateAfterPrefix == "2")
    }

    @Test func lostAcknowledgedWriteIsNotLinearizable() {
        // The write was acknowledged, yet a read that starts after it sees the empty register.
        let result = checkRegister([
            reg(0, .write(1), .ok(.done), 0, 1),
            reg(1, .read, .ok(.value(nil)), 2, 3),
        ])
        #expect(result.witness?.operationIDs.contains(1) == true)
    }

    @Test func readOfNeverWrittenValueIsFlagged() {
        let result = checkRegister([
            reg(0, .write(1), .ok(.done), 0, 1),
            reg(1, .read, .ok(.value(7)), 0, 3),
        ])
        let failure = result.witness?.failures.first
        #expect(failure?.blocked.id == 1)
        #expect(failure?.notes == ["#1 read 7, a value never written"])
        #expect(result.description.contains("#1 p1 read → 7 [0, 3]"))
    }

    @Test func overlappingWritesMayBeOrderedEitherWay() {
        let writes = [reg(0, .write(1), .ok(.done), 0, 10), reg(1, .write(2), .ok(.done), 1, 9)]
        #expect(checkRegister(writes + [reg(2, .read, .ok(.value(1)), 11, 12)]).isLinearizable)
        #expect(checkRegister(writes + [reg(2, .read, .ok(.value(2)), 11, 12)]).isLinearizable)
        // Once both writes are over, two later reads must agree on which came last.
        let flipFlop = writes + [reg(2, .read, .ok(.value(1)), 11, 12), reg(2, .read, .ok(.value(2)), 13, 14)]
        #expect(checkRegister(flipFlop).witness?.operationIDs.contains(3) == true)
    }

    @Test func readsConcurrentWithAWriteMustNotGoBackwards() {
        let write = reg(0, .write(1), .ok(.done), 0, 10)
        let forward = [write, reg(1, .read, .ok(.value(nil)), 1, 2), reg(1, .read, .ok(.value(1)), 3, 4)]
        #expect(checkRegister(forward).isLinearizable)
        let backward = [write, reg(1, .read, .ok(.value(1)), 1, 2), reg(1, .read, .ok(.value(nil)), 3, 4)]
        #expect(!checkRegister(backward).isLinearizable)
    }

    @Test func infoWriteMayTakeEffectLate() {
        // Invoked at 0, outcome unknown: visible only at 10 is fine, even after a read saw the old value.
        let result = checkRegister([
            reg(0, .write(1), .info, 0, nil),
            reg(1, .read, .ok(.value(nil)), 1, 2),
            reg(1, .read, .ok(.value(1)), 10, 11),
        ])
        #expect(result.isLinearizable)
    }

    @Test func infoWriteMayNeverTakeEffect() {
        let result = checkRegister([
            reg(0, .write(1), .ok(.done), 0, 1),
            reg(1, .write(2), .info, 2, nil),
            reg(2, .read, .ok(.value(1)), 5, 6),
            reg(2, .read, .ok(.value(1)), 50, 51),
        ])
        #expect(result.isLinearizable)
    }

    @Test func infoWriteCannotTakeEffectBeforeItsInvoke() {
        let result = checkRegister([
            reg(0, .read, .ok(.value(1)), 0, 1),
            reg(1, .write(1), .info, 2, nil),
        ])
        #expect(result.witness?.failures.first?.blocked.id == 0)
    }

    @Test func infoWriteCannotBeUndone() {
        let result = checkRegister([
            reg(0, .write(1), .info, 0, nil),
            reg(1, .read, .ok(.value(1)), 1, 2),
            reg(1, .read, .ok(.value(nil)), 3, 4),
        ])
        #expect(!result.isLinearizable)
    }

    @Test func failedWriteIsDropped() {
        let failed = reg(0, .write(1), .fail, 0, 1)
        #expect(checkRegister([failed, reg(1, .read, .ok(.value(nil)), 2, 3)]).isLinearizable)
        let seen = checkRegister([failed, reg(1, .read, .ok(.value(1)), 2, 3)])
        #expect(seen.witness?.failures.first?.notes == ["#1 read 1, a value never written"])
    }

    @Test func compareAndSwapSuccessAndFailure() {
        let one = reg(0, .write(1), .ok(.done), 0, 1)
        let swapped = [
            one, reg(1, .cas(expected: 1, new: 2), .ok(.swapped(true)), 2, 3), reg(2, .read, .ok(.value(2)), 4, 5),
        ]
        #expect(checkRegister(swapped).isLinearizable)
        // Swapping from 1 while the register holds 3 is impossible.
        let three = reg(0, .write(3), .ok(.done), 0, 1)
        #expect(!checkRegister([three, reg(1, .cas(expected: 1, new: 2), .ok(.swapped(true)), 2, 3)]).isLinearizable)
        // A mismatch is fine against 3, impossible against 1.
        #expect(checkRegister([three, reg(1, .cas(expected: 1, new: 2), .ok(.swapped(false)), 2, 3)]).isLinearizable)
        #expect(!checkRegister([one, reg(1, .cas(expected: 1, new: 2), .ok(.swapped(false)), 2, 3)]).isLinearizable)
        // An unknown CAS may have swapped.
        let unknown = [one, reg(1, .cas(expected: 1, new: 2), .info, 2, nil), reg(2, .read, .ok(.value(2)), 5, 6)]
        #expect(checkRegister(unknown).isLinearizable)
    }

    @Test func concurrentCASOnlyOneWins() {
        let base = [
            reg(0, .write(0), .ok(.done), 0, 1),
            reg(1, .cas(expected: 0, new: 1), .ok(.swapped(true)), 2, 10),
        ]
        let bothWin = base + [reg(2, .cas(expected: 0, new: 2), .ok(.swapped(true)), 3, 9)]
        #expect(!checkRegister(bothWin).isLinearizable)
        let oneWins = base + [reg(2, .cas(expected: 0, new: 2), .ok(.swapped(false)), 3, 9)]
        #expect(checkRegister(oneWins).isLinearizable)
    }

    @Test func timeoutGivesUnknown() {
        // 40 concurrent writes then an impossible read: every subset of writes is a distinct search state.
        var operations = (0..<40).map { reg($0, .write($0), .ok(.done), UInt64($0), 100 + UInt64($0)) }
        operations.append(reg(99, .read, .ok(.value(1000)), 200, 201))
        let clock = ContinuousClock()
        let start = clock.now
        let result = checkRegister(operations, timeout: .milliseconds(200))
        let elapsed = clock.now - start
        guard case .unknown(let timeout) = result else {
            Issue.record("expected .unknown, got \(result)")
            return
        }
        #expect(timeout == .milliseconds(200))
        #expect(elapsed < .seconds(5))
    }
}
