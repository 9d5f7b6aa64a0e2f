import ClusterAPI
import KVStore
import RaftCore
import Testing

@testable import NodeRuntime

/// Collects what the callbacks were told, in order.
final class Outcomes {
    var lines: [String] = []
}

@Suite struct PendingRequestsTests {
    private func write(_ outcomes: Outcomes, _ name: String) -> (Result<(LogIndex, KVResult), APIError>) -> Void {
        { result in
            switch result {
            case .success(let (index, _)): outcomes.lines.append("\(name) ok \(index)")
            case .failure(let error): outcomes.lines.append("\(name) \(error.code.rawValue)")
            }
        }
    }

    private func run(_ answers: PendingRequests.Answers) { for answer in answers { answer() } }

    @Test func aWriteIsAnsweredByTheTermOfTheEntryAppliedAtItsIndex() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        run(pending.addWrite(index: 5, term: 2, deadline: 100, done: write(outcomes, "a")))
        run(pending.addWrite(index: 6, term: 2, deadline: 100, done: write(outcomes, "b")))
        #expect(outcomes.lines.isEmpty && pending.writeCount == 2)
        let first = pending.applied(index: 5, entryTerm: 2, result: .stored)
        #expect(first.succeeded)
        #expect(outcomes.lines.isEmpty, "no callback runs inside the mutation")
        first.answer?()
        // Another leader's entry took index 6: the write was never committed and never will be.
        let second = pending.applied(index: 6, entryTerm: 3, result: .stored)
        #expect(!second.succeeded)
        second.answer?()
        #expect(outcomes.lines == ["a ok 5", "b unavailable"])
        #expect(pending.applied(index: 7, entryTerm: 3, result: .stored).answer == nil)
        #expect(pending.writeCount == 0)
    }

    @Test func aWriteDisplacedAtItsIndexIsToldItWasNotApplied() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        run(pending.addWrite(index: 9, term: 2, deadline: 100, done: write(outcomes, "old")))
        run(pending.addWrite(index: 9, term: 4, deadline: 500, done: write(outcomes, "new")))
        #expect(outcomes.lines == ["old unavailable"])
        // The old write's deadline passes; the new one keeps its own.
        run(pending.expire(now: 200))
        #expect(outcomes.lines == ["old unavailable"])
        run(pending.expire(now: 500))
        #expect(outcomes.lines == ["old unavailable", "new timeout"])
    }

    @Test func deadlinesFailWritesAndReadsOnceThenForgetThem() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        for index in LogIndex(1)...3 {
            run(pending.addWrite(index: index, term: 1, deadline: 100 * index, done: write(outcomes, "w\(index)")))
        }
        let read = pending.nextRead()
        pending.addRead(id: read, deadline: 150) { result in
            if case .failure(let error) = result { outcomes.lines.append("read \(error.code.rawValue)") }
        }
        run(pending.expire(now: 99))
        #expect(outcomes.lines.isEmpty)
        run(pending.expire(now: 200))
        #expect(outcomes.lines.sorted() == ["read timeout", "w1 timeout", "w2 timeout"])
        run(pending.expire(now: 10_000))
        #expect(outcomes.lines.count == 4 && pending.writeCount == 0 && pending.readCount == 0)
        run(pending.expire(now: 20_000))
        #expect(outcomes.lines.count == 4)
    }

    @Test func confirmedReadsAndApplyWaitersAnswerOutsideTheMutation() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        let a = pending.nextRead()
        let b = pending.nextRead()
        #expect(a != b)
        pending.addRead(id: a, deadline: 1000) { result in
            if case .success(let index) = result { outcomes.lines.append("a at \(index)") }
        }
        pending.addRead(id: b, deadline: 1000) { result in
            if case .failure(let error) = result { outcomes.lines.append("b \(error.code.rawValue)") }
        }
        let confirmed = pending.readConfirmed(id: a, index: 7)
        // A confirmed read comes back to wait for its index: allowed, because the mutation is over.
        confirmed?()
        pending.addApplyWaiter(7) { outcomes.lines.append("serve a") }
        pending.addApplyWaiter(9) { outcomes.lines.append("serve later") }
        pending.readFailed(id: b, APIError(code: .noLeader, message: "x"))?()
        #expect(pending.readConfirmed(id: a, index: 8) == nil)
        run(pending.applyWaiters(upTo: 8))
        #expect(outcomes.lines == ["a at 7", "b no_leader", "serve a"])
        run(pending.applyWaiters(upTo: 9))
        #expect(outcomes.lines.last == "serve later")
        #expect(pending.applyWaiterCount == 0)
    }

    @Test func transfersCompleteWhenTheTargetLeadsOrTimeOut() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        for target in [NodeID(2), 3] {
            pending.addTransfer(to: target, deadline: 500) { result in
                switch result {
                case .success(let response): outcomes.lines.append("\(target) leads at \(response.index)")
                case .failure(let error): outcomes.lines.append("\(target) \(error.code.rawValue)")
                }
            }
        }
        run(pending.completeTransfers(leader: 1, commitIndex: 10, now: 100))
        #expect(outcomes.lines.isEmpty)
        run(pending.completeTransfers(leader: 2, commitIndex: 11, now: 200))
        #expect(outcomes.lines == ["2 leads at 11"])
        run(pending.completeTransfers(leader: nil, commitIndex: 11, now: 500))
        #expect(outcomes.lines == ["2 leads at 11", "3 timeout"])
        #expect(pending.transferCount == 0)
    }

    @Test func shutdownFailsEverythingOnce() {
        let outcomes = Outcomes()
        var pending = PendingRequests()
        run(pending.addWrite(index: 1, term: 1, deadline: 100, done: write(outcomes, "w")))
        pending.addRead(id: pending.nextRead(), deadline: 100) { _ in outcomes.lines.append("read") }
        pending.addTransfer(to: 2, deadline: 100) { _ in outcomes.lines.append("transfer") }
        run(pending.failAll())
        #expect(outcomes.lines.sorted() == ["read", "transfer", "w timeout"])
        run(pending.failAll())
        run(pending.expire(now: 1000))
        #expect(outcomes.lines.count == 3)
    }
}
