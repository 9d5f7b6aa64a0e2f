import RaftCore

/// When the simulated disk makes a write durable (`[raft.persistence] strategy`, docs/storage.md).
public enum SimStrategy: String, Sendable, Equatable, CaseIterable {
    /// Every batch is fsynced before it counts.
    case diskFirst = "DiskFirst"
    /// A follower fsyncs a batch before acknowledging it; a leader's own batches are fsynced by the flush policy
    /// (`flushThreshold` entries or `flushIntervalMs`) and count toward commit only once fsynced.
    case memFirst = "MemFirst"
}

/// What the simulator may do, all driven from one seed.
public struct SimOptions: Sendable, Equatable {
    public var seed: UInt64
    public var voters = 3
    /// Extra node ids that membership changes may add as learners (and later promote).
    public var spareNodes = 2
    public var steps = 3000
    /// Per-message fault probabilities (percent).
    public var dropPercent = 5
    public var duplicatePercent = 3
    /// Messages take 1...maxDelay ms; random delivery order among due messages gives reordering.
    public var maxDelay: UInt64 = 8
    /// Per-step event probabilities (per mille).
    public var crashPerMille = 4
    public var partitionPerMille = 4
    public var membershipPerMille = 3
    public var transferPerMille = 2
    /// Pause a node (a GC pause, SIGSTOP): no ticks, no messages; on resume clients reach it before its clock does.
    public var pausePerMille = 3
    /// Cut a node's power: it loses everything written since its last fsync (its page cache), then is down like a
    /// crashed node. One cut in `clusterPowerCutOneIn` hits every node at once.
    public var powerCutPerMille = 3
    public var clusterPowerCutOneIn: UInt64 = 4
    /// The durability strategy of every node (the default alternates by seed: odd DiskFirst, even MemFirst).
    public var strategy: SimStrategy = .diskFirst
    /// MemFirst's flush policy: fsync once this many entries are unsynced, or the oldest unsynced write is this old.
    public var flushThreshold = 4
    public var flushIntervalMs: UInt64 = 6
    /// Take a snapshot every this many applied entries, keeping `retainEntries` before it.
    public var snapshotEvery: UInt64 = 40
    public var retainEntries: UInt64 = 5
    public var lease = true
    /// Followers serve reads after asking the leader for a read index (`RaftConfig.followerReads`).
    public var followerReads = true
    /// Test only: a bug planted in the core, to prove that the checkers catch it.
    public var plantedBug: PlantedBug?

    public init(seed: UInt64) {
        self.seed = seed
        // Seeds 1, 2 DiskFirst, 3, 4 MemFirst, ...: both strategies with both cluster sizes (voters follow seed % 2).
        strategy = (seed &- 1) / 2 % 2 == 0 ? .diskFirst : .memFirst
    }
}

/// A safety property violated during a simulation run.
public struct SimFailure: Error, Sendable, CustomStringConvertible {
    public var seed: UInt64
    public var step: Int
    public var property: String
    public var detail: String
    public var trace: [String]

    public var description: String {
        "seed \(seed) step \(step): \(property) violated: \(detail)\nlast events:\n  "
            + trace.joined(separator: "\n  ")
    }
}

/// Counters of what a run did (for the closing report and to check that faults really happened).
public struct SimStats: Sendable, Equatable {
    public var steps = 0
    public var delivered = 0
    public var dropped = 0
    public var duplicated = 0
    public var crashes = 0
    public var partitions = 0
    public var membershipChanges = 0
    public var transfers = 0
    public var snapshotsTaken = 0
    public var snapshotsInstalled = 0
    public var writesProposed = 0
    public var writesApplied = 0
    public var readsServed = 0
    public var leaseReadsServed = 0
    /// Read indexes a follower obtained from its leader (served once applied, and checked like the rest).
    public var followerReadsConfirmed = 0
    public var elections = 0
    public var pauses = 0
    public var powerCuts = 0
    /// Entries written but unsynced when their node lost power.
    public var unsyncedEntriesLost = 0
    /// Steps during which more than one node believed it led (a deposed leader that has not noticed yet).
    public var overlappingLeaderSteps = 0

    public init() {}

    public mutating func add(_ o: SimStats) {
        steps += o.steps
        delivered += o.delivered
        dropped += o.dropped
        duplicated += o.duplicated
        crashes += o.crashes
        partitions += o.partitions
        membershipChanges += o.membershipChanges
        transfers += o.transfers
        snapshotsTaken += o.snapshotsTaken
        snapshotsInstalled += o.snapshotsInstalled
        writesProposed += o.writesProposed
        writesApplied += o.writesApplied
        readsServed += o.readsServed
        leaseReadsServed += o.leaseReadsServed
        followerReadsConfirmed += o.followerReadsConfirmed
        elections += o.elections
        pauses += o.pauses
        powerCuts += o.powerCuts
        unsyncedEntriesLost += o.unsyncedEntriesLost
        overlappingLeaderSteps += o.overlappingLeaderSteps
    }
}

