import RaftCore

/// A small text DSL for golden interaction tests (modelled on etcd's `rafttest` interaction environment).
///
/// A test file is a list of blocks:
///
///     # a comment
///     command arg arg
///     ----
///     expected output (no blank lines)
///
/// Commands:
/// - `add-nodes N [learners=4,5] [lease=MS]` bootstraps voters 1...N (and the learners) with empty logs.
/// - `add-node ID` starts a fresh node that is not in the bootstrap configuration (it joins as a learner later).
/// - `elect ID [VOTERS...]` runs an election among the listed nodes only, leaving the winner's first Ready unprocessed.
/// - `campaign ID`, `tick ID MS`, `tick-all MS` (advance clocks; elections and heartbeats happen there).
/// - `propose ID VALUE`, `conf-change ID add-learner|promote|remove N`, `transfer-leader ID TARGET`.
/// - `read-index ID READID`, `lease-read ID`.
/// - `deliver-msgs [ID]`, `process-ready [ID]`, `stabilize [ID...]` (until nothing moves).
/// - `partition A B | C D`, `heal`, `crash ID`, `restart ID`, `snapshot ID` (snapshot at applied, compact all).
/// - `status ID`, `raft-log ID`, `plant BUG` (for nodes added afterwards).
public struct InteractionEnv {
    public final class Node {
        let id: NodeID
        var config: RaftConfig
        var core: RaftNode!
        var storage = MemoryStorage()
        var snapshotImage = SimStateMachine()
        var stateMachine = SimStateMachine()
        var staged: [LogIndex: SimStateMachine] = [:]
        var inbox: [(Message, SimStateMachine?)] = []
        var clock: UInt64 = 0
        var up = true
        var pendingReads: [ReadState] = []

        init(id: NodeID, config: RaftConfig) {
            self.id = id
            self.config = config
        }
    }

    public private(set) var nodes: [NodeID: Node] = [:]
    private var bootstrap = Membership()
    private var side: [NodeID: Int] = [:]
    private var plantedBug: PlantedBug?
    private var leaseDuration: UInt64 = 400

    public init() {}

    // MARK: - Running files

    /// Runs a whole file and returns it with every block's output replaced by what happened.
    public static func run(file text: String) -> String {
        var env = InteractionEnv()
        var out: [String] = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        while lines.last == "" { lines.removeLast() }
        var i = 0
        while i < lines.count {
            let line = lines[i]
            if line.isEmpty || line.hasPrefix("#") {
                out.append(line)
                i += 1
                continue
            }
            out.append(line)
            // Skip the old output.
            i += 1
            if i < lines.count && lines[i] == "----" {
                i += 1
                while i < lines.count && !lines[i].isEmpty { i += 1 }
            }
            out.append("----")
            let result = env.handle(line)
            out.append(contentsOf: result.isEmpty ? ["ok"] : result)
        }
        return out.joined(separator: "\n") + "\n"
    }

    // MARK: - Commands

