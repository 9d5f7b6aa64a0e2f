import ClusterAPI
import KVStore
import RaftCore

/// Everything a node has promised an answer to and not answered yet, with its deadline: proposed writes (answered
/// when their index is applied, by term), ReadIndex reads (answered when confirmed), actions waiting for an index to be
/// applied, and leadership transfers. A value confined to the Raft loop; the callbacks complete client promises.
///
/// Deadlines are monotonic milliseconds. Nothing here reads a clock: the caller passes `now`.
///
/// No method runs a callback: each returns the answers to give (`Answers`), which the caller runs once the mutation
/// is over. A callback may well come back here (a confirmed read waits for its index to be applied), and Swift's
/// exclusivity rule forbids that during a mutating call.
struct PendingRequests {
    /// Callbacks to run, in order, after the call that returned them.
    typealias Answers = [() -> Void]

    struct Write {
        var term: Term
        var deadline: UInt64
        var done: (Result<(LogIndex, KVResult), APIError>) -> Void
    }

    private(set) var writes: [LogIndex: Write] = [:]
    /// Write deadlines in proposal order (deadlines are `now + timeout`: nearly sorted), consumed from `head`.
    private var writeDeadlines: [(deadline: UInt64, index: LogIndex)] = []
    private var head = 0
    private var reads: [UInt64: (deadline: UInt64, done: (Result<LogIndex, APIError>) -> Void)] = [:]
    private var nextReadID: UInt64 = 0
    private var applyWaiters: [(index: LogIndex, done: () -> Void)] = []
    private var transfers: [(target: NodeID, deadline: UInt64, done: (Result<MembershipChangeResponse, APIError>) -> Void)] = []

    var writeCount: Int { writes.count }
    var readCount: Int { reads.count }
    var transferCount: Int { transfers.count }
    var applyWaiterCount: Int { applyWaiters.count }

    // MARK: Writes

    /// Waits for the entry proposed at `index` in `term`.
    mutating func addWrite(
        index: LogIndex, term: Term, deadline: UInt64, done: @escaping (Result<(LogIndex, KVResult), APIError>) -> Void
    ) -> Answers {
        writeDeadlines.append((deadline, index))
        // A write still waiting at this index was in an entry this node, now leading, no longer has: it never commits.
        guard let displaced = writes.updateValue(Write(term: term, deadline: deadline, done: done), forKey: index) else {
            return []
        }
        return [{ displaced.done(.failure(Self.notApplied)) }]
    }

    static let notApplied = APIError(
        code: .unavailable, message: "leadership changed before the write committed; it was not applied")

    /// One answer to give: the stored callback and what to tell it (no closure is made per answer: these run for
    /// every write and every ReadIndex read).
    struct Answer<Value> {
        let done: (Result<Value, APIError>) -> Void
        let result: Result<Value, APIError>
        func callAsFunction() { done(result) }
    }

    /// The answer to the write waiting at `index`, if any, now that `entryTerm`'s entry is applied there with
    /// `result`: success when it is the proposed entry, `503` when another leader's entry took the index (ours was
    /// never committed and never will be). `succeeded`: a write was answered with success.
    mutating func applied(index: LogIndex, entryTerm: Term, result: KVResult)
        -> (succeeded: Bool, answer: Answer<(LogIndex, KVResult)>?)
    {
        guard let write = writes.removeValue(forKey: index) else { return (false, nil) }
        guard entryTerm == write.term else { return (false, Answer(done: write.done, result: .failure(Self.notApplied))) }
        return (true, Answer(done: write.done, result: .success((index, result))))
    }

    // MARK: Reads

    /// A new id for a ReadIndex request.
    mutating func nextRead() -> UInt64 {
        nextReadID += 1
        return nextReadID
    }

    mutating func addRead(id: UInt64, deadline: UInt64, done: @escaping (Result<LogIndex, APIError>) -> Void) {
        reads[id] = (deadline, done)
    }