/// N Raft nodes in one process over a simulated network, clock and disk. Everything is derived from one seed, so a
/// failing seed replays exactly. After every step the `InvariantCheckers` run.
public struct Simulation {
    public let options: SimOptions
    public private(set) var rng: SplitMix64
    public private(set) var now: UInt64 = 0
    public private(set) var step = 0
    public private(set) var stats = SimStats()
    public private(set) var nodes: [NodeID: SimNode] = [:]
    public private(set) var checkers = InvariantCheckers()
    private var network: [InFlight] = []
    private var sendSequence: UInt64 = 0
    /// Partition: node -> side. Nodes on different sides cannot talk.
    private var side: [NodeID: Int] = [:]
    private var trace: [String] = []
    private var nextValue = 0
    private var nextReadID: UInt64 = 0
    private var lastWrittenKey = "k0"
    private var clientSequence: [UInt64: UInt64] = [:]
    private var lastWrite: (clientID: UInt64, sequence: UInt64, data: [UInt8])?
    public let bootstrap: Membership

    struct InFlight {
        var deliverAt: UInt64
        var sequence: UInt64
        var message: Message
        var snapshot: SimStateMachine?
    }

    public init(options: SimOptions) {
        self.options = options
        self.rng = SplitMix64(seed: options.seed)
        let voters = Set((1...NodeID(options.voters)))
        self.bootstrap = Membership(voters: voters)
        for id in voters.sorted() { startNode(id, fresh: true) }
    }

    // MARK: - Run

    /// Runs `options.steps` steps; throws the first violated property.
    public mutating func run() throws(SimFailure) {
        for _ in 0..<options.steps {
            try stepOnce()
        }
        try heal()
    }

    /// Heals every fault and lets the cluster settle: everyone live, connected, with a leader that has committed.
    public mutating func heal() throws(SimFailure) {
        side.removeAll()
        for id in nodes.keys.sorted() where !nodes[id]!.isUp { restart(id) }
        for id in nodes.keys.sorted() where nodes[id]!.paused { nodes[id]!.paused = false }
        var settled = false
        for _ in 0..<2000 {
            advanceClock(by: 10)
            try deliverAllDue()
            if converged() {
                settled = true
                break
            }
        }
        try check()
        if !settled {
            let states = nodes.keys.sorted().map { id in
                let n = nodes[id]!
                return "\(id): \(n.core.role.rawValue) term=\(n.core.term) commit=\(n.core.commitIndex) "
                    + "last=\(n.core.lastIndex) applied=\(n.stateMachine.appliedIndex)"
            }
            pendingFailure = (
                "convergence: after every fault heals, the replicas reach one state",
                "not converged 20 s after healing: " + states.joined(separator: "; ")
            )
            try check()
        }
    }

    /// A leader that has committed in its term, and every member (voter or learner) has applied exactly its commit
    /// index into an identical state.
    private func converged() -> Bool {
        guard let leader = currentLeader(), let l = nodes[leader], l.core.hasCommittedInTerm else { return false }
        let members = l.core.membership.voters.union(l.core.membership.learners)
        for id in members.sorted() {
            guard let n = nodes[id], n.isUp, n.stateMachine.appliedIndex == l.core.commitIndex,
                n.stateMachine.values == l.stateMachine.values, n.stateMachine.sessions == l.stateMachine.sessions
            else { return false }
        }
        return true
    }

    public mutating func stepOnce() throws(SimFailure) {
        step += 1
        stats.steps += 1
        let roll = Int(rng.next() % 1000)
        var threshold = 0
        func hit(_ perMille: Int) -> Bool {
            threshold += perMille
            return roll < threshold
        }
        if hit(options.crashPerMille) {
            crashOrRestart()
        } else if hit(options.powerCutPerMille) {
            powerCut()
        } else if hit(options.partitionPerMille) {
            partitionOrHeal()
        } else if hit(options.membershipPerMille) {
            changeMembership()
        } else if hit(options.transferPerMille) {
            transferLeadership()
        } else if hit(options.pausePerMille) {
            pauseOrResume()
        } else if hit(120) {
            clientWrite()
        } else if hit(100) {
            clientRead()
        } else if hit(500) {
            deliverOne()
        } else if hit(30) {
            processOneDeferredReady()
        } else {
            // Usually the network keeps up with time (random order among due messages); sometimes it lags.
            if rng.next() % 8 != 0 { try drainNetwork() }
            advanceClock(by: 1 + rng.next() % 6)
        }
        let leaders = nodes.values.filter { $0.isUp && $0.core.role == .leader }
        if leaders.count > 1 {
            stats.overlappingLeaderSteps += 1
        }
        try check()
    }

