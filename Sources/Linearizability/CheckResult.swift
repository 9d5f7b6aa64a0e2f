/// The verdict of a linearizability check.
public enum CheckResult: Sendable, CustomStringConvertible {
    /// Some total order of the operations respects real time and the model.
    case linearizable
    /// At least one partition has no such order; the witness names the operations.
    case notLinearizable(Witness)
    /// The search did not finish within the timeout (given here); no partition was found non-linearizable.
    case unknown(timeout: Duration)

    /// `true` only for `.linearizable`.
    public var isLinearizable: Bool {
        if case .linearizable = self { return true }
        return false
    }

    /// The witness of a `.notLinearizable` result.
    public var witness: Witness? {
        if case .notLinearizable(let witness) = self { return witness }
        return nil
    }

    /// One line for the verdict, then the witness if any.
    public var description: String {
        switch self {
        case .linearizable: "linearizable"
        case .notLinearizable(let witness): "not linearizable\n" + witness.description
        case .unknown(let timeout): "unknown (timed out after \(timeout))"
        }
    }
}

/// An operation as printed in a witness.
public struct WitnessOperation: Sendable, Hashable, CustomStringConvertible {
    /// The operation's position in ``History/operations``.
    public var id: Int
    /// The client that issued it.
    public var process: Int
    /// The model's rendering of input and output (`?` for an unknown output).
    public var text: String
    /// Invoke time.
    public var invokedAt: UInt64
    /// Return time; `nil` for an `.info` operation.
    public var returnedAt: UInt64?

    /// E.g. `#12 p3 cas(1→2) → true [40, 47]`.
    public var description: String {
        "#\(id) p\(process) \(text) [\(invokedAt), \(returnedAt.map(String.init) ?? "∞")]"
    }
}

/// Why one partition (one key) is not linearizable.
public struct PartitionFailure: Sendable, CustomStringConvertible {
    /// The partition (the key, or `register`).
    public var partition: String
    /// The longest linearizable prefix found, in linearization order.
    public var longestPrefix: [WitnessOperation]
    /// The model state after that prefix, as text.
    public var stateAfterPrefix: String
    /// The operation whose return came before it could be linearized after that prefix.
    public var blocked: WitnessOperation
    /// Operations invoked but not linearized at that point (the candidates the search tried), `blocked` included.
    public var pending: [WitnessOperation]
    /// Model diagnostics, e.g. a read of a value never written.
    public var notes: [String]

    /// How many prefix operations ``description`` prints (the last ones).
    public static let printedPrefixLength = 12

    /// A few lines: the key, the tail of the prefix, the state and the operation that could not be linearized.
    public var description: String {
        var lines = ["key \(partition): no linearization; longest prefix has \(longestPrefix.count) operation(s)"]
        let shown = longestPrefix.suffix(Self.printedPrefixLength)
        if shown.count < longestPrefix.count {
            lines.append("  … \(longestPrefix.count - shown.count) earlier operation(s)")
        }
        lines += shown.map { "  \($0)" }
        lines.append("  state after prefix: \(stateAfterPrefix)")
        lines.append("  cannot linearize: \(blocked)")
        let others = pending.filter { $0.id != blocked.id }
        if !others.isEmpty {
            lines.append("  also pending: " + others.map(\.description).joined(separator: "; "))
        }
        lines += notes.map { "  note: \($0)" }
        return lines.joined(separator: "\n")
    }
}

/// The evidence for a `.notLinearizable` verdict: one entry per failing partition.
public struct Witness: Sendable, CustomStringConvertible {
    /// The failing partitions, in the order they were checked.
    public var failures: [PartitionFailure]
    /// `true` if some partitions were left undecided (stopped at the first failure, or at the timeout).
    public var incomplete: Bool

    /// Every operation id the witness names (prefixes, blocked and pending operations).
    public var operationIDs: Set<Int> {
        var ids: Set<Int> = []
        for failure in failures {
            ids.formUnion(failure.longestPrefix.map(\.id))
            ids.formUnion(failure.pending.map(\.id))
            ids.insert(failure.blocked.id)
        }
        return ids
    }

    /// The failures, one block per key.
    public var description: String {
        var text = failures.map(\.description).joined(separator: "\n")
        if incomplete { text += "\n(other keys not fully checked)" }
        return text
    }
}
