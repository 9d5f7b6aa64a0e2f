/// A sequential specification: what a single copy of the object would do, one operation at a time.
///
/// The checker asks the model whether an operation, applied to a state, could have returned the recorded output,
/// and which state follows. Models here are deterministic: one successor state per step.
public protocol Model: Sendable {
    /// The operation's arguments.
    associatedtype Input: Sendable
    /// The operation's result.
    associatedtype Output: Sendable
    /// The object's state; hashed into the checker's cache, so keep it small.
    associatedtype State: Hashable

    /// The state before any operation.
    var initialState: State { get }

    /// The partition an operation belongs to (P-compositionality: a history is linearizable iff each partition is).
    /// Return the same string for every input when the object cannot be split.
    func partition(_ input: Input) -> String

    /// Applies `input` to `state`. `output` is the recorded result, or `nil` when unknown (`.info`), in which case
    /// any result is acceptable. Returns the next state, or `nil` if the output is impossible from `state`.
    func step(_ state: State, _ input: Input, _ output: Output?) -> State?

    /// `true` if the operation never changes the state; such `.info` operations are dropped before the search.
    func isReadOnly(_ input: Input) -> Bool

    /// A short human-readable rendering, e.g. `cas(1→2) → true`; `output` is `nil` for an unknown outcome.
    func describe(_ input: Input, _ output: Output?) -> String

    /// The state as printed in a witness.
    func describe(state: State) -> String

    /// Notes about impossible outputs found without search (e.g. a read of a value never written), for the
    /// witness of a failing partition. `operations` are the partition's operations with their history ids.
    func diagnose(_ operations: [(id: Int, operation: HistoryOperation<Input, Output>)]) -> [String]
}

extension Model {
    /// Default: `String(describing:)`.
    public func describe(state: State) -> String {
        String(describing: state)
    }

    /// Default: no note.
    public func diagnose(_ operations: [(id: Int, operation: HistoryOperation<Input, Output>)]) -> [String] {
        []
    }
}