    // MARK: - Nodes

    private mutating func startNode(_ id: NodeID, fresh: Bool) {
        var config = RaftConfig(id: id, initialMembership: bootstrap)
        config.electionTimeoutMin = 50
        config.electionTimeoutMax = 100
        config.heartbeatInterval = 10
        config.leaseDuration = options.lease ? 35 : 0
        config.followerReads = options.followerReads
        config.clockDriftMargin = 5
        config.maxEntriesPerMessage = 8
        config.maxInflightMessages = 4
        config.randomSeed = options.seed &+ id &* 7919
        config.plantedBug = options.plantedBug
        var node = nodes[id] ?? SimNode(id: id)
        if fresh { node = SimNode(id: id) }
        node.boot(config: config, now: now)
        nodes[id] = node
        log("boot \(id)\(fresh ? " fresh" : "") \(node.core.hardState)")
    }

    /// Crashes a random live node, or (more often, when one is down) restarts a crashed one.
    private mutating func crashOrRestart() {
        let down = nodes.keys.sorted().filter { !nodes[$0]!.isUp }
        if !down.isEmpty && rng.next() % 3 != 0 {
            restart(down[Int(rng.next() % UInt64(down.count))])
            return
        }
        // Keep a majority of the bootstrap voters able to come back: at most a minority down at once.
        // Leaders crash more often than followers: that is where Raft's hard cases are (Figure 8).
        let target = rng.next() % 2 == 0 ? currentLeader() : randomLiveNode()
        guard down.count < (options.voters - 1) / 2, let id = target else { return }
        nodes[id]!.crash()
        stats.crashes += 1
        log("crash \(id)")
    }

    /// A power cut: the node (or, one time in `clusterPowerCutOneIn`, every node) loses what it wrote since its last
    /// fsync and goes down. Under both strategies nothing acknowledged may be lost, however many nodes lose power.
    private mutating func powerCut() {
        let everyone = rng.next() % options.clusterPowerCutOneIn == 0
        var targets: [NodeID] = []
        if everyone {
            targets = nodes.keys.sorted()
        } else {
            let down = nodes.keys.sorted().filter { !nodes[$0]!.isUp }
            // Most cuts hit a node with unsynced writes: a cut of a node with nothing unsynced is a crash.
            let exposed = nodes.keys.sorted().filter { nodes[$0]!.isUp && nodes[$0]!.unsyncedEntries > 0 }
            let target =
                !exposed.isEmpty && rng.next() % 4 != 0
                ? exposed[Int(rng.next() % UInt64(exposed.count))]
                : (rng.next() % 2 == 0 ? currentLeader() : randomLiveNode())
            guard down.count < (options.voters - 1) / 2, let id = target else { return }
            targets = [id]
        }
        for id in targets {
            let lost = nodes[id]!.loseUnsyncedData()
            stats.unsyncedEntriesLost += lost
            log("power cut \(id): \(lost) unsynced entries lost")
        }
        stats.powerCuts += 1
    }

    private mutating func pauseOrResume() {
        if let paused = nodes.keys.sorted().first(where: { nodes[$0]!.paused }) {
            nodes[paused]!.paused = false
            log("resume \(paused)")
            // The classic stale-read window: requests reach the process before its timers run.
            if nodes[paused]!.core.role == .leader { clientRead(at: paused) }
            nodes[paused]!.core.tick(now: now)
            pump(paused)
            return
        }
        let target = rng.next() % 3 != 0 ? currentLeader() : randomLiveNode()
        guard let id = target else { return }
        nodes[id]!.paused = true
        stats.pauses += 1
        log("pause \(id)")
    }

    private mutating func restart(_ id: NodeID) {
        if let problem = nodes[id]!.recoverSnapshotFile() {
            // The real node refuses to start here (docs/storage.md, Recovery); the cluster has lost a member's disk.
            if pendingFailure == nil { pendingFailure = ("storage durability: a restarted node finds its files", problem) }
            return
        }
        startNode(id, fresh: false)
    }

    private mutating func partitionOrHeal() {
        if !side.isEmpty {
            side.removeAll()
            log("heal")
            return
        }
        let ids = nodes.keys.sorted()
        if rng.next() % 2 == 0, let leader = currentLeader() {
            // Jepsen's favourite: cut the leader off from everyone else.
            for id in ids { side[id] = id == leader ? 1 : 0 }
        } else {
            for id in ids { side[id] = Int(rng.next() % 2) }
        }
        stats.partitions += 1
        log("partition " + ids.map { "\($0):\(side[$0]!)" }.joined(separator: " "))
    }

