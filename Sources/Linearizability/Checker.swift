import RaftCore
/// Checks histories for linearizability against a ``Model``.
///
/// The search is Wing & Gong's algorithm with Lowe's just-in-time linearization and memoization, as in porcupine's
/// `checkSingle`: call and return entries sit in a doubly linked list ordered by time; the search linearizes a call
/// whose model step succeeds (lifting its call and return out of the list), and backtracks when it reaches a return
/// whose call is not yet linearized. A cache of visited (linearized set, model state) pairs prunes repeated work.
///
/// `.fail` operations are dropped. `.info` operations return at +infinity with an unknown output, so they may be
/// linearized anywhere after their invoke; once every completed operation is linearized the search stops, which
/// leaves the rest of the `.info` operations out (they never took effect). `.info` reads are dropped up front.
public enum LinearizabilityChecker {
    /// Checks `history` per partition of `model`. With a `timeout`, returns `.unknown` if the search is not done
    /// in time (unless a partition was already found non-linearizable, which is a definite answer).
    ///
    /// Partitions are searched in rounds with a doubling step budget, so one hard partition cannot hide an easy
    /// failure in another. By default the check stops at the first failing partition (as porcupine does);
    /// `findAllFailures` keeps going until every partition is decided or the timeout passes.
    public static func check<M: Model>(
        _ history: History<M.Input, M.Output>,
        model: M,
        timeout: Duration? = nil,
        findAllFailures: Bool = false
    ) -> CheckResult {
        linearize(history, model: model, timeout: timeout, findAllFailures: findAllFailures).result
    }

    /// Like ``check(_:model:timeout:)``, and also returns, for a linearizable history, one linearization per
    /// partition: operation ids in linearization order. `.info` operations appear only if the search placed them
    /// before every completed operation was linearized; those left out may never have taken effect.
    public static func linearize<M: Model>(
        _ history: History<M.Input, M.Output>,
        model: M,
        timeout: Duration? = nil,
        findAllFailures: Bool = false
    ) -> (result: CheckResult, order: [String: [Int]]) {
        // The built-in models get a specialised search; the generic path is correct but slower.
        if let model = model as? RegisterModel, let history = history as? History<RegisterInput, RegisterOutput> {
            return run(history, model: model, timeout: timeout, findAllFailures: findAllFailures)
        }
        if let model = model as? KVModel, let history = history as? History<KVInput, KVOutput> {
            return run(history, model: model, timeout: timeout, findAllFailures: findAllFailures)
        }
        return run(history, model: model, timeout: timeout, findAllFailures: findAllFailures)
    }

    /// Steps a partition gets in the first round; each round doubles it.
    static let firstRoundBudget = 20_000

    private static func run<M: Model>(
        _ history: History<M.Input, M.Output>,
        model: M,
        timeout: Duration?,
        findAllFailures: Bool
    ) -> (result: CheckResult, order: [String: [Int]]) {
        let clock = ContinuousClock()
        let deadline = timeout.map { clock.now.advanced(by: $0) }

        var partitionNames: [String] = []
        var partitions: [String: [Int]] = [:]
        for (id, operation) in history.operations.enumerated() {
            if operation.isFail { continue }
            if operation.isInfo && model.isReadOnly(operation.input) { continue }
            let name = model.partition(operation.input)
            if partitions[name] == nil { partitionNames.append(name) }
            partitions[name, default: []].append(id)
        }

        var failures: [(position: Int, failure: PartitionFailure)] = []
        var order: [String: [Int]] = [:]
        var searches = partitionNames.map { name in
            PartitionSearch(model: model, operations: (partitions[name] ?? []).map { history.operations[$0] })
        }
        var undecided = Array(searches.indices)
        var budget = firstRoundBudget
        rounds: while !undecided.isEmpty {
            var stillUndecided: [Int] = []
            for position in undecided {
                let name = partitionNames[position]
                let ids = partitions[name] ?? []
                switch searches[position].run(budget: budget, deadline: deadline, clock: clock) {
                case .linearizable(let local):
                    order[name] = local.map { ids[$0] }
                case .notLinearizable(let dead):
                    failures.append((position, witness(name, dead, ids: ids, history: history, model: model)))
                    if !findAllFailures { break rounds }
                case .budgetSpent:
                    stillUndecided.append(position)
                case .timedOut:
                    let found = failures.sorted { $0.position < $1.position }.map(\.failure)
                    if found.isEmpty, let timeout { return (.unknown(timeout: timeout), [:]) }
                    return (.notLinearizable(Witness(failures: found, incomplete: true)), [:])
                }
            }
            undecided = stillUndecided
            budget = budget.multipliedReportingOverflow(by: 2).overflow ? Int.max : budget * 2
        }
        let found = failures.sorted { $0.position < $1.position }.map(\.failure)
        if !found.isEmpty {
            let incomplete = searches.count > order.count + found.count
            return (.notLinearizable(Witness(failures: found, incomplete: incomplete)), [:])
        }
        return (.linearizable, order)
    }