    public mutating func handle(_ line: String) -> [String] {
        let words = line.split(separator: " ").map(String.init)
        guard let command = words.first else { return [] }
        let args = Array(words.dropFirst())
        func id(_ i: Int) -> NodeID? { args.count > i ? NodeID(args[i]) : nil }
        switch command {
        case "add-nodes":
            guard let n = id(0) else { return ["usage: add-nodes N [learners=...] [lease=MS]"] }
            var learners: Set<NodeID> = []
            for arg in args.dropFirst() {
                if arg.hasPrefix("learners=") {
                    learners = Set(arg.dropFirst(9).split(separator: ",").compactMap { NodeID($0) })
                } else if arg.hasPrefix("lease=") {
                    leaseDuration = UInt64(arg.dropFirst(6)) ?? leaseDuration
                }
            }
            bootstrap = Membership(voters: Set(1...n), learners: learners)
            for nid in (Array(1...n) + learners.sorted()) { addNode(nid) }
            return []
        case "add-node":
            guard let nid = id(0) else { return ["usage: add-node ID"] }
            addNode(nid)
            return []
        case "plant":
            plantedBug = args.first.flatMap(PlantedBug.init(rawValue:))
            return [plantedBug.map { "planted \($0.rawValue)" } ?? "unknown bug"]
        case "campaign":
            guard let n = node(id(0)) else { return ["no such node"] }
            n.core.campaign()
            return []
        case "elect":
            // elect ID [A B ...]: expire the vote shields of ID and the listed voters, campaign, and exchange
            // messages among them only until ID leads. The new leader's first Ready is left unprocessed.
            guard let candidate = node(id(0)) else { return ["usage: elect ID [VOTERS...]"] }
            let group = [candidate.id] + args.dropFirst().compactMap { NodeID($0) }
            for nid in group {
                guard let n = node(nid) else { continue }
                n.clock += n.config.electionTimeoutMin
                n.core.tick(now: n.clock)
            }
            candidate.core.campaign()
            var out: [String] = []
            for _ in 0..<60 where candidate.core.role != .leader {
                _ = processReady(group)
                _ = deliver(to: group, from: Set(group))
                if candidate.core.role == .follower {
                    // Rejected (a higher term came back): its election timer fires again and it retries.
                    candidate.core.campaign()
                }
            }
            out.append(
                candidate.core.role == .leader
                    ? "node \(candidate.id) elected in term \(candidate.core.term)"
                    : "node \(candidate.id) not elected: \(candidate.core.softState)")
            return out
        case "tick":
            guard let n = node(id(0)), args.count > 1, let ms = UInt64(args[1]) else { return ["usage: tick ID MS"] }
            n.clock += ms
            n.core.tick(now: n.clock)
            return []
        case "tick-all":
            guard let ms = args.first.flatMap(UInt64.init) else { return ["usage: tick-all MS"] }
            for n in liveNodes() {
                n.clock += ms
                n.core.tick(now: n.clock)
            }
            return []
        case "propose":
            guard let n = node(id(0)), args.count > 1 else { return ["usage: propose ID VALUE"] }
            switch n.core.propose([RaftNode.Proposal(data: Array(args[1].utf8))]) {
            case .success(let r): return ["proposed at \(r.term)/\(r.indexes.lowerBound)"]
            case .failure(let e): return ["refused: \(e)"]
            }
        case "conf-change":
            guard let n = node(id(0)), args.count > 2, let target = NodeID(args[2]) else {
                return ["usage: conf-change ID add-learner|promote|remove N"]
            }
            let change: MembershipChange
            switch args[1] {
            case "add-learner": change = .addLearner(target)
            case "promote": change = .promote(target)
            case "remove": change = .remove(target)
            default: return ["unknown change \(args[1])"]
            }
            switch n.core.proposeMembershipChange(change) {
            case .success(let index): return ["proposed \(change) at \(index)"]
            case .failure(let e): return ["refused: \(e)"]
            }
        case "transfer-leader":
            guard let n = node(id(0)), let target = id(1) else { return ["usage: transfer-leader ID TARGET"] }
            switch n.core.transferLeadership(to: target) {
            case .success: return ["transferring to \(target)"]
            case .failure(let e): return ["refused: \(e)"]
            }
        case "read-index":
            guard let n = node(id(0)), let rid = id(1) else { return ["usage: read-index ID READID"] }
            switch n.core.readIndex(id: rid) {
            case .success: return ["read #\(rid) queued"]
            case .failure(let e): return ["refused: \(e)"]
            }
        case "lease-read":
            guard let n = node(id(0)) else { return ["no such node"] }
            switch n.core.leaseRead(now: n.clock) {
            case .success(let index): return ["lease read at \(index) (lease \(n.core.leaseRemaining) ms left)"]
            case .failure(let e): return ["refused: \(e)"]
            }
        case "deliver-msgs":
            return deliver(to: id(0).map { [$0] } ?? nodes.keys.sorted())
        case "process-ready":
            return processReady(id(0).map { [$0] } ?? nodes.keys.sorted())
        case "stabilize":
            let ids = args.isEmpty ? nodes.keys.sorted() : args.compactMap { NodeID($0) }
            return stabilize(ids)
        case "partition":
            side.removeAll()
            var current = 0
            for arg in args {
                if arg == "|" {
                    current += 1
                } else if let nid = NodeID(arg) {
                    side[nid] = current
                }
            }
            return []
        case "heal":
            side.removeAll()
            return []
        case "crash":
            guard let n = node(id(0)) else { return ["no such node"] }
            n.up = false
            n.core = nil
            n.inbox.removeAll()
            n.staged.removeAll()
            n.pendingReads.removeAll()
            return []
        case "restart":
            guard let nid = id(0), let n = nodes[nid] else { return ["no such node"] }
            n.core = try! RaftNode(config: n.config, storage: n.storage, now: n.clock)
            n.stateMachine = n.snapshotImage
            n.up = true
            return ["restarted \(nid): \(n.core.hardState) last=\(n.core.lastIndex)"]
        case "snapshot":
            guard let n = node(id(0)), let meta = n.core.snapshotMetadata(at: n.stateMachine.appliedIndex) else {
                return ["nothing to snapshot"]
            }
            n.snapshotImage = n.stateMachine
            try! n.storage.applySnapshot(meta)
            try! n.storage.compact(before: meta.index + 1)
            n.core.compact(snapshot: meta, retain: 0)
            return ["snapshot \(meta); log now \(n.core.firstIndex)...\(n.core.lastIndex)"]
        case "status":
            guard let n = node(id(0)) else { return ["no such node"] }
            return status(n)
        case "raft-log":
            guard let n = node(id(0)) else { return ["no such node"] }
            guard n.core.lastIndex >= n.core.firstIndex else { return ["log empty from \(n.core.firstIndex)"] }
            return (n.core.firstIndex...n.core.lastIndex).map { n.core.entry(at: $0)!.description }
        default:
            return ["unknown command \(command)"]
        }
    }