    private func currentLeader() -> NodeID? {
        var best: (NodeID, Term)?
        for id in nodes.keys.sorted() {
            guard let n = nodes[id], n.isUp, n.core.role == .leader else { continue }
            if best == nil || n.core.term > best!.1 { best = (id, n.core.term) }
        }
        return best?.0
    }

    private mutating func randomLiveNode() -> NodeID? {
        let live = nodes.keys.sorted().filter { nodes[$0]!.isUp }
        guard !live.isEmpty else { return nil }
        return live[Int(rng.next() % UInt64(live.count))]
    }

    // MARK: - Clients

    /// Clients mostly find the newest leader; some keep talking to a node that still believes it leads (a stale
    /// leader cut off by a partition), some ask a random node (which refuses unless it leads).
    private mutating func clientTarget() -> NodeID? {
        switch rng.next() % 5 {
        case 0:
            return randomLiveNode()
        case 1, 2:
            let leaders = nodes.keys.sorted().filter { nodes[$0]!.isUp && nodes[$0]!.core.role == .leader }
            if !leaders.isEmpty { return leaders[Int(rng.next() % UInt64(leaders.count))] }
            return randomLiveNode()
        default:
            return currentLeader() ?? randomLiveNode()
        }
    }

    private mutating func clientWrite() {
        guard let id = clientTarget(), nodes[id]!.core.role == .leader, !nodes[id]!.paused else { return }
        let proposal: RaftNode.Proposal
        if let retry = lastWrite, rng.next() % 10 == 0 {
            // A client retry of the same command (thesis §6.3): must apply once.
            proposal = RaftNode.Proposal(data: retry.data, clientID: retry.clientID, sequence: retry.sequence)
        } else {
            nextValue += 1
            let key = "k\(rng.next() % 3)"
            lastWrittenKey = key
            let clientID = 1 + rng.next() % 3
            let sequence = (clientSequence[clientID] ?? 0) + 1
            clientSequence[clientID] = sequence
            let data = SimStateMachine.command(key: key, value: "v\(nextValue)")
            proposal = RaftNode.Proposal(data: data, clientID: clientID, sequence: sequence)
            lastWrite = (clientID, sequence, data)
        }
        if case .success(let result) = nodes[id]!.core.propose([proposal]) {
            stats.writesProposed += 1
            log("propose \(id) \(String(decoding: proposal.data, as: UTF8.self)) at \(result.indexes.lowerBound)")
        }
        pump(id)
    }

    private mutating func clientRead() {
        guard let id = clientTarget() else { return }
        clientRead(at: id)
    }

    private mutating func clientRead(at id: NodeID) {
        guard !nodes[id]!.paused else { return }
        guard let core = nodes[id]!.core else { return }
        let followerRead = core.role == .follower && options.followerReads && core.leader != nil
        guard core.role == .leader || followerRead else { return }
        // Half the reads ask for the key written last: the read most likely to expose a stale value.
        let key = rng.next() % 2 == 0 ? lastWrittenKey : "k\(rng.next() % 3)"
        let required = checkers.requiredWriteIndex(key: key, nodes: nodes)
        if followerRead {
            // The production path of a follower: a read index from the leader (under its lease, or confirmed by a
            // heartbeat round), then served here once applied.
            nextReadID += 1
            let lease = options.lease && rng.next() % 2 == 0
            if case .success = nodes[id]!.core.readIndex(id: nextReadID, lease: lease) {
                nodes[id]!.unconfirmedReads[nextReadID] = (key, required, lease)
                log("follower-read \(id) #\(nextReadID)\(lease ? " lease" : "") \(key) needs \(required.map(String.init) ?? "-")")
            }
        } else if options.lease && rng.next() % 2 == 0 {
            let r = nodes[id]!.core.leaseRead(now: now)
            if case .success(let index) = r {
                nodes[id]!.pendingReads.append(
                    SimNode.PendingRead(id: 0, key: key, index: index, required: required, lease: true))
                log("lease-read \(id) \(key) at \(index) needs \(required.map(String.init) ?? "-")")
            }
        } else {
            nextReadID += 1
            if case .success = nodes[id]!.core.readIndex(id: nextReadID) {
                nodes[id]!.unconfirmedReads[nextReadID] = (key, required, false)
                log("read-index \(id) #\(nextReadID) \(key) needs \(required.map(String.init) ?? "-")")
            }
        }
        pump(id)
    }

