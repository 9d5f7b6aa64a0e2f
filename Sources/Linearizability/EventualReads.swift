/// A weaker check for reads served by any node without a quorum round trip ("eventual" reads).
///
/// Such reads need not be linearizable, but a correct store still guarantees two things, checked here:
///
/// 1. **Written values only.** A read returns the key's initial value or a value some write (`.ok` or `.info`)
///    put there.
/// 2. **Monotonic per node.** A node never goes back in time: on each key, a read returns a value no older than
///    the value that node returned earlier, "older" meaning earlier in the write order.
///
/// The write order comes from a *rank* per write: the Raft log index the server returned (``writesByIndex(_:)``),
/// or the position in a linearization of the linearizable writes (``writesByLinearization(_:order:)``). A write
/// with no known rank (say an `.info` write) still counts for rule 1, and a value that has one is never judged older
/// by rule 2 (that write may have landed last). Values may repeat; a read is stale only if every write of its value
/// ranks below every write of the value read before.
///
/// When reads carry the applied index they were served at, that index must not decrease per node either.
/// Appends are not supported (their values are concatenations); use puts, deletes and compare-and-swaps.
public enum EventualReads {
    /// A write as the eventual-read check sees it.
    public struct Write: Sendable, Hashable {
        /// The key written.
        public var key: String
        /// The value after the write; `nil` for a delete.
        public var value: String?
        /// Position in the commit order (log index or linearization position), if known.
        public var rank: UInt64?

        /// Creates a write.
        public init(key: String, value: String?, rank: UInt64?) {
            self.key = key
            self.value = value
            self.rank = rank
        }
    }

    /// One eventual read, in the order the node served it.
    public struct Read: Sendable, Hashable {
        /// The node that served the read.
        public var node: String
        /// The key read.
        public var key: String
        /// The value returned; `nil` if absent.
        public var value: String?
        /// The applied index the node reported, if any.
        public var index: UInt64?
        /// An identifier to report (e.g. the history operation id).
        public var id: Int

        /// Creates a read.
        public init(node: String, key: String, value: String?, index: UInt64? = nil, id: Int) {
            self.node = node
            self.key = key
            self.value = value
            self.index = index
            self.id = id
        }
    }

    /// A broken guarantee.
    public enum Violation: Sendable, Hashable, CustomStringConvertible {
        /// The read returned a value no write produced.
        case neverWritten(Read)
        /// The read returned a value older than what the same node returned earlier for the key.
        case wentBackwards(Read, earlier: Read)
        /// The read's applied index is lower than an earlier read's on the same node.
        case indexWentBackwards(Read, earlier: Read)

        /// The read that broke the guarantee.
        public var read: Read {
            switch self {
            case .neverWritten(let read), .wentBackwards(let read, _), .indexWentBackwards(let read, _): read
            }
        }

        /// One line naming the reads involved.
        public var description: String {
            func show(_ read: Read) -> String {
                "#\(read.id) \(read.node) get(\(read.key)) → \(read.value.map { "\"\($0)\"" } ?? "nil")"
                    + (read.index.map { " @\($0)" } ?? "")
            }
            switch self {
            case .neverWritten(let read):
                return "\(show(read)): value never written"
            case .wentBackwards(let read, let earlier):
                return "\(show(read)): older than the node's earlier read \(show(earlier))"
            case .indexWentBackwards(let read, let earlier):
                return "\(show(read)): applied index went back from \(show(earlier))"
            }
        }
    }

    /// Checks `reads` (each node's reads in the order it served them; nodes may interleave) against `writes`.
    /// `initialValue` is what a never-written key reads as; it ranks before every write.
    public static func check(reads: [Read], writes: [Write], initialValue: String? = nil) -> [Violation] {
        struct Ranks {
            var written = false
            /// Some write of this value has no rank (an `.info` write): it may have landed at any position.
            var unranked = false
            var lowest: UInt64?
            var highest: UInt64?

            mutating func add(_ rank: UInt64?) {
                written = true
                guard let rank else {
                    unranked = true
                    return
                }
                lowest = min(lowest ?? rank, rank)
                highest = max(highest ?? rank, rank)
            }
        }
        struct Slot: Hashable {
            var key: String
            var value: String?
        }
        var ranks: [Slot: Ranks] = [:]
        for write in writes {
            ranks[Slot(key: write.key, value: write.value), default: Ranks()].add(write.rank)
        }

        var violations: [Violation] = []
        var lastByNodeKey: [String: [String: Read]] = [:]
        var lastIndexed: [String: Read] = [:]
        for read in reads {
            if let index = read.index {
                if let earlier = lastIndexed[read.node], let earlierIndex = earlier.index, index < earlierIndex {
                    violations.append(.indexWentBackwards(read, earlier: earlier))
                }
                lastIndexed[read.node] = read
            }
            var current = ranks[Slot(key: read.key, value: read.value)] ?? Ranks()
            if read.value == initialValue { current.add(0) }
            guard current.written else {
                violations.append(.neverWritten(read))
                continue
            }
            if let earlier = lastByNodeKey[read.node]?[read.key] {
                var previous = ranks[Slot(key: earlier.key, value: earlier.value)] ?? Ranks()
                if earlier.value == initialValue { previous.add(0) }
                // A value with an unranked write may be the newest there is: it cannot be shown to be older.
                if !current.unranked, let newest = current.highest, let oldest = previous.lowest, newest < oldest {
                    violations.append(.wentBackwards(read, earlier: earlier))
                    continue
                }
            }
            lastByNodeKey[read.node, default: [:]][read.key] = read
        }
        return violations
    }

    /// The writes of a key-value history (puts, deletes, compare-and-swaps that swapped or may have), ranked by the
    /// log index recorded on `.ok` operations; `.info` writes and writes without an index get no rank.
    public static func writesByIndex(_ history: History<KVInput, KVOutput>) -> [Write] {
        history.operations.compactMap { operation in
            write(operation).map { Write(key: $0.key, value: $0.value, rank: operation.index) }
        }
    }

    /// The writes of a key-value history ranked by their position in `order` (from
    /// ``LinearizabilityChecker/linearize(_:model:timeout:)``); writes absent from the order get no rank.
    public static func writesByLinearization(_ history: History<KVInput, KVOutput>, order: [String: [Int]]) -> [Write] {
        var rankOf: [Int: UInt64] = [:]
        for ids in order.values {
            for (position, id) in ids.enumerated() { rankOf[id] = UInt64(position + 1) }
        }
        return history.operations.enumerated().compactMap { id, operation in
            write(operation).map { Write(key: $0.key, value: $0.value, rank: rankOf[id]) }
        }
    }

    /// The key and resulting value of a write that may have taken effect, `nil` for anything else.
    private static func write(_ operation: HistoryOperation<KVInput, KVOutput>) -> (key: String, value: String?)? {
        if operation.isFail { return nil }
        switch (operation.input, operation.output) {
        case (.put(let key, let value), _): return (key, value)
        case (.delete(let key), _): return (key, nil)
        case (.cas(let key, _, let new), .swapped(true)?), (.cas(let key, _, let new), nil): return (key, new)
        default: return nil
        }
    }
}
