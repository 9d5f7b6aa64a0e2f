/// An operation on a single integer register (Jepsen's etcd register).
public enum RegisterInput: Sendable, Hashable {
    /// Reads the current value.
    case read
    /// Sets the value.
    case write(Int)
    /// Sets the value to `new` if it is `expected`.
    case cas(expected: Int, new: Int)
}

/// The result of a register operation.
public enum RegisterOutput: Sendable, Hashable {
    /// A read's result; `nil` when the register was never written.
    case value(Int?)
    /// A write completed.
    case done
    /// A compare-and-swap's result: `true` if it swapped.
    case swapped(Bool)
}

/// A read/write/compare-and-swap register that starts empty (`nil`), one partition.
public struct RegisterModel: Model {
    /// Creates the model.
    public init() {}

    /// The register is empty until written.
    public var initialState: Int? { nil }

    /// A single register: one partition.
    public func partition(_ input: RegisterInput) -> String { "register" }

    /// Register semantics; see ``Model/step(_:_:_:)``.
    public func step(_ state: Int?, _ input: RegisterInput, _ output: RegisterOutput?) -> Int?? {
        switch (input, output) {
        case (.read, nil):
            return .some(state)
        case (.read, .value(let value)?):
            return value == state ? .some(state) : nil
        case (.write(let value), nil), (.write(let value), .done?):
            return .some(value)
        case (.cas(let expected, let new), nil):
            return .some(state == expected ? new : state)
        case (.cas(let expected, let new), .swapped(let swapped)?):
            if swapped { return state == expected ? .some(new) : nil }
            return state == expected ? nil : .some(state)
        default:
            return nil
        }
    }

    /// Reads change nothing.
    public func isReadOnly(_ input: RegisterInput) -> Bool {
        if case .read = input { return true }
        return false
    }

    /// E.g. `read → 3`, `write(4)`, `cas(1→2) → false`.
    public func describe(_ input: RegisterInput, _ output: RegisterOutput?) -> String {
        let call: String
        switch input {
        case .read: call = "read"
        case .write(let value): call = "write(\(value))"
        case .cas(let expected, let new): call = "cas(\(expected)→\(new))"
        }
        switch output {
        case nil: return call + " → ?"
        case .value(let value)?: return call + " → " + (value.map(String.init) ?? "nil")
        case .done?: return call
        case .swapped(let swapped)?: return call + " → \(swapped)"
        }
    }

    /// The value, or `nil` for the empty register.
    public func describe(state: Int?) -> String {
        state.map(String.init) ?? "nil"
    }

    /// Flags reads of a value that no write or compare-and-swap (ok or info) could have produced.
    public func diagnose(
        _ operations: [(id: Int, operation: HistoryOperation<RegisterInput, RegisterOutput>)]
    ) -> [String] {
        var written: Set<Int?> = [nil]
        for (_, operation) in operations where !operation.isFail {
            switch (operation.input, operation.output) {
            case (.write(let value), _): written.insert(value)
            case (.cas(_, let new), .swapped(true)?), (.cas(_, let new), nil): written.insert(new)
            default: break
            }
        }
        var notes: [String] = []
        for (id, operation) in operations {
            if case .value(let value)? = operation.output, !written.contains(value) {
                notes.append("#\(id) read \(value.map(String.init) ?? "nil"), a value never written")
            }
        }
        return notes
    }
}
