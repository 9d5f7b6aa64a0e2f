import SystemClock
import Foundation

/// How an operation ended, as the client saw it.
public enum Outcome<Output: Sendable>: Sendable {
    /// The operation completed and returned `Output`: it took effect exactly once, between its invoke and return.
    case ok(Output)
    /// The operation certainly did not take effect. The checker drops it.
    case fail
    /// The outcome is unknown (timeout, crash, lost connection): the operation may take effect at any time after
    /// its invoke, or never. The checker treats it as returning at +infinity with an unknown output.
    case info
}

/// One client operation: an invoke and its completion, on one monotonic clock shared by the whole history.
public struct HistoryOperation<Input: Sendable, Output: Sendable>: Sendable {
    /// The client (Jepsen "process") that issued the operation; used for printing only.
    public var process: Int
    /// What the client asked for.
    public var input: Input
    /// How it ended.
    public var outcome: Outcome<Output>
    /// When the invoke happened.
    public var invokedAt: UInt64
    /// When the completion was received; `nil` for `.info` operations (treated as +infinity).
    public var returnedAt: UInt64?
    /// The Raft log index the server reported for the operation, if the history records it (writes: the entry's
    /// index; reads: the applied index the read was served at). Used only by ``EventualReads``.
    public var index: UInt64?

    /// Creates an operation. A `.info` operation's `returnedAt` is ignored by the checker.
    public init(
        process: Int,
        input: Input,
        outcome: Outcome<Output>,
        invokedAt: UInt64,
        returnedAt: UInt64?,
        index: UInt64? = nil
    ) {
        self.process = process
        self.input = input
        self.outcome = outcome
        self.invokedAt = invokedAt
        self.returnedAt = returnedAt
        self.index = index
    }

    /// The output if the operation completed `.ok`, `nil` otherwise.
    public var output: Output? {
        if case .ok(let output) = outcome { return output }
        return nil
    }

    /// `true` for `.info` operations.
    public var isInfo: Bool {
        if case .info = outcome { return true }
        return false
    }

    /// `true` for `.fail` operations.
    public var isFail: Bool {
        if case .fail = outcome { return true }
        return false
    }
}

/// A history: the operations of one test run. Order does not matter; the timestamps do.
public struct History<Input: Sendable, Output: Sendable>: Sendable {
    /// The operations; an operation's position in this array is its id in witnesses (`#id`).
    public var operations: [HistoryOperation<Input, Output>]

    /// Creates a history from already-matched operations.
    public init(_ operations: [HistoryOperation<Input, Output>] = []) {
        self.operations = operations
    }
}

/// Records a history from concurrent clients, stamping each event with a strictly increasing monotonic clock.
///
/// Use `invoke` before sending a request and exactly one of `ok`, `fail` or `info` after. An operation never
/// completed when `history()` is called is reported as `.info`.
// @unchecked Sendable: every mutable property is read and written under `lock`.
public final class HistoryRecorder<Input: Sendable, Output: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var operations: [HistoryOperation<Input, Output>] = []
    private var completed: [Bool] = []
    private var lastStamp: UInt64 = 0

    /// Creates an empty recorder.
    public init() {}

    /// A strictly increasing timestamp (monotonic nanoseconds, bumped by one on ties). Caller holds the lock.
    private func stamp() -> UInt64 {
        let now = MonotonicClock.nanoseconds()
        lastStamp = max(now, lastStamp + 1)
        return lastStamp
    }

    /// Records an invoke and returns the operation's id, to pass to the completion call.
    public func invoke(process: Int, _ input: Input) -> Int {
        lock.lock()
        defer { lock.unlock() }
        let time = stamp()
        operations.append(
            HistoryOperation(process: process, input: input, outcome: .info, invokedAt: time, returnedAt: nil)
        )
        completed.append(false)
        return operations.count - 1
    }

    /// Records a successful completion; `index` is the log index the server returned, if any.
    public func ok(_ id: Int, _ output: Output, index: UInt64? = nil) {
        complete(id, .ok(output), index: index)
    }

    /// Records a completion that certainly did not take effect.
    public func fail(_ id: Int) {
        complete(id, .fail, index: nil)
    }

    /// Records a completion with an unknown outcome.
    public func info(_ id: Int) {
        complete(id, .info, index: nil)
    }

    private func complete(_ id: Int, _ outcome: Outcome<Output>, index: UInt64?) {
        lock.lock()
        defer { lock.unlock() }
        precondition(operations.indices.contains(id) && !completed[id], "operation \(id) unknown or completed twice")
        completed[id] = true
        operations[id].outcome = outcome
        operations[id].index = index
        if case .info = outcome {
            operations[id].returnedAt = nil
        } else {
            operations[id].returnedAt = stamp()
        }
    }

    /// A snapshot of the history so far; operations still in flight appear as `.info`.
    public func history() -> History<Input, Output> {
        lock.lock()
        defer { lock.unlock() }
        return History(operations)
    }
}