    private mutating func changeMembership() {
        guard let id = currentLeader() else { return }
        let m = nodes[id]!.core.membership
        let all = (1...NodeID(options.voters + options.spareNodes))
        var choices: [MembershipChange] = []
        for n in all where !m.contains(n) { choices.append(.addLearner(n)) }
        for n in m.learners.sorted() { choices.append(.promote(n)) }
        if m.voters.count > 2 { for n in m.voters.sorted() { choices.append(.remove(n)) } }
        for n in m.learners.sorted() { choices.append(.remove(n)) }
        guard !choices.isEmpty else { return }
        let change = choices[Int(rng.next() % UInt64(choices.count))]
        if case .addLearner(let n) = change, nodes[n] == nil || !nodes[n]!.isUp {
            startNode(n, fresh: nodes[n] == nil)
        }
        if case .success(let index) = nodes[id]!.core.proposeMembershipChange(change) {
            stats.membershipChanges += 1
            log("membership \(id) \(change) at \(index)")
        }
        pump(id)
    }

    private mutating func transferLeadership() {
        guard let id = currentLeader() else { return }
        let voters = nodes[id]!.core.membership.voters.sorted().filter { $0 != id }
        guard !voters.isEmpty else { return }
        let target = voters[Int(rng.next() % UInt64(voters.count))]
        if case .success = nodes[id]!.core.transferLeadership(to: target) {
            stats.transfers += 1
            log("transfer \(id) -> \(target)")
        }
        pump(id)
    }

    // MARK: - Network and clock

    private mutating func advanceClock(by ms: UInt64) {
        now += ms
        for id in nodes.keys.sorted() where nodes[id]!.isUp && !nodes[id]!.paused {
            // MemFirst's flush timer: the oldest unsynced write is `flushIntervalMs` old.
            if let since = nodes[id]!.unsyncedSince, now >= since + options.flushIntervalMs { flush(id) }
            nodes[id]!.core.tick(now: now)
            pump(id)
        }
    }

    /// fsyncs everything the node has written and tells its core (a leader may now count its own entries).
    private mutating func flush(_ id: NodeID) {
        let node = nodes[id]!
        if options.plantedBug != .skipWALFsync { node.durable = node.storage }
        node.unsyncedSince = nil
        node.unsyncedEntries = 0
        let last = node.storage.lastIndex
        if let term = node.storage.term(at: last) { node.core.markSynced(through: last, term: term) }
        if traceSink != nil { log("flush \(id) through \(last)") }
    }

    private func canTalk(_ a: NodeID, _ b: NodeID) -> Bool {
        side.isEmpty || side[a, default: 0] == side[b, default: 0]
    }

    private mutating func send(_ message: Message, snapshot: SimStateMachine?) {
        if rng.next() % 100 < UInt64(options.dropPercent) {
            stats.dropped += 1
            return
        }
        let copies = rng.next() % 100 < UInt64(options.duplicatePercent) ? 2 : 1
        if copies == 2 { stats.duplicated += 1 }
        for _ in 0..<copies {
            sendSequence += 1
            network.append(
                InFlight(
                    deliverAt: now + 1 + rng.next() % options.maxDelay, sequence: sendSequence, message: message,
                    snapshot: snapshot))
        }
    }

    private mutating func deliverOne() {
        let due = network.indices.filter { isDeliverable(network[$0]) }
        guard !due.isEmpty else {
            advanceClock(by: 1 + rng.next() % 5)
            return
        }
        let pick = due[Int(rng.next() % UInt64(due.count))]
        let item = network.remove(at: pick)
        deliver(item)
    }

    /// Delivers every message that is due, in random order, checking after each. Messages sent meanwhile are due
    /// no earlier than the next millisecond, so they wait for the next round.
    private mutating func drainNetwork() throws(SimFailure) {
        var due: [InFlight] = []
        var rest: [InFlight] = []
        for item in network {
            if isDeliverable(item) { due.append(item) } else { rest.append(item) }
        }
        guard !due.isEmpty else { return }
        network = rest
        while !due.isEmpty {
            let item = due.remove(at: Int(rng.next() % UInt64(due.count)))
            deliver(item)
            try check()
        }
    }

    private mutating func deliverAllDue() throws(SimFailure) {
        while let pick = network.indices.first(where: { isDeliverable(network[$0]) }) {
            deliver(network.remove(at: pick))
            try check()
        }
        for id in nodes.keys.sorted() where nodes[id]!.isUp {
            while nodes[id]!.host.pendingPersist != nil {
                completePersist(id)
                pump(id, forceDisk: true)
            }
        }
    }

    /// Due, and not addressed to a paused node (whose messages wait in its socket buffer).
    private func isDeliverable(_ item: InFlight) -> Bool {
        item.deliverAt <= now && !(nodes[item.message.to]?.paused ?? false)
    }