    /// Read `id` is confirmed at `index` (serve it once `index` is applied).
    mutating func readConfirmed(id: UInt64, index: LogIndex) -> Answer<LogIndex>? {
        reads.removeValue(forKey: id).map { Answer(done: $0.done, result: .success(index)) }
    }

    mutating func readFailed(id: UInt64, _ error: APIError) -> Answer<LogIndex>? {
        reads.removeValue(forKey: id).map { Answer(done: $0.done, result: .failure(error)) }
    }

    // MARK: Apply waiters

    /// Keeps `action` until `index` is applied.
    mutating func addApplyWaiter(_ index: LogIndex, _ action: @escaping () -> Void) {
        applyWaiters.append((index, action))
    }

    /// The actions waiting for an index up to `applied`, in the order they were added.
    mutating func applyWaiters(upTo applied: LogIndex) -> Answers {
        guard !applyWaiters.isEmpty else { return [] }
        var ready: Answers = []
        var remaining: [(index: LogIndex, done: () -> Void)] = []
        for waiter in applyWaiters {
            if waiter.index <= applied { ready.append(waiter.done) } else { remaining.append(waiter) }
        }
        applyWaiters = remaining
        return ready
    }

    // MARK: Transfers

    mutating func addTransfer(
        to target: NodeID, deadline: UInt64, done: @escaping (Result<MembershipChangeResponse, APIError>) -> Void
    ) {
        transfers.append((target, deadline, done))
    }

    /// The answers to the transfers whose target now leads (at `commitIndex`) and to those past their deadline.
    mutating func completeTransfers(leader: NodeID?, commitIndex: LogIndex, now: UInt64) -> Answers {
        guard !transfers.isEmpty else { return [] }
        var answers: Answers = []
        transfers.removeAll { waiter in
            if leader == waiter.target {
                answers.append { waiter.done(.success(MembershipChangeResponse(nodeID: waiter.target, index: commitIndex))) }
                return true
            }
            if now >= waiter.deadline {
                answers.append {
                    waiter.done(.failure(APIError(code: .timeout, message: "node \(waiter.target) did not take over in time")))
                }
                return true
            }
            return false
        }
        return answers
    }

    // MARK: Deadlines

    /// The failures of every write and read whose deadline is at or before `now` (`504`: a write's outcome is
    /// unknown).
    mutating func expire(now: UInt64) -> Answers {
        var answers: Answers = []
        while head < writeDeadlines.count, writeDeadlines[head].deadline <= now {
            let index = writeDeadlines[head].index
            head += 1
            // A newer write at the same index (proposed after a leader change) keeps its own deadline.
            if let write = writes[index], write.deadline <= now {
                writes[index] = nil
                answers.append {
                    write.done(.failure(APIError(code: .timeout, message: "no answer within the request timeout; the write at index \(index) may or may not be applied")))
                }
            }
        }
        if head > 1024 && head * 2 > writeDeadlines.count {
            writeDeadlines.removeFirst(head)
            head = 0
        }
        if !reads.isEmpty {
            for (id, waiter) in reads where waiter.deadline <= now {
                reads[id] = nil
                answers.append { waiter.done(.failure(APIError(code: .timeout, message: "leadership could not be confirmed in time"))) }
            }
        }
        return answers
    }

    /// The failures of everything still pending (shutdown), which is forgotten.
    mutating func failAll() -> Answers {
        let shuttingDown = APIError(code: .unavailable, message: "the node is shutting down")
        var answers: Answers = writes.values.map { write in
            { write.done(.failure(APIError(code: .timeout, message: "the node is shutting down; the write may or may not be applied"))) }
        }
        answers += reads.values.map { waiter in { waiter.done(.failure(shuttingDown)) } }
        answers += transfers.map { waiter in { waiter.done(.failure(shuttingDown)) } }
        writes.removeAll()
        reads.removeAll()
        transfers.removeAll()
        applyWaiters.removeAll()
        return answers
    }
}
