import RaftCore

/// Raft's safety properties, one checker each, run by the simulator after every step. Each cites the paper
/// (Ongaro & Ousterhout, "In Search of an Understandable Consensus Algorithm", 2014, Figure 3).
public struct InvariantCheckers {
    public var electionSafety = ElectionSafety()
    public var logMatching = LogMatching()
    public var leaderCompleteness = LeaderCompleteness()
    public var stateMachineSafety = StateMachineSafety()
    public var readSafety = ReadSafety()

    public init() {}

    mutating func checkStep(nodes: [NodeID: SimNode], failure: inout (property: String, detail: String)?) {
        for id in nodes.keys.sorted() {
            guard let node = nodes[id], node.isUp else { continue }
            node.core.checkInvariants()
            if let problem = electionSafety.observe(node.core) {
                failure = ("election safety (Raft §5.2)", problem)
                return
            }
            if let problem = logMatching.observe(node.core) {
                failure = ("log matching (Raft §5.3)", problem)
                return
            }
            if let problem = leaderCompleteness.observeCommit(node.core) {
                failure = ("leader completeness (Raft §5.4): committed entries never change", problem)
                return
            }
        }
        for id in nodes.keys.sorted() {
            guard let node = nodes[id], node.isUp, node.core.role == .leader else { continue }
            // A leader's log must hold every entry committed in an earlier term (checked incrementally).
            if let problem = leaderCompleteness.checkLeader(node.core) {
                failure = ("leader completeness (Raft §5.4)", problem)
                return
            }
        }
        readSafety.advanceReference(nodes: nodes, committed: leaderCompleteness, applied: stateMachineSafety)
    }

    mutating func recordApply(node: NodeID, entry: Entry, failure: inout (property: String, detail: String)?) {
        if failure == nil, let problem = stateMachineSafety.observe(node: node, entry: entry) {
            failure = ("state machine safety (Raft §5.4.3)", problem)
        }
    }

    mutating func recordRead(
        node: NodeID, read: SimNode.PendingRead, observed: LogIndex?,
        failure: inout (property: String, detail: String)?
    ) {
        if failure == nil, let problem = readSafety.check(node: node, read: read, observed: observed) {
            failure = ("read safety (thesis §6.4: reads are linearizable)", problem)
        }
    }

    /// The index of the newest committed write to `key` that any read starting now must observe.
    func requiredWriteIndex(key: String, nodes: [NodeID: SimNode]) -> LogIndex? {
        readSafety.reference.writeIndex[key]
    }
}

/// Election Safety: at most one leader can be elected in a given term (Raft §5.2).
public struct ElectionSafety {
    public private(set) var leaderOfTerm: [Term: NodeID] = [:]

    mutating func observe(_ core: RaftNode) -> String? {
        guard core.role == .leader else { return nil }
        if let existing = leaderOfTerm[core.term], existing != core.id {
            return "nodes \(existing) and \(core.id) are both leader of term \(core.term)"
        }
        leaderOfTerm[core.term] = core.id
        return nil
    }
}

/// Log Matching: if two logs contain an entry with the same index and term, then the logs are identical in all
/// entries up through that index (Raft §5.3). Checked inductively: every (index, term) pair must always carry the
/// same entry and the same predecessor term.
public struct LogMatching {
    struct Fingerprint: Equatable {
        var previousTerm: Term?
        var entry: Entry
    }
    private var seen: [UInt64: [Term: Fingerprint]] = [:]
    /// Per node: the last entry verified and how many observations since the last full pass. An unchanged entry at
    /// the watermark means the prefix was verified already; every 32nd observation re-verifies the whole log anyway.
    private var verified: [NodeID: (index: LogIndex, term: Term, sinceFull: Int)] = [:]

    mutating func observe(_ core: RaftNode) -> String? {
        guard core.lastIndex >= core.firstIndex else { return nil }
        var start = core.firstIndex
        if let mark = verified[core.id], mark.sinceFull < 32, mark.index >= core.firstIndex,
            core.term(at: mark.index) == mark.term
        {
            start = mark.index + 1
            verified[core.id]!.sinceFull += 1
        } else {
            verified[core.id] = (core.lastIndex, core.lastTerm, 0)
        }
        verified[core.id]!.index = core.lastIndex
        verified[core.id]!.term = core.lastTerm
        guard start <= core.lastIndex else { return nil }
        for index in start...core.lastIndex {
            let entry = core.entry(at: index)!
            let print = Fingerprint(previousTerm: core.term(at: index - 1), entry: entry)
            if let known = seen[index]?[entry.term] {
                if known.entry != entry {
                    return "node \(core.id) has \(entry) where another log has \(known.entry)"
                }
                if let a = known.previousTerm, let b = print.previousTerm, a != b {
                    return "node \(core.id): entry \(entry) follows term \(b), elsewhere term \(a)"
                }
            } else {
                seen[index, default: [:]][entry.term] = print
            }
        }
        return nil
    }
}