    private mutating func deliver(_ item: InFlight) {
        let m = item.message
        guard let node = nodes[m.to], node.isUp, canTalk(m.from, m.to) else {
            stats.dropped += 1
            return
        }
        stats.delivered += 1
        if traceSink != nil { log("deliver \(m)") }
        if case .installSnapshot(let meta) = m.body, let image = item.snapshot {
            nodes[m.to]!.staged[meta.index] = image
        }
        let before = nodes[m.to]!.core.role
        // As the node does: a lease is judged by the clock at the request, not at the last tick.
        if case .readIndex(_, true) = m.body { nodes[m.to]!.core.tick(now: now) }
        nodes[m.to]!.core.step(m)
        if nodes[m.to]!.core.role == .leader && before != .leader { stats.elections += 1 }
        pump(m.to)
    }

    // MARK: - Ready loop

    /// Runs the node's Readies through `ReadyExecutor`, the one production uses, and carries out what it asked for.
    /// A Ready's step 1 is left on the "disk queue" one time in five (a slow disk: crashes and power cuts can lose it,
    /// and the core goes on taking messages meanwhile); `forceDisk` completes every write at once.
    private mutating func pump(_ id: NodeID, forceDisk: Bool = false) {
        guard nodes[id]!.isUp, !nodes[id]!.paused else { return }
        for _ in 0..<64 {
            let node = nodes[id]!
            let took = node.executor.run(node.host!)
            drain(id)
            guard took, nodes[id]!.host.pendingPersist != nil else {
                if took { continue }
                break
            }
            if !forceDisk && rng.next() % 5 == 0 { break }
            completePersist(id)
        }
    }

    private mutating func processOneDeferredReady() {
        let ids = nodes.keys.sorted().filter {
            nodes[$0]!.isUp && !nodes[$0]!.paused && nodes[$0]!.host.pendingPersist != nil
        }
        guard !ids.isEmpty else { return }
        let id = ids[Int(rng.next() % UInt64(ids.count))]
        completePersist(id)
        pump(id)
    }

    /// Carries out what the executor asked of the host: sends, applies and serves, snapshots.
    private mutating func drain(_ id: NodeID) {
        let host: SimReadyHost = nodes[id]!.host
        for soft in host.roleChanges { log("node \(id) \(soft)") }
        host.roleChanges.removeAll()
        let outbox = host.outbox
        host.outbox.removeAll()
        for m in outbox {
            var image: SimStateMachine?
            if case .installSnapshot = m.body { image = nodes[id]!.snapshotImage }
            send(m, snapshot: image)
        }
        let toApply = host.toApply
        host.toApply.removeAll()
        for rd in toApply {
            for entry in rd.committedEntries {
                nodes[id]!.stateMachine.apply(entry)
                checkers.recordApply(node: id, entry: entry, failure: &pendingFailure)
                if entry.kind == .normal { stats.writesApplied += 1 }
            }
            for read in rd.readStates {
                if let (key, required, lease) = nodes[id]!.unconfirmedReads.removeValue(forKey: read.id) {
                    // Only a follower batch gives a non-leader a read state (a deposed leader drops its reads).
                    if nodes[id]!.core.role != .leader { stats.followerReadsConfirmed += 1 }
                    nodes[id]!.pendingReads.append(
                        SimNode.PendingRead(id: read.id, key: key, index: read.index, required: required, lease: lease))
                }
            }
            for dropped in rd.droppedReads { nodes[id]!.unconfirmedReads[dropped.id] = nil }
            serveReads(id)
        }
        if host.readiesDone > 0 {
            host.readiesDone = 0
            maybeSnapshot(id)
        }
    }

    /// Step 1 of the Ready waiting on the node's disk: install, append, store the hard state, fsync as `LogWriter`
    /// decides; then the executor's steps 2-4.
    private mutating func completePersist(_ id: NodeID) {
        let node = nodes[id]!
        guard let (rd, completion) = node.host.pendingPersist else { return }
        node.host.pendingPersist = nil
        let before = node.storage.hardState
        if let snap = rd.snapshot {
            guard let image = node.staged[snap.index] else { fatalError("snapshot \(snap.index) not staged on \(id)") }
            node.saveSnapshotFile(image, meta: snap, dirSynced: options.plantedBug != .skipDirFsync)
            try! node.storage.applySnapshot(snap)
            node.stateMachine.restore(image)
            stats.snapshotsInstalled += 1
            log("node \(id) installed \(snap)")
        }
        try! node.storage.append(rd.entries)
        if let hard = rd.hardState { try! node.storage.setHardState(hard) }
        let syncedThrough = syncAfterPersist(id, rd, termOrVoteChanged: rd.hardState.map {
            $0.term != before.term || $0.vote != before.vote
        } ?? false)
        completion(syncedThrough)
        drain(id)
    }