    private static func witness<M: Model>(
        _ name: String,
        _ dead: DeadEnd<M.State>,
        ids: [Int],
        history: History<M.Input, M.Output>,
        model: M
    ) -> PartitionFailure {
        func describe(_ local: Int) -> WitnessOperation {
            let id = ids[local]
            let operation = history.operations[id]
            return WitnessOperation(
                id: id,
                process: operation.process,
                text: model.describe(operation.input, operation.output),
                invokedAt: operation.invokedAt,
                returnedAt: operation.isInfo ? nil : operation.returnedAt
            )
        }
        let notes = model.diagnose(ids.map { (id: $0, operation: history.operations[$0]) })
        return PartitionFailure(
            partition: name,
            longestPrefix: dead.prefix.map(describe),
            stateAfterPrefix: model.describe(state: dead.state),
            blocked: describe(dead.blocked),
            pending: dead.pending.map(describe),
            notes: notes
        )
    }
}

/// Where the deepest search path of a failing partition got stuck (local operation indices).
struct DeadEnd<State> {
    var prefix: [Int]
    var state: State
    var blocked: Int
    var pending: [Int]
}

/// A call or return of one operation, for sorting into the entry list.
private struct TimelineEvent {
    var time: UInt64
    var isReturn: Bool
    var operation: Int
}

/// A cache entry: the set of linearized operations and the model state reached.
private struct CacheKey<State: Hashable>: Hashable {
    var words: [UInt64]
    var zobrist: UInt64
    var state: State

    func hash(into hasher: inout Hasher) {
        hasher.combine(zobrist)
        hasher.combine(state)
    }

    static func == (lhs: Self, rhs: Self) -> Bool {
        lhs.zobrist == rhs.zobrist && lhs.state == rhs.state && lhs.words == rhs.words
    }
}

/// The just-in-time linearization search over one partition.
struct PartitionSearch<M: Model> {
    enum Verdict {
        case linearizable([Int])
        case notLinearizable(DeadEnd<M.State>)
        /// The step budget ran out; call `run` again to resume.
        case budgetSpent
        case timedOut
    }

    private let model: M
    private let inputs: [M.Input]
    private let outputs: [M.Output?]
    private let definite: [Bool]
    /// Linked list over entries; entry 0 is the head sentinel, entries 1... are calls and returns. -1 ends it.
    private var next: [Int32]
    private var prev: [Int32]
    /// The operation of each entry.
    private let operationOf: [Int32]
    /// For a call entry, its return entry; -1 for a return entry.
    private let match: [Int32]
    /// Random per-operation words whose xor over the linearized set is the set's hash.
    private let zobristKeys: [UInt64]

    // Search state, kept between budgeted runs.
    private var remaining: Int
    private var words: [UInt64]
    private var zobrist: UInt64 = 0
    private var cache: Set<CacheKey<M.State>> = []
    private var calls: [(entry: Int, state: M.State)] = []
    private var state: M.State
    private var deepest: DeadEnd<M.State>?
    private var entry: Int

    init(model: M, operations: [HistoryOperation<M.Input, M.Output>]) {
        self.model = model
        inputs = operations.map(\.input)
        outputs = operations.map(\.output)
        definite = operations.map { !$0.isInfo }

        var events: [TimelineEvent] = []
        events.reserveCapacity(operations.count * 2)
        for (index, operation) in operations.enumerated() {
            events.append(TimelineEvent(time: operation.invokedAt, isReturn: false, operation: index))
            let returned = operation.isInfo ? UInt64.max : (operation.returnedAt ?? UInt64.max)
            events.append(TimelineEvent(time: returned, isReturn: true, operation: index))
        }
        // Calls before returns at equal times: operations that touch are concurrent.
        events.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.isReturn != b.isReturn { return !a.isReturn }
            return a.operation < b.operation
        }
        let count = events.count + 1
        var operationOf = [Int32](repeating: -1, count: count)
        var match = [Int32](repeating: -1, count: count)
        var callEntry = [Int32](repeating: -1, count: operations.count)
        for (position, event) in events.enumerated() {
            let entry = Int32(position + 1)
            operationOf[position + 1] = Int32(event.operation)
            if event.isReturn {
                match[Int(callEntry[event.operation])] = entry
            } else {
                callEntry[event.operation] = entry
            }
        }
        self.operationOf = operationOf
        self.match = match
        next = (0..<count).map { $0 + 1 < count ? Int32($0 + 1) : -1 }
        prev = (0..<count).map { Int32($0 - 1) }