/// Leader Completeness: if a log entry is committed in a given term, then that entry will be present in the logs of
/// the leaders for all higher-numbered terms (Raft §5.4). Also: a committed entry never changes.
public struct LeaderCompleteness {
    /// index -> (term of the entry, lowest term in which any node knew it committed)
    public private(set) var committed: [LogIndex: (term: Term, inTerm: Term)] = [:]
    public private(set) var committedEntries: [LogIndex: Entry] = [:]
    public private(set) var maxCommitted: LogIndex = 0
    private var seenCommit: [NodeID: LogIndex] = [:]

    mutating func observeCommit(_ core: RaftNode) -> String? {
        let from = max(seenCommit[core.id] ?? 0, core.firstIndex - 1) + 1
        if core.commitIndex >= from {
            for index in from...core.commitIndex {
                guard let entry = core.entry(at: index) else { continue }
                if let known = committed[index] {
                    if known.term != entry.term {
                        return "index \(index) committed with term \(known.term), node \(core.id) commits term \(entry.term)"
                    }
                    committed[index] = (known.term, min(known.inTerm, core.term))
                } else {
                    committed[index] = (entry.term, core.term)
                    committedEntries[index] = entry
                }
            }
        }
        seenCommit[core.id] = max(seenCommit[core.id] ?? 0, core.commitIndex)
        maxCommitted = max(maxCommitted, core.commitIndex)
        return nil
    }

    /// Per leader and term: committed indexes already checked (a leader's log only grows while it leads).
    private var leaderChecked: [NodeID: (term: Term, upTo: LogIndex)] = [:]

    mutating func checkLeader(_ core: RaftNode) -> String? {
        var start = core.firstIndex
        if let mark = leaderChecked[core.id], mark.term == core.term { start = max(start, mark.upTo + 1) }
        leaderChecked[core.id] = (core.term, maxCommitted)
        guard maxCommitted >= start else { return nil }
        for index in start...maxCommitted {
            guard let known = committed[index], known.inTerm < core.term else { continue }
            if core.term(at: index) != known.term {
                let has = core.term(at: index).map { "term \($0)" } ?? "nothing"
                return "leader \(core.id) of term \(core.term) has \(has) at \(index), committed with term \(known.term)"
            }
        }
        return nil
    }
}

/// State Machine Safety: if a server has applied a log entry at a given index to its state machine, no other server
/// will ever apply a different log entry for the same index (Raft §5.4.3).
public struct StateMachineSafety {
    public private(set) var applied: [LogIndex: Entry] = [:]

    mutating func observe(node: NodeID, entry: Entry) -> String? {
        if let known = applied[entry.index] {
            if known != entry { return "node \(node) applied \(entry) where another node applied \(known)" }
        } else {
            applied[entry.index] = entry
        }
        return nil
    }
}

/// Read safety: a completed linearizable (ReadIndex) or lease read returns a value at least as new as every write
/// committed before the read began (thesis §6.4). A reference state machine replays the committed log in order;
/// its value for the key when the read starts is the newest write the read must observe.
public struct ReadSafety {
    public private(set) var reference = SimStateMachine()
    public private(set) var checked = 0

    mutating func advanceReference(
        nodes: [NodeID: SimNode], committed: LeaderCompleteness, applied: StateMachineSafety
    ) {
        while reference.appliedIndex < committed.maxCommitted {
            let next = reference.appliedIndex + 1
            guard let entry = applied.applied[next] ?? committed.committedEntries[next] else { return }
            reference.apply(entry)
        }
    }

    mutating func check(node: NodeID, read: SimNode.PendingRead, observed: LogIndex?) -> String? {
        checked += 1
        guard let required = read.required else { return nil }
        if observed == nil || observed! < required {
            let kind = read.lease ? "lease" : "ReadIndex"
            return "\(kind) read of \(read.key) on node \(node) at index \(read.index) saw the write at "
                + "\(observed.map(String.init) ?? "none"), but the write at \(required) committed before the read began"
        }
        return nil
    }
}