    /// Step 1's fsync, as `LogWriter` decides it: always under DiskFirst; under MemFirst when the term or vote changed,
    /// a snapshot was recorded, the batch acknowledges entries to a leader (a follower fsyncs before it answers), or
    /// the flush policy's threshold is reached. Returns how far the node *believes* its log is fsynced, for
    /// `advance(_:syncedThrough:)` (`nil`: all of it; a planted bug may make the fsync do nothing).
    private mutating func syncAfterPersist(_ id: NodeID, _ rd: Ready, termOrVoteChanged: Bool) -> LogIndex? {
        let node = nodes[id]!
        // Nothing written: nothing newly synced either (a Ready of messages must not vouch for earlier writes).
        guard rd.needsPersistence else { return node.core.syncedIndex }
        var sync: Bool
        switch options.strategy {
        case .diskFirst:
            sync = true
        case .memFirst:
            let acknowledges = rd.messages.contains {
                if case .appendResponse(.success, _) = $0.body { return true }
                return false
            }
            let oldMemFirst = options.plantedBug == .memFirstAckBeforeFsync
            sync = termOrVoteChanged || rd.snapshot != nil || (acknowledges && !oldMemFirst)
                || node.unsyncedEntries + rd.entries.count >= options.flushThreshold
            // Before issue #15 everything written counted, the leader's own entries included.
            if oldMemFirst && !sync {
                node.unsyncedEntries += rd.entries.count
                if node.unsyncedSince == nil { node.unsyncedSince = now }
                return nil
            }
        }
        if sync {
            flush(id)
            return nil
        }
        node.unsyncedEntries += rd.entries.count
        if node.unsyncedSince == nil { node.unsyncedSince = now }
        // A leader's log only grows within its term, and the term change was fsynced: the durable log is a prefix.
        return node.durable.lastIndex
    }

    private mutating func serveReads(_ id: NodeID) {
        var remaining: [SimNode.PendingRead] = []
        for read in nodes[id]!.pendingReads {
            let sm = nodes[id]!.stateMachine
            guard sm.appliedIndex >= read.index else {
                remaining.append(read)
                continue
            }
            let observed = sm.writeIndex[read.key]
            checkers.recordRead(node: id, read: read, observed: observed, failure: &pendingFailure)
            if read.lease { stats.leaseReadsServed += 1 } else { stats.readsServed += 1 }
            log("served read \(read.key) on \(id) at \(read.index): write@\(observed.map(String.init) ?? "-")")
        }
        nodes[id]!.pendingReads = remaining
    }

    private mutating func maybeSnapshot(_ id: NodeID) {
        let node = nodes[id]!
        let applied = node.stateMachine.appliedIndex
        let last = node.storage.snapshot?.index ?? 0
        guard applied >= last + options.snapshotEvery, let meta = node.core.snapshotMetadata(at: applied) else {
            return
        }
        // SnapshotStore.save (file fsync, rename, directory fsync), then the WAL record (fsynced) and compaction.
        node.saveSnapshotFile(node.stateMachine, meta: meta, dirSynced: options.plantedBug != .skipDirFsync)
        try! nodes[id]!.storage.applySnapshot(meta)
        let keepFrom = meta.index + 1 > options.retainEntries ? meta.index + 1 - options.retainEntries : 1
        try! nodes[id]!.storage.compact(before: keepFrom)
        flush(id)
        nodes[id]!.core.compact(snapshot: meta, retain: options.retainEntries)
        stats.snapshotsTaken += 1
        log("node \(id) snapshot at \(meta.index)")
    }

    // MARK: - Checks

    private var pendingFailure: (property: String, detail: String)?

    private mutating func check() throws(SimFailure) {
        if pendingFailure == nil {
            checkers.checkStep(nodes: nodes, failure: &pendingFailure)
        }
        if let (property, detail) = pendingFailure {
            throw SimFailure(seed: options.seed, step: step, property: property, detail: detail, trace: trace)
        }
    }

    /// Receives every trace line as it happens (`raftsim --trace`).
    public var traceSink: ((String) -> Void)?

    private mutating func log(_ line: String) {
        traceSink?("[\(step) t=\(now)] \(line)")
        trace.append("[\(step) t=\(now)] \(line)")
        if trace.count > 60 { trace.removeFirst(trace.count - 60) }
    }
}

