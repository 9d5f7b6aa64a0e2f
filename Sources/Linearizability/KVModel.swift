/// An operation on one key of a string key-value map.
public enum KVInput: Sendable, Hashable {
    /// Reads the key.
    case get(key: String)
    /// Sets the key.
    case put(key: String, value: String)
    /// Appends to the key's value (an absent key counts as `""`).
    case append(key: String, value: String)
    /// Removes the key.
    case delete(key: String)
    /// Sets the key to `new` if it holds `expected` (`nil`: if it is absent).
    case cas(key: String, expected: String?, new: String)

    /// The key the operation touches.
    public var key: String {
        switch self {
        case .get(let key), .put(let key, _), .append(let key, _), .delete(let key), .cas(let key, _, _): key
        }
    }
}

/// The result of a key-value operation.
public enum KVOutput: Sendable, Hashable {
    /// A get's result; `nil` when the key is absent.
    case value(String?)
    /// A put, append or delete completed.
    case done
    /// A compare-and-swap's result: `true` if it swapped.
    case swapped(Bool)
}

/// A key-value map with get/put/append/delete/compare-and-swap, checked one key at a time.
///
/// The state is the key's value. `initialValue` is what a never-written key holds: `nil` (absent) for this store,
/// `""` for porcupine's kv histories, whose gets of a missing key return the empty string.
public struct KVModel: Model {
    /// The value of a key nobody wrote.
    public var initialValue: String?

    /// Creates the model; `initialValue` is what an unwritten key reads as.
    public init(initialValue: String? = nil) {
        self.initialValue = initialValue
    }

    /// The value of a never-written key.
    public var initialState: String? { initialValue }

    /// One partition per key.
    public func partition(_ input: KVInput) -> String { input.key }

    /// Map semantics for one key; see ``Model/step(_:_:_:)``.
    public func step(_ state: String?, _ input: KVInput, _ output: KVOutput?) -> String?? {
        switch (input, output) {
        case (.get, nil):
            return .some(state)
        case (.get, .value(let value)?):
            return value == state ? .some(state) : nil
        case (.put(_, let value), nil), (.put(_, let value), .done?):
            return .some(value)
        case (.append(_, let value), nil), (.append(_, let value), .done?):
            return .some((state ?? "") + value)
        case (.delete, nil), (.delete, .done?):
            return .some(nil)
        case (.cas(_, let expected, let new), nil):
            return .some(state == expected ? new : state)
        case (.cas(_, let expected, let new), .swapped(let swapped)?):
            if swapped { return state == expected ? .some(new) : nil }
            return state == expected ? nil : .some(state)
        default:
            return nil
        }
    }

    /// Gets change nothing.
    public func isReadOnly(_ input: KVInput) -> Bool {
        if case .get = input { return true }
        return false
    }

    /// E.g. `get(k) → "v"`, `append(k, "x")`, `cas(k, nil→"a") → true`.
    public func describe(_ input: KVInput, _ output: KVOutput?) -> String {
        func quoted(_ value: String?) -> String { value.map { "\"\($0)\"" } ?? "nil" }
        let call: String
        switch input {
        case .get(let key): call = "get(\(key))"
        case .put(let key, let value): call = "put(\(key), \(quoted(value)))"
        case .append(let key, let value): call = "append(\(key), \(quoted(value)))"
        case .delete(let key): call = "delete(\(key))"
        case .cas(let key, let expected, let new): call = "cas(\(key), \(quoted(expected))→\(quoted(new)))"
        }
        switch output {
        case nil: return call + " → ?"
        case .value(let value)?: return call + " → " + quoted(value)
        case .done?: return call
        case .swapped(let swapped)?: return call + " → \(swapped)"
        }
    }

    /// The quoted value, or `nil` for an absent key.
    public func describe(state: String?) -> String {
        state.map { "\"\($0)\"" } ?? "nil"
    }

    /// Flags gets of a value never written, on keys without appends (an append makes new values by concatenation).
    public func diagnose(_ operations: [(id: Int, operation: HistoryOperation<KVInput, KVOutput>)]) -> [String] {
        var written: Set<String?> = [initialValue]
        for (_, operation) in operations where !operation.isFail {
            switch (operation.input, operation.output) {
            case (.append, _): return []
            case (.put(_, let value), _): written.insert(value)
            case (.delete, _): written.insert(nil)
            case (.cas(_, _, let new), .swapped(true)?), (.cas(_, _, let new), nil): written.insert(new)
            default: break
            }
        }
        var notes: [String] = []
        for (id, operation) in operations {
            if case .value(let value)? = operation.output, !written.contains(value) {
                notes.append("#\(id) \(describe(operation.input, operation.output)): a value never written")
            }
        }
        return notes
    }
}