    // MARK: - Helpers

    private mutating func addNode(_ nid: NodeID) {
        var config = RaftConfig(id: nid, initialMembership: bootstrap)
        config.electionTimeoutMin = 1000
        config.electionTimeoutMax = 2000
        config.heartbeatInterval = 100
        config.leaseDuration = leaseDuration
        config.clockDriftMargin = 100
        config.randomSeed = 42
        config.plantedBug = plantedBug
        let n = Node(id: nid, config: config)
        n.core = try! RaftNode(config: config, storage: n.storage, now: 0)
        nodes[nid] = n
    }

    private func node(_ id: NodeID?) -> Node? {
        guard let id, let n = nodes[id], n.up else { return nil }
        return n
    }

    private func liveNodes() -> [Node] { nodes.keys.sorted().compactMap { node($0) } }

    private func canTalk(_ a: NodeID, _ b: NodeID) -> Bool {
        side.isEmpty || side[a, default: -1] == side[b, default: -1]
    }

    private mutating func deliver(to ids: [NodeID], from senders: Set<NodeID>? = nil) -> [String] {
        var out: [String] = []
        for nid in ids {
            guard let n = node(nid), !n.inbox.isEmpty else { continue }
            var batch = n.inbox
            n.inbox.removeAll()
            if let senders {
                n.inbox = batch.filter { !senders.contains($0.0.from) }
                batch = batch.filter { senders.contains($0.0.from) }
            }
            for (m, image) in batch {
                if !canTalk(m.from, m.to) {
                    out.append("  \(m) DROPPED (partition)")
                    continue
                }
                out.append("  \(m)")
                if case .installSnapshot(let meta) = m.body, let image { n.staged[meta.index] = image }
                n.core.step(m)
            }
        }
        return out
    }

    private mutating func processReady(_ ids: [NodeID]) -> [String] {
        var out: [String] = []
        for nid in ids {
            guard let n = node(nid) else { continue }
            let rd = n.core.ready()
            if rd.isEmpty { continue }
            out.append("> \(nid) handling Ready")
            out.append(contentsOf: rd.description.split(separator: "\n").map { "  \($0)" })
            if let snap = rd.snapshot {
                try! n.storage.applySnapshot(snap)
                if let image = n.staged[snap.index] {
                    n.snapshotImage = image
                    n.stateMachine = image
                }
            }
            try! n.storage.append(rd.entries)
            if let hard = rd.hardState { try! n.storage.setHardState(hard) }
            for m in rd.earlyMessages + rd.messages {
                guard let target = nodes[m.to], target.up else { continue }
                var image: SimStateMachine?
                if case .installSnapshot = m.body { image = n.snapshotImage }
                target.inbox.append((m, image))
            }
            for e in rd.committedEntries { n.stateMachine.apply(e) }
            n.pendingReads.append(contentsOf: rd.readStates)
            n.pendingReads.removeAll { read in
                guard n.stateMachine.appliedIndex >= read.index else { return false }
                out.append("  served read #\(read.id) at applied \(n.stateMachine.appliedIndex)")
                return true
            }
            n.core.advance(rd)
        }
        return out
    }

    private mutating func stabilize(_ ids: [NodeID]) -> [String] {
        var out: [String] = []
        for _ in 0..<100 {
            var moved = false
            let ready = processReady(ids)
            if !ready.isEmpty {
                out.append(contentsOf: ready)
                moved = true
            }
            for nid in ids {
                guard let n = node(nid), !n.inbox.isEmpty else { continue }
                out.append("> \(nid) receiving messages")
                out.append(contentsOf: deliver(to: [nid]))
                moved = true
            }
            if !moved { break }
        }
        return out
    }

    private func status(_ n: Node) -> [String] {
        let c = n.core!
        var out = [
            "\(c.softState) commit=\(c.commitIndex) last=\(c.lastTerm)/\(c.lastIndex) applied=\(n.stateMachine.appliedIndex) \(c.membership)"
        ]
        for peer in c.progress.keys.sorted() { out.append("  \(peer): \(c.progress[peer]!)") }
        for peer in c.departing.keys.sorted() { out.append("  departing: \(peer) until it holds \(c.departing[peer]!)") }
        if c.isRemoved { out.append("  removed from the cluster") }
        let values = n.stateMachine.values.keys.sorted().map { "\($0)=\(n.stateMachine.values[$0]!)" }
        if !values.isEmpty { out.append("  state: " + values.joined(separator: " ")) }
        return out
    }
}