/// One simulated node: the core, its "disk" (what survives a crash) and its state machine. A class, so that the
/// simulator mutates it in place instead of copying the whole node on every access.
public final class SimNode {
    public let id: NodeID
    public private(set) var isUp = false
    public var paused = false
    public var core: RaftNode!
    /// Survives crashes (`kill -9`: the page cache stays): the log storage and the latest snapshot image.
    public var storage = MemoryStorage()
    public var snapshotImage = SimStateMachine()
    var snapshotMeta: SnapshotMetadata?
    /// Survives a power cut: what was fsynced (`durable`), and the snapshot file whose directory entry was fsynced.
    public var durable = MemoryStorage()
    var durableSnapshot: (image: SimStateMachine, meta: SnapshotMetadata?) = (SimStateMachine(), nil)
    /// Entries written since the last fsync, and when the oldest of them was written.
    var unsyncedEntries = 0
    var unsyncedSince: UInt64?
    /// Lost on crash.
    public var stateMachine = SimStateMachine()
    /// Runs the node's Readies (the production executor) and what it asked for that `Simulation` has yet to do.
    var executor = ReadyExecutor()
    var host: SimReadyHost!
    var staged: [LogIndex: SimStateMachine] = [:]
    var unconfirmedReads: [UInt64: (key: String, required: LogIndex?, lease: Bool)] = [:]
    var pendingReads: [PendingRead] = []

    struct PendingRead {
        var id: UInt64
        var key: String
        var index: LogIndex
        var required: LogIndex?
        var lease: Bool
    }

    init(id: NodeID) { self.id = id }

    func boot(config: RaftConfig, now: UInt64) {
        core = try! RaftNode(config: config, storage: storage, now: now)
        executor = ReadyExecutor()
        host = SimReadyHost(node: self)
        stateMachine = snapshotImage
        isUp = true
    }

    /// Saves a snapshot file: it survives a crash at once, a power cut only once its directory entry is fsynced.
    func saveSnapshotFile(_ image: SimStateMachine, meta: SnapshotMetadata, dirSynced: Bool) {
        snapshotImage = image
        snapshotMeta = meta
        if dirSynced { durableSnapshot = (image, meta) }
    }

    /// A power cut: everything unsynced is gone, then the node is down. Returns how many log entries were lost.
    func loseUnsyncedData() -> Int {
        let lost = storage.lastIndex > durable.lastIndex ? Int(storage.lastIndex - durable.lastIndex) : 0
        storage = durable
        (snapshotImage, snapshotMeta) = durableSnapshot
        unsyncedEntries = 0
        unsyncedSince = nil
        if isUp { crash() }
        return lost
    }

    /// What the node's start-up recovery does with its snapshot file: a file newer than the log's snapshot record
    /// (saved, then the node stopped before recording it) is recorded; a log that refers to a snapshot whose file is
    /// gone makes the node refuse to start (returned as a problem).
    func recoverSnapshotFile() -> String? {
        let recorded = storage.snapshot?.index ?? 0
        if let meta = snapshotMeta, meta.index > recorded {
            try! storage.applySnapshot(meta)
            durable = storage
            return nil
        }
        if recorded > (snapshotMeta?.index ?? 0) {
            return "node \(id): the log records snapshot \(recorded) but the newest snapshot file is "
                + "\(snapshotMeta.map { String($0.index) } ?? "none"): it was lost with the power"
        }
        return nil
    }

    func crash() {
        isUp = false
        paused = false
        core = nil
        executor = ReadyExecutor()
        host = nil
        staged.removeAll()
        unconfirmedReads.removeAll()
        pendingReads.removeAll()
    }
}

/// The simulator's side of `ReadyExecutor`: it records what the executor asks for, and `Simulation` carries it out
/// right after each executor call (sends, applies, snapshots) or later (a persist left on the slow disk). A
/// commit-index-only write is made at once, unsynced, as `RaftServer` queues it without waiting.
final class SimReadyHost: ReadyHost {
    unowned let node: SimNode
    var outbox: [Message] = []
    var toApply: [Ready] = []
    var roleChanges: [SoftState] = []
    var pendingPersist: (rd: Ready, completion: (LogIndex?) -> Void)?
    var readiesDone = 0

    init(node: SimNode) { self.node = node }

    var core: RaftNode {
        get { node.core }
        _modify { yield &node.core! }
    }

    func readyTaken(_ rd: Ready) {
        if let soft = rd.softState { roleChanges.append(soft) }
    }

    func send(_ messages: [Message]) { outbox.append(contentsOf: messages) }

    func persist(_ rd: Ready, _ kind: ReadyPersistence, completion: @escaping (LogIndex?) -> Void) {
        switch kind {
        case .commitIndexOnly:
            if let hard = rd.hardState { try! node.storage.setHardState(hard) }
        case .full:
            pendingPersist = (rd, completion)
        }
    }

    func apply(_ rd: Ready) { toApply.append(rd) }

    func readyDone() { readiesDone += 1 }
}