        var generator = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)
        zobristKeys = operations.map { _ in generator.next() }
        remaining = definite.reduce(0) { $0 + ($1 ? 1 : 0) }
        words = [UInt64](repeating: 0, count: (operations.count + 63) / 64)
        state = model.initialState
        entry = Int(next[0])
    }

    private mutating func lift(_ entry: Int) {
        let returnEntry = Int(match[entry])
        next[Int(prev[entry])] = next[entry]
        if next[entry] >= 0 { prev[Int(next[entry])] = prev[entry] }
        next[Int(prev[returnEntry])] = next[returnEntry]
        if next[returnEntry] >= 0 { prev[Int(next[returnEntry])] = prev[returnEntry] }
    }

    private mutating func unlift(_ entry: Int) {
        let returnEntry = Int(match[entry])
        next[Int(prev[returnEntry])] = Int32(returnEntry)
        if next[returnEntry] >= 0 { prev[Int(next[returnEntry])] = Int32(returnEntry) }
        next[Int(prev[entry])] = Int32(entry)
        if next[entry] >= 0 { prev[Int(next[entry])] = Int32(entry) }
    }

    /// Runs the search for at most `budget` steps; checks the deadline every few thousand steps.
    mutating func run(budget: Int, deadline: ContinuousClock.Instant?, clock: ContinuousClock) -> Verdict {
        // The hot loop works on locals; they go back into `self` when the budget or the deadline stops it.
        var remaining = self.remaining
        var words = self.words
        var zobrist = self.zobrist
        var cache = self.cache
        var calls = self.calls
        var state = self.state
        var deepest = self.deepest
        var entry = self.entry
        self.words = []
        self.cache = []
        self.calls = []
        defer {
            self.remaining = remaining
            self.words = words
            self.zobrist = zobrist
            self.cache = cache
            self.calls = calls
            self.state = state
            self.deepest = deepest
            self.entry = entry
        }
        var steps = 0

        while remaining > 0 {
            steps &+= 1
            if steps & 0xFFF == 0 {
                if let deadline, clock.now >= deadline { return .timedOut }
                if steps >= budget { return .budgetSpent }
            }
            let returnEntry = match[entry]
            if returnEntry >= 0 {
                let operation = Int(operationOf[entry])
                if let newState = model.step(state, inputs[operation], outputs[operation]) {
                    let (word, bit) = (operation >> 6, UInt64(1) << UInt64(operation & 63))
                    words[word] |= bit
                    let key = CacheKey(words: words, zobrist: zobrist ^ zobristKeys[operation], state: newState)
                    if cache.insert(key).inserted {
                        zobrist ^= zobristKeys[operation]
                        calls.append((entry, state))
                        state = newState
                        if definite[operation] { remaining -= 1 }
                        lift(entry)
                        entry = Int(next[0])
                        continue
                    }
                    words[word] &= ~bit
                }
                entry = Int(next[entry])
            } else {
                // A return whose call is not linearized: the prefix cannot be extended past it.
                if calls.count > deepest?.prefix.count ?? -1 {
                    deepest = deadEnd(at: entry, calls: calls, state: state)
                }
                guard let top = calls.popLast() else {
                    return .notLinearizable(deepest ?? deadEnd(at: entry, calls: calls, state: state))
                }
                let operation = Int(operationOf[top.entry])
                words[operation >> 6] &= ~(UInt64(1) << UInt64(operation & 63))
                zobrist ^= zobristKeys[operation]
                state = top.state
                if definite[operation] { remaining += 1 }
                unlift(top.entry)
                entry = Int(next[top.entry])
            }
        }
        return .linearizable(calls.map { Int(operationOf[$0.entry]) })
    }

    /// The current path, the blocked return and the calls still in the list before it.
    private func deadEnd(at entry: Int, calls: [(entry: Int, state: M.State)], state: M.State) -> DeadEnd<M.State> {
        var pending: [Int] = []
        var cursor = Int(next[0])
        while cursor != entry && cursor >= 0 {
            if match[cursor] >= 0 { pending.append(Int(operationOf[cursor])) }
            cursor = Int(next[cursor])
        }
        return DeadEnd(
            prefix: calls.map { Int(operationOf[$0.entry]) },
            state: state,
            blocked: Int(operationOf[entry]),
            pending: pending
        )
    }
}
