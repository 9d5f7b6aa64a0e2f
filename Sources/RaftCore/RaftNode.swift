/// One Raft node as a pure value: no I/O, no clocks, no threads, no logging.
///
/// Drive it with calls — `tick(now:)`, `step(_:)`, `propose(_:)`, `readIndex(id:)`, … — then take a `Ready` with
/// `ready()`, carry it out in the order `Ready` documents, and acknowledge the persistence with `advance(_:)`.
/// Time is injected (`now`, milliseconds of any monotonic clock) and so is randomness (`RaftConfig.randomSeed`), so
/// that a simulation replays exactly.
///
/// The design follows Raft (Ongaro & Ousterhout 2014, "the paper") and Ongaro's thesis (2014, "the thesis"):
/// pre-vote and check-quorum (thesis §9.6, §6.2), leader leases (§6.4.1), ReadIndex (§6.4), single-server membership
/// changes (§4.1) with learners, leadership transfer (§3.10) and log compaction (§5).
public struct RaftNode: Sendable {
    public let config: RaftConfig
    public var id: NodeID { config.id }
    /// Messages with a term at or above this are ignored (see `step`).
    public static let maxTerm: Term = 1 << 62
    /// Log indexes at or above this are garbage from the network (see ``acceptsTerm(_:)`` and the append checks):
    /// keeping every index below it means no `index + 1` or `prevIndex + count` can overflow.
    public static let maxIndex: LogIndex = 1 << 62
    /// How far beyond the last term in its log a message may take this node's term in one go (see
    /// ``acceptsTerm(_:)``). Real clusters stay far below it: each term needs an election.
    public static let termHorizon: Term = 1 << 32
    /// Reads (its own and followers' batches) a leader holds unconfirmed before it refuses followers' batches.
    public static let maxQueuedReads = 65_536

    var log: RaftLog
    public private(set) var term: Term
    public private(set) var vote: NodeID?
    public private(set) var role: Role = .follower
    public private(set) var leader: NodeID?
    public private(set) var now: UInt64
    private var rng: SplitMix64

    // MARK: timers
    private var electionDeadline: UInt64 = 0
    /// Check-quorum stickiness: until this time a non-transfer vote request with a higher term is ignored, because
    /// we heard from a leader less than `electionTimeoutMin` ago (or just started and might have).
    private var voteShieldUntil: UInt64
    private var heartbeatDue: UInt64 = 0
    private var nextQuorumCheck: UInt64 = 0

    // MARK: candidate state
    private var votes: [NodeID: Bool] = [:]
    private var campaignIsTransfer = false
    /// The last election this node decided by counting votes (won, or lost by refusals), for the shell's events.
    public private(set) var lastElection: ElectionTally?

    // MARK: leader state
    public private(set) var progress: [NodeID: Progress] = [:]
    /// Leader only: nodes removed by a configuration entry (at the index given) that have not acknowledged it yet.
    /// The leader keeps replicating to them until they hold the entry, so that a removed node learns it was removed
    /// and stops campaigning; it forgets them then, or after ten election timeouts without progress.
    public private(set) var departing: [NodeID: LogIndex] = [:]
    /// Read/lease rounds: every heartbeat broadcast and every ReadIndex batch starts one.
    private var round: UInt64 = 0
    private var roundStartedAt: [(round: UInt64, at: UInt64)] = []
    private var quorumRound: UInt64 = 0
    private var leaseExpiry: UInt64 = 0
    /// Set once a leadership transfer starts: the transferee may win an election that bypasses stickiness, so this
    /// leader never trusts its lease again in this term.
    private var leaseForfeited = false
    private var transferee: NodeID?
    private var transferDeadline: UInt64 = 0
    private var timeoutNowSent = false
    /// Leader: reads waiting for a read index. `from` is nil for this node's own reads (`id` is the read's id) and
    /// the follower for a follower's batch (`id` is the batch number).
    struct ReadRequest: Sendable {
        var id: UInt64
        var from: NodeID?
    }
    private var waitingReads: [ReadRequest] = []  // wait for the leader's first commit in its term
    private var newReads: [ReadRequest] = []  // need a confirmation round
    private var pendingReads: [(read: ReadRequest, index: LogIndex, round: UInt64)] = []

    // MARK: follower read state
    /// Reads asked of this follower since the last `ready()`, sent to the leader as one batch per kind.
    private var followerReads: [UInt64] = []
    private var followerLeaseReads: [UInt64] = []
    private var nextFollowerBatch: UInt64 = 0
    /// Batches sent to `leader` and not answered yet.
    /// In the order sent (batch numbers increase), so the oldest is first; a handful at most.
    private var followerBatches: [(batch: UInt64, reads: [UInt64], leader: NodeID, sentAt: UInt64)] = []
    private var needsBroadcast = false

    // MARK: outputs not yet handed out
    private var outbox: [Message] = []
    private var confirmedReads: [ReadState] = []
    private var droppedReads: [(id: UInt64, reason: DropReason)] = []
    private var handedHardState: HardState
    private var handedSoftState: SoftState

    // MARK: - Boot

    /// A node booted from what `storage` holds (an empty storage for a brand-new node).
    public init(config: RaftConfig, storage: some LogStorage, now: UInt64) throws {
        try config.validate()
        self.config = config
        self.log = try RaftLog(storage: storage, initialMembership: config.initialMembership)
        let hard = storage.hardState
        self.term = hard.term
        self.vote = hard.vote
        self.now = now
        self.rng = SplitMix64(seed: config.randomSeed ^ (config.id &* 0x9E37_79B9_7F4A_7C15))
        self.voteShieldUntil = now + config.electionTimeoutMin
        self.handedHardState = hard
        self.handedSoftState = SoftState(role: .follower, term: hard.term, leader: nil)
        resetElectionTimer()
    }

    // MARK: - Queries

    public var commitIndex: LogIndex { log.commit }
    public var lastIndex: LogIndex { log.lastIndex }
    public var lastTerm: Term { log.lastTerm }
    public var firstIndex: LogIndex { log.firstIndex }
    public var snapshotMetadata: SnapshotMetadata? { log.snapshot }
    /// The configuration in force (the latest in the log, committed or not — thesis §4.1).
    public var membership: Membership { log.membership }
    public var softState: SoftState { SoftState(role: role, term: term, leader: leader) }
    public var hardState: HardState { HardState(term: term, vote: vote, commit: log.commit) }
    public var isVoter: Bool { log.membership.voters.contains(id) }
    public var isLearner: Bool { log.membership.learners.contains(id) }
    /// The index of the latest configuration entry in the log (0 if none since the base).
    public var lastConfigIndex: LogIndex { log.lastConfigIndex }
    /// Whether the configuration in force is still the one the node booted with: no configuration entry in the log
    /// and no snapshot. A node that is not a member of a configuration it received was removed.
    public var hasBootstrapMembership: Bool { log.lastConfigIndex == 0 && log.snapshot == nil }
    /// The latest configuration entry in the log removes this node: it was removed (the removal may not be
    /// committed yet; a new leader may still overwrite it). A node catching up from a snapshot taken before it
    /// joined is not a member either, but it is not removed.
    public var isRemoved: Bool {
        guard !log.membership.contains(id), log.lastConfigIndex > 0, let entry = log.entry(at: log.lastConfigIndex),
            let record = ConfigChangeRecord(encoded: entry.data)
        else { return false }
        return record.change == .remove(id)
    }
    public var leadershipTransferTarget: NodeID? { transferee }

    public func term(at index: LogIndex) -> Term? { log.term(at: index) }
    public func entry(at index: LogIndex) -> Entry? { log.entry(at: index) }

    /// Milliseconds of lease left (0 when not leader or no valid lease).
    public var leaseRemaining: UInt64 {
        guard role == .leader, config.leaseReadsEnabled, !leaseForfeited, leaseExpiry > now else { return 0 }
        return leaseExpiry - now
    }

    /// Whether this leader has committed an entry of its own term (its no-op), so that its commit index is
    /// known to be the cluster's (thesis §6.4 step 1).
    public var hasCommittedInTerm: Bool { role == .leader && log.term(at: log.commit) == term }

    // MARK: - Inputs

    /// Advances the injected clock: elections, heartbeats and check-quorum happen here. `now` never goes back.
    public mutating func tick(now newNow: UInt64) {
        guard newNow > now else { return }
        now = newNow
        if !followerBatches.isEmpty { expireFollowerBatches() }
        if role == .leader {
            tickLeader()
        } else if now >= electionDeadline {
            if isVoter {
                campaign(transfer: false)
            } else {
                resetElectionTimer()
            }
        }
    }

    private mutating func tickLeader() {
        if config.checkQuorum && now >= nextQuorumCheck {
            nextQuorumCheck = now + config.electionTimeoutMin
            if !quorumRecentlyActive() {
                // Thesis §6.2: a leader cut off from a quorum steps down so that clients look elsewhere.
                becomeFollower(term: term, leader: nil)
                return
            }
        }
        if transferee != nil && now >= transferDeadline {
            transferee = nil
            timeoutNowSent = false
        }
        if now >= heartbeatDue {
            for (peer, _) in departing {
                guard let pr = progress[peer] else {
                    departing[peer] = nil
                    continue
                }
                if now - min(now, pr.lastProgressAt) >= config.electionTimeoutMin * 10 {
                    departing[peer] = nil
                    progress[peer] = nil
                }
            }
            for peer in progress.keys.sorted() {
                // A snapshot gets ten election timeouts to arrive before the leader gives up on it.
                guard var pr = progress[peer], pr.match < log.lastIndex else { continue }
                let patience = config.electionTimeoutMin * (pr.state == .snapshot ? 10 : 1)
                guard now - min(now, pr.lastProgressAt) >= patience else { continue }
                // No progress for an election timeout although entries are outstanding: probe again.
                pr.becomeProbe()
                pr.noteProgress(at: now)
                progress[peer] = pr
            }
            broadcastHeartbeat()
        }
    }

    /// Starts an election now (used by tests and by TimeoutNow). Learners and non-members never campaign.
    public mutating func campaign() {
        guard role != .leader else { return }
        campaign(transfer: false)
    }

    /// Feeds one message from a peer.
    public mutating func step(_ m: Message) {
        // A term no real cluster reaches (2^62; a term per nanosecond would take 146 years) is garbage from the
        // network: adopting it would let `term + 1` overflow at the next election.
        guard m.to == id, m.from != id, acceptsTerm(m.term) else { return }
        if m.term > term {
            switch m.body {
            case .requestVote(_, _, let preVote, let transfer):
                // Thesis §4.2.3 / §6.2: a node that heard from a leader recently ignores disruptive candidates.
                if config.checkQuorum && !transfer && (role == .leader || now < voteShieldUntil) { return }
                if !preVote { becomeFollower(term: m.term, leader: nil) }
            case .voteResponse(true, true):
                break  // a granted pre-vote echoes the term the candidate would use
            case .timeoutNow:
                // Only the leader of our own term may hand us leadership (below): a TimeoutNow from a newer term
                // comes from nobody we follow.
                return
            case .appendEntries, .heartbeat, .installSnapshot:
                becomeFollower(term: m.term, leader: m.from)
            default:
                becomeFollower(term: m.term, leader: nil)
            }
        } else if m.term < term {
            switch m.body {
            case .appendEntries, .heartbeat, .installSnapshot:
                // Tell a stale leader about the newer term so that it steps down (needed with check-quorum and
                // pre-vote, where our term may never reach it otherwise).
                send(to: m.from, .heartbeatResponse(round: 0))
            case .requestVote(_, _, true, _):
                send(to: m.from, .voteResponse(granted: false, preVote: true))
            default:
                break
            }
            return
        }

        switch m.body {
        case .requestVote(let lastIndex, let lastTerm, let preVote, _):
            handleVoteRequest(from: m.from, term: m.term, lastIndex: lastIndex, lastTerm: lastTerm, preVote: preVote)
        case .voteResponse(let granted, let preVote):
            handleVoteResponse(from: m.from, granted: granted, preVote: preVote)
        case .appendEntries(let prevIndex, let prevTerm, let entries, let commit, let round):
            acceptLeader(m.from)
            handleAppend(
                from: m.from, prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit, round: round)
        case .heartbeat(let commit, let round):
            acceptLeader(m.from)
            if commit > log.commit { log.commit = min(commit, log.lastIndex) }
            send(to: m.from, .heartbeatResponse(round: round))
        case .installSnapshot(let meta):
            acceptLeader(m.from)
            handleSnapshot(from: m.from, meta)
        case .appendResponse(let result, let round):
            guard role == .leader else { return }
            handleAppendResponse(from: m.from, result, round: round)
        case .heartbeatResponse(let round):
            guard role == .leader, var pr = progress[m.from] else { return }
            pr.lastAckAt = now
            pr.hasAnswered = true
            // A round we have not started yet is forged: acknowledging it would confirm every later round (and
            // extend the lease) without the follower ever answering them.
            pr.ackedRound = max(pr.ackedRound, min(round, self.round))
            pr.resumeProbe()
            progress[m.from] = pr
            if pr.match < log.lastIndex {
                // Behind: resume a paused probe, or (replicating) send an AppendEntries even without new entries
                // so that a follower which lost messages rejects it and the leader falls back to probing.
                if sendAppend(to: m.from, allowEmpty: true) { sendAppends(to: m.from) }
            }
            advanceQuorumRound()
        case .timeoutNow:
            // Thesis §3.10: the transferee starts an election at once, bypassing pre-vote and stickiness. The
            // election bypasses the vote shield the leader's lease relies on, so only the leader we follow in this
            // term may ask for it (the leader forfeits its lease when it starts a transfer).
            if isVoter && role == .follower && leader == m.from { campaign(transfer: true) }
        case .readIndex(let batch, let lease):
            handleFollowerReadIndex(from: m.from, batch: batch, lease: lease)
        case .readIndexResponse(let batch, let index):
            guard role == .follower, let position = followerBatches.firstIndex(where: { $0.batch == batch }),
                followerBatches[position].leader == m.from
            else { return }
            let sent = followerBatches.remove(at: position)
            if let index {
                for readID in sent.reads { confirmedReads.append(ReadState(id: readID, index: index)) }
            } else {
                for readID in sent.reads { droppedReads.append((readID, .refusedByLeader)) }
            }
        }
    }

    /// Whether a message of term `t` is plausible enough to act on. A term at or above ``maxTerm`` is garbage
    /// (adopting it would let `term + 1` overflow at the next election). Beyond that, a message may take this node
    /// at most to `max(term + 1, lastTerm + termHorizon)`: a real cluster's terms move one election at a time and
    /// every leader appends an entry of its term, so a live cluster never comes near the horizon, while a forged
    /// term just below ``maxTerm`` (which would leave every candidate's `term + 1` unacceptable to the others, and
    /// the cluster leaderless for good) is ignored. `term + 1` is always accepted, so nodes pushed to the horizon
    /// still elect each other.
    public func acceptsTerm(_ t: Term) -> Bool {
        guard t < RaftNode.maxTerm else { return false }
        return t <= max(term + 1, log.lastTerm + RaftNode.termHorizon)
    }

    // MARK: - Client operations

    /// A command to append to the log.
    public struct Proposal: Sendable, Equatable {
        public var data: [UInt8]
        public var clientID: UInt64
        public var sequence: UInt64
        public init(data: [UInt8], clientID: UInt64 = 0, sequence: UInt64 = 0) {
            self.data = data
            self.clientID = clientID
            self.sequence = sequence
        }
    }

    public enum ProposalError: Error, Sendable, Equatable {
        /// Not the leader; try `leader` if known. The command was not proposed.
        case notLeader(leader: NodeID?)
        /// A leadership transfer is in progress; retry shortly. The command was not proposed.
        case transferInProgress
    }

    /// Appends commands to the leader's log. They are sent to followers in the next `Ready`, batched with every
    /// other proposal made before it. Returns the indexes assigned; a command is applied at its index if the entry
    /// there still has the returned term when it is applied.
    public mutating func propose(_ proposals: [Proposal]) -> Result<(term: Term, indexes: ClosedRange<LogIndex>), ProposalError> {
        guard role == .leader, isVoter else { return .failure(.notLeader(leader: role == .leader ? nil : leader)) }
        guard transferee == nil else { return .failure(.transferInProgress) }
        guard !proposals.isEmpty else { return .success((term, (log.lastIndex + 1)...(log.lastIndex + 1))) }
        let first = log.lastIndex + 1
        var entries: [Entry] = []
        entries.reserveCapacity(proposals.count)
        for (offset, p) in proposals.enumerated() {
            entries.append(
                Entry(
                    term: term, index: first + LogIndex(offset), kind: .normal, clientID: p.clientID,
                    sequence: p.sequence, data: p.data))
        }
        appendAsLeader(entries)
        return .success((term, first...(first + LogIndex(proposals.count - 1))))
    }

    public enum MembershipChangeError: Error, Sendable, Equatable {
        case notLeader(leader: NodeID?)
        case transferInProgress
        /// The leader has not committed an entry of its term yet (thesis §4.1, the single-server change fix).
        case leaderNotReady
        /// Another change is not committed yet: one at a time (thesis §4.1).
        case changeInProgress
        case invalid(MembershipError)
    }

    /// Proposes a single-server membership change. It takes effect on each node as soon as the node appends it
    /// (thesis §4.1), so the leader counts the new configuration's quorums at once. `addresses` are merged into the
    /// resulting configuration's address table (for members of it only).
    public mutating func proposeMembershipChange(
        _ change: MembershipChange, addresses: [NodeID: String] = [:]
    ) -> Result<LogIndex, MembershipChangeError> {
        guard role == .leader else { return .failure(.notLeader(leader: leader)) }
        guard transferee == nil else { return .failure(.transferInProgress) }
        guard log.term(at: log.commit) == term else { return .failure(.leaderNotReady) }
        guard log.lastConfigIndex <= log.commit else { return .failure(.changeInProgress) }
        let result: Membership
        switch log.membership.applying(change) {
        case .failure(let error): return .failure(.invalid(error))
        case .success(var next):
            for (member, address) in addresses where next.contains(member) { next.addresses[member] = address }
            result = next
        }
        let index = log.lastIndex + 1
        let record = ConfigChangeRecord(change: change, result: result)
        appendAsLeader([Entry(term: term, index: index, kind: .config, data: record.encoded)])
        return .success(index)
    }

    public enum ReadRefusal: Error, Sendable, Equatable {
        case notLeader(leader: NodeID?)
        case transferInProgress
        /// No valid lease right now (expired, forfeited, or leases disabled): use ReadIndex instead.
        case noLease
        /// The leader's no-op has not committed yet.
        case notReady
    }

    /// ReadIndex (thesis §6.4): records the commit index, confirms leadership with one heartbeat round shared by
    /// every read queued before the next `ready()`, and reports `ReadState(id, index)` in a later `Ready`. Serve the
    /// read once the state machine has applied `index`. Reads arriving before the leader's no-op commits wait for it.
    ///
    /// On a follower (with `RaftConfig.followerReads` and a known leader) the read joins the batch this node sends
    /// the leader in the next `ready()`; the leader answers with its read index (at once under its lease when
    /// `lease` is set and the lease is valid, else after a heartbeat round) and the `ReadState` follows in a later
    /// `Ready`. If the leader changes, refuses or does not answer within `electionTimeoutMin`, the read is dropped.
    public mutating func readIndex(id readID: UInt64, lease: Bool = false) -> Result<Void, ReadRefusal> {
        if role == .follower, config.followerReads, leader != nil {
            if lease { followerLeaseReads.append(readID) } else { followerReads.append(readID) }
            return .success(())
        }
        guard role == .leader else { return .failure(.notLeader(leader: leader)) }
        guard transferee == nil else { return .failure(.transferInProgress) }
        if hasCommittedInTerm {
            newReads.append(ReadRequest(id: readID, from: nil))
        } else {
            waitingReads.append(ReadRequest(id: readID, from: nil))
        }
        return .success(())
    }

    /// Leader side of a follower read (thesis §6.4): the commit index at arrival, confirmed by the lease or by the
    /// next heartbeat round, goes back to the follower.
    private mutating func handleFollowerReadIndex(from follower: NodeID, batch: UInt64, lease: Bool) {
        // A member that floods requests while no round confirms (a leader cut off from its quorum) must not grow the
        // queues without bound: beyond `maxQueuedReads` its batch is refused (the follower's reads fail, safely).
        let queued = waitingReads.count + newReads.count + pendingReads.count
        guard role == .leader, transferee == nil, progress[follower] != nil, departing[follower] == nil,
            queued < Self.maxQueuedReads
        else {
            send(to: follower, .readIndexResponse(batch: batch, index: nil))
            return
        }
        if config.planted(.followerReadWithoutConfirmation) {
            send(to: follower, .readIndexResponse(batch: batch, index: log.commit))
            return
        }
        if lease, hasCommittedInTerm, case .success(let index) = leaseRead(now: now) {
            send(to: follower, .readIndexResponse(batch: batch, index: index))
            return
        }
        let request = ReadRequest(id: batch, from: follower)
        if hasCommittedInTerm { newReads.append(request) } else { waitingReads.append(request) }
    }

    /// A confirmed read: this node's own goes to the next `Ready`, a follower's batch back to the follower.
    private mutating func confirm(_ read: ReadRequest, index: LogIndex) {
        if let follower = read.from {
            send(to: follower, .readIndexResponse(batch: read.id, index: index))
        } else {
            confirmedReads.append(ReadState(id: read.id, index: index))
        }
    }

    /// Sends the reads queued on this follower since the last `ready()` to its leader, one batch per kind.
    private mutating func flushFollowerReads() {
        guard !followerReads.isEmpty || !followerLeaseReads.isEmpty else { return }
        guard role == .follower, let leader else {
            dropFollowerReads(.leaderChanged)
            return
        }
        if !followerReads.isEmpty {
            sendFollowerBatch(followerReads, lease: false, to: leader)
            followerReads = []
        }
        if !followerLeaseReads.isEmpty {
            sendFollowerBatch(followerLeaseReads, lease: true, to: leader)
            followerLeaseReads = []
        }
    }

    private mutating func sendFollowerBatch(_ reads: [UInt64], lease: Bool, to leader: NodeID) {
        nextFollowerBatch += 1
        followerBatches.append((nextFollowerBatch, reads, leader, now))
        send(to: leader, .readIndex(batch: nextFollowerBatch, lease: lease))
    }

    /// Fails every follower read queued or in flight (the leader changed, or this node is no longer a follower).
    private mutating func dropFollowerReads(_ reason: DropReason) {
        for readID in followerReads + followerLeaseReads { droppedReads.append((readID, reason)) }
        for sent in followerBatches {
            for readID in sent.reads { droppedReads.append((readID, reason)) }
        }
        followerReads.removeAll()
        followerLeaseReads.removeAll()
        followerBatches.removeAll()
    }

    /// A batch the leader has not answered within an election timeout was lost with its link: fail its reads.
    private mutating func expireFollowerBatches() {
        while let oldest = followerBatches.first, now - min(now, oldest.sentAt) >= config.electionTimeoutMin {
            followerBatches.removeFirst()
            for readID in oldest.reads { droppedReads.append((readID, .noAnswer)) }
        }
    }

    /// Lease read (thesis §6.4.1): with a valid lease the leader serves at its commit index without a round trip.
    ///
    /// `now` must be read from the clock at the moment of the request, not taken from the last tick: a process that
    /// was paused (GC, SIGSTOP, a slow VM) would otherwise trust a lease that expired while it slept.
    public func leaseRead(now clock: UInt64) -> Result<LogIndex, ReadRefusal> {
        guard role == .leader else { return .failure(.notLeader(leader: leader)) }
        guard transferee == nil else { return .failure(.transferInProgress) }
        guard hasCommittedInTerm else { return .failure(.notReady) }
        let reference = config.planted(.leaseWithStaleClock) ? now : max(clock, now)
        guard config.leaseReadsEnabled, !leaseForfeited, leaseExpiry > reference else {
            return .failure(.noLease)
        }
        return .success(log.commit)
    }

    public enum TransferError: Error, Sendable, Equatable {
        case notLeader(leader: NodeID?)
        case targetIsLearner(NodeID)
        case unknownTarget(NodeID)
    }

    /// Leadership transfer (thesis §3.10): stop taking proposals, bring the target up to date, send TimeoutNow.
    /// Aborted after `electionTimeoutMin` if the target has not taken over.
    public mutating func transferLeadership(to target: NodeID) -> Result<Void, TransferError> {
        guard role == .leader else { return .failure(.notLeader(leader: leader)) }
        if target == id { return .success(()) }
        if log.membership.learners.contains(target) { return .failure(.targetIsLearner(target)) }
        guard log.membership.voters.contains(target), progress[target] != nil else {
            return .failure(.unknownTarget(target))
        }
        if transferee == target { return .success(()) }
        transferee = target
        transferDeadline = now + config.electionTimeoutMin
        timeoutNowSent = false
        leaseForfeited = true
        leaseExpiry = 0
        if progress[target]!.match == log.lastIndex {
            sendTimeoutNow()
        } else if sendAppend(to: target, allowEmpty: true) {
            sendAppends(to: target)
        }
        return .success(())
    }

    // MARK: - Feedback from the shell

    /// The peer could not be reached: stop pipelining to it and probe again.
    public mutating func reportUnreachable(_ peer: NodeID) {
        guard role == .leader, var pr = progress[peer], pr.state == .replicate else { return }
        pr.becomeProbe()
        progress[peer] = pr
    }

    /// Sending a snapshot to `peer` finished; on failure the leader probes again (and may resend it).
    public mutating func reportSnapshot(_ peer: NodeID, success: Bool) {
        guard role == .leader, var pr = progress[peer], pr.state == .snapshot else { return }
        if !success {
            pr.becomeProbe()
            progress[peer] = pr
        }
    }

    /// Metadata for a snapshot of the state machine taken after applying `index` (which must not be compacted).
    public func snapshotMetadata(at index: LogIndex) -> SnapshotMetadata? {
        guard index <= log.handedApply, let t = log.term(at: index) else { return nil }
        return SnapshotMetadata(index: index, term: t, membership: log.membership(at: index))
    }

    /// Records a snapshot the shell has made durable and drops log entries before `snapshot.index + 1 - retain`
    /// from memory. The shell compacts its own storage the same way.
    public mutating func compact(snapshot: SnapshotMetadata, retain: UInt64) {
        let keepFrom = snapshot.index + 1 > retain ? snapshot.index + 1 - retain : 1
        log.compact(snapshot: snapshot, before: keepFrom)
    }

    // MARK: - Output

    /// Collects everything to persist, send and apply since the last call. See `Ready` for the order.
    public mutating func ready() -> Ready {
        flushFollowerReads()
        if role == .leader {
            flushReads()
            if needsBroadcast {
                needsBroadcast = false
                for peer in progress.keys.sorted() { sendAppends(to: peer) }
            }
        }
        var rd = Ready()
        let soft = softState
        if soft != handedSoftState {
            rd.softState = soft
            handedSoftState = soft
        }
        if let snap = log.pendingSnapshot {
            rd.snapshot = snap
            log.pendingSnapshot = nil
        }
        if log.persistFrom <= log.lastIndex {
            rd.entries = Array(log.slice(from: log.persistFrom, to: log.lastIndex))
            log.persistFrom = log.lastIndex + 1
        }
        let hard = hardState
        let termOrVoteChanged = hard.term != handedHardState.term || hard.vote != handedHardState.vote
        if hard != handedHardState {
            rd.hardState = hard
            handedHardState = hard
        }
        // Apply only what is (being) persisted: everything below persistFrom was handed out for persistence, and
        // the shell persists before it applies.
        let applyTo = min(log.commit, log.persistFrom - 1)
        if applyTo > log.handedApply {
            rd.committedEntries = Array(log.slice(from: log.handedApply + 1, to: applyTo))
            log.handedApply = applyTo
        }
        if !termOrVoteChanged {
            // Thesis §10.2.1: the leader may send AppendEntries before its own entries are durable (it counts itself
            // toward commit only after `advance`). Its term and vote were persisted before it could win. Read-index
            // traffic depends on nothing being persisted, in any role, once the term is.
            let isLeader = role == .leader
            for m in outbox {
                switch m.body {
                case .appendEntries, .heartbeat, .installSnapshot, .timeoutNow:
                    if isLeader { rd.earlyMessages.append(m) } else { rd.messages.append(m) }
                case .readIndex, .readIndexResponse: rd.earlyMessages.append(m)
                default: rd.messages.append(m)
                }
            }
        } else {
            rd.messages = outbox
        }
        outbox.removeAll(keepingCapacity: true)
        rd.readStates = confirmedReads
        confirmedReads.removeAll()
        rd.droppedReads = droppedReads
        droppedReads.removeAll()
        return rd
    }

    /// Acknowledges that a `Ready`'s persistence step is done: its entries are written. `syncedThrough` says how far
    /// the log is fsynced when that is less than everything written (a MemFirst leader whose fsync follows its flush
    /// policy); `nil` means the whole Ready is fsynced. A leader counts itself toward commit only for fsynced entries,
    /// so under both strategies a write is acknowledged only once a quorum holds it on disk (docs/storage.md).
    public mutating func advance(_ rd: Ready, syncedThrough: LogIndex? = nil) {
        if let snap = rd.snapshot { log.stable = max(log.stable, min(snap.index, log.lastIndex)) }
        if let last = rd.entries.last, log.term(at: last.index) == last.term {
            log.stable = max(log.stable, last.index)
        }
        log.synced = max(log.synced, min(syncedThrough ?? log.stable, log.stable))
        if role == .leader {
            maybeCommit()
        }
    }

    /// Reports a later fsync (a MemFirst flush): the log is on disk through `index`, whose entry has `term` (checked,
    /// so that a report about entries since replaced counts for nothing).
    public mutating func markSynced(through index: LogIndex, term entryTerm: Term) {
        let index = min(index, log.stable)
        guard index > log.synced, log.term(at: index) == entryTerm else { return }
        log.synced = index
        if role == .leader { maybeCommit() }
    }

    /// How far this node's log is known to be fsynced.
    public var syncedIndex: LogIndex { log.synced }

    // MARK: - Role transitions

    private mutating func resetElectionTimer() {
        let spread = config.electionTimeoutMax - config.electionTimeoutMin
        electionDeadline = now + config.electionTimeoutMin + rng.next() % spread
    }

    /// Steps down (or stays) as follower of `leader` in `term`; a new term clears the vote (Raft §5.1).
    mutating func becomeFollower(term newTerm: Term, leader newLeader: NodeID?) {
        if newTerm != term || newLeader != leader || role != .follower { dropFollowerReads(.leaderChanged) }
        if newTerm != term {
            term = newTerm
            vote = nil
        }
        if role == .leader { clearLeaderState() }
        role = .follower
        leader = newLeader
        votes = [:]
        resetElectionTimer()
        if newLeader != nil { voteShieldUntil = now + config.electionTimeoutMin }
    }

    private mutating func clearLeaderState() {
        // A follower's batches are forgotten: the follower drops them when it learns of the new leader or term.
        for read in waitingReads + newReads where read.from == nil { droppedReads.append((read.id, .notLeader)) }
        for pending in pendingReads where pending.read.from == nil { droppedReads.append((pending.read.id, .notLeader)) }
        waitingReads.removeAll()
        newReads.removeAll()
        pendingReads.removeAll()
        progress.removeAll()
        departing.removeAll()
        roundStartedAt.removeAll()
        transferee = nil
        timeoutNowSent = false
        leaseExpiry = 0
        needsBroadcast = false
    }

    private mutating func campaign(transfer: Bool, skipPreVote: Bool = false) {
        guard isVoter else { return }
        dropFollowerReads(.leaderChanged)
        campaignIsTransfer = transfer
        let preVote = config.preVote && !transfer && !skipPreVote
        if preVote {
            role = .preCandidate
            leader = nil
        } else {
            term += 1
            vote = id
            role = .candidate
            leader = nil
        }
        votes = [id: true]
        resetElectionTimer()
        if tallyVotes() { return }
        let electionTerm = preVote ? term + 1 : term
        for peer in log.membership.voters.sorted() where peer != id {
            outbox.append(
                Message(
                    from: id, to: peer, term: electionTerm,
                    body: .requestVote(
                        lastIndex: log.lastIndex, lastTerm: log.lastTerm, preVote: preVote, transfer: transfer)))
        }
    }

    /// Counts votes; returns true when the election is decided.
    private mutating func tallyVotes() -> Bool {
        let result = Quorum.voteResult(voters: log.membership.voters, votes: votes)
        if result != .pending {
            let granted = log.membership.voters.filter { votes[$0] == true }.count
            let refused = log.membership.voters.filter { votes[$0] == false }.count
            lastElection = ElectionTally(
                term: role == .preCandidate ? term + 1 : term, preVote: role == .preCandidate, won: result == .won,
                granted: granted, refused: refused, voters: log.membership.voters.count)
        }
        switch result {
        case .won:
            if role == .preCandidate {
                campaign(transfer: campaignIsTransfer, skipPreVote: true)
                return true
            }
            becomeLeader()
            return true
        case .lost:
            becomeFollower(term: term, leader: nil)
            return true
        case .pending:
            return false
        }
    }

    private mutating func becomeLeader() {
        role = .leader
        leader = id
        votes = [:]
        leaseExpiry = 0
        leaseForfeited = false
        quorumRound = round
        nextQuorumCheck = now + config.electionTimeoutMin
        progress = [:]
        for peer in log.membership.members where peer != id {
            progress[peer] = Progress(next: log.lastIndex + 1, now: now)
        }
        // A node removed by the latest configuration entry may not hold it yet (the previous leader fell before it
        // could tell it): keep telling it until it does.
        if log.lastConfigIndex > 0, let entry = log.entry(at: log.lastConfigIndex),
            case .remove(let removed)? = ConfigChangeRecord(encoded: entry.data)?.change, removed != id
        {
            progress[removed] = Progress(next: log.lastIndex + 1, now: now)
            departing[removed] = log.lastConfigIndex
        }
        // Raft §5.4.2 / §8: commit something of our own term so that earlier entries commit with it.
        appendAsLeader([Entry(term: term, index: log.lastIndex + 1, kind: .noop)])
        // The no-op's AppendEntries asserts leadership; the first heartbeat follows one interval later.
        heartbeatDue = now + config.heartbeatInterval
    }

    private mutating func acceptLeader(_ from: NodeID) {
        if role != .follower || leader != from {
            becomeFollower(term: term, leader: from)
        } else {
            resetElectionTimer()
        }
        voteShieldUntil = now + config.electionTimeoutMin
    }

    // MARK: - Votes

    private mutating func handleVoteRequest(
        from candidate: NodeID, term requestTerm: Term, lastIndex: LogIndex, lastTerm: Term, preVote: Bool
    ) {
        // Raft §5.2: one vote per term; thesis §9.6: pre-votes are granted for a future term without changing state.
        let canVote =
            vote == candidate || (vote == nil && leader == nil) || (preVote && requestTerm > term)
        let upToDate =
            log.isUpToDate(lastIndex: lastIndex, lastTerm: lastTerm) || config.planted(.voteWithoutLogCheck)
        if canVote && upToDate {
            outbox.append(
                Message(from: id, to: candidate, term: requestTerm, body: .voteResponse(granted: true, preVote: preVote)))
            if !preVote {
                vote = candidate
                resetElectionTimer()
            }
        } else {
            send(to: candidate, .voteResponse(granted: false, preVote: preVote))
        }
    }

    private mutating func handleVoteResponse(from voter: NodeID, granted: Bool, preVote: Bool) {
        guard (role == .preCandidate && preVote) || (role == .candidate && !preVote) else { return }
        votes[voter] = granted
        _ = tallyVotes()
    }

    // MARK: - Replication, follower side

    private mutating func handleAppend(
        from leaderID: NodeID, prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex, round: UInt64
    ) {
        // A hostile but well-formed message must not reach `RaftLog.append`'s contiguity precondition or overflow
        // index arithmetic: drop anything a correct leader never sends (the transport checks this too).
        guard Self.isWellFormedAppend(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit, term: term)
        else { return }
        var prevIndex = prevIndex
        var prevTerm = prevTerm
        var entries = entries[...]
        if prevIndex < log.commit {
            // Committed entries match every leader's log (Leader Completeness, §5.4): skip what we have committed.
            entries = entries.drop { $0.index <= log.commit }
            prevIndex = log.commit
            prevTerm = log.term(at: log.commit)!
        }
        guard log.term(at: prevIndex) == prevTerm else {
            // Raft §5.3: reject, with hints for fast backtracking.
            let reply: Message.AppendResult
            if prevIndex > log.lastIndex {
                reply = .reject(rejectedIndex: prevIndex, conflictTerm: nil, conflictIndex: log.lastIndex + 1)
            } else {
                let conflictTerm = log.term(at: prevIndex)!
                var first = prevIndex
                while first > log.firstIndex, log.term(at: first - 1) == conflictTerm { first -= 1 }
                reply = .reject(rejectedIndex: prevIndex, conflictTerm: conflictTerm, conflictIndex: first)
            }
            send(to: leaderID, .appendResponse(reply, round: round))
            return
        }
        // Raft §5.3: delete a conflicting suffix, append what is new.
        for (offset, entry) in entries.enumerated() {
            if let existing = log.term(at: entry.index) {
                if existing == entry.term { continue }
                log.truncate(from: entry.index)
            }
            log.append(Array(entries.dropFirst(offset)))
            break
        }
        let lastNew = prevIndex + LogIndex(entries.count)
        if commit > log.commit { log.commit = min(commit, lastNew) }
        send(to: leaderID, .appendResponse(.success(matchIndex: lastNew), round: round))
    }

    /// AppendEntries that a correct leader of `term` could send: indexes below ``maxIndex``, entries contiguous from
    /// `prevIndex + 1`, entry terms non-decreasing from `prevTerm` and at most the leader's term.
    public static func isWellFormedAppend(
        prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex, term: Term
    ) -> Bool {
        // prevIndex < 2^62 keeps `prevIndex + 1 + offset` far from overflow for any array that fits in memory.
        guard prevIndex < maxIndex, commit < maxIndex, prevTerm <= term else { return false }
        var lastTerm = prevTerm
        for (offset, entry) in entries.enumerated() {
            guard entry.index == prevIndex + 1 + LogIndex(offset), entry.term >= lastTerm, entry.term <= term else {
                return false
            }
            lastTerm = entry.term
        }
        return true
    }

    /// Snapshot metadata a correct leader of `term` could send: a real index below ``maxIndex``, a term no newer
    /// than the sender's, and a membership with voters that are not also learners.
    public static func isWellFormedSnapshot(_ meta: SnapshotMetadata, term: Term) -> Bool {
        meta.index > 0 && meta.index < maxIndex && meta.term > 0 && meta.term <= term
            && !meta.membership.voters.isEmpty && meta.membership.voters.isDisjoint(with: meta.membership.learners)
    }

    private mutating func handleSnapshot(from leaderID: NodeID, _ meta: SnapshotMetadata) {
        guard Self.isWellFormedSnapshot(meta, term: term) else { return }
        if meta.index <= log.commit {
            send(to: leaderID, .appendResponse(.success(matchIndex: log.commit), round: 0))
        } else if log.term(at: meta.index) == meta.term {
            // Our log already holds the snapshot's last entry: it is committed, nothing to install.
            log.commit = meta.index
            send(to: leaderID, .appendResponse(.success(matchIndex: meta.index), round: 0))
        } else {
            log.restore(meta)
            send(to: leaderID, .appendResponse(.success(matchIndex: meta.index), round: 0))
        }
    }

    // MARK: - Replication, leader side

    private mutating func appendAsLeader(_ entries: [Entry]) {
        let hadConfig = entries.contains { $0.kind == .config }
        log.append(entries)
        if hadConfig { syncProgressWithMembership() }
        needsBroadcast = true
        maybeCommit()
    }

    private mutating func syncProgressWithMembership() {
        let members = log.membership.members
        for peer in members where peer != id && progress[peer] == nil {
            progress[peer] = Progress(next: log.lastIndex, now: now)
        }
        for peer in progress.keys where !members.contains(peer) {
            let removedByLast = log.lastConfigIndex == log.lastIndex
                && ConfigChangeRecord(encoded: log.entry(at: log.lastIndex)?.data ?? [])?.change == .remove(peer)
            if removedByLast && progress[peer]!.match < log.lastIndex {
                departing[peer] = log.lastIndex
            } else {
                progress[peer] = nil
                departing[peer] = nil
            }
        }
        for peer in departing.keys where members.contains(peer) { departing[peer] = nil }
        if let t = transferee, !log.membership.voters.contains(t) { transferee = nil }
    }

    /// Sends AppendEntries (or a snapshot) to `peer` until its window is full or it has everything.
    private mutating func sendAppends(to peer: NodeID) {
        while sendAppend(to: peer) {}
    }

    /// Sends one AppendEntries to `peer`; returns whether more may follow right away. With `allowEmpty`, an
    /// AppendEntries without entries is sent in the replicate state too (a consistency check of `next - 1`).
    @discardableResult
    private mutating func sendAppend(to peer: NodeID, allowEmpty: Bool = false) -> Bool {
        guard var pr = progress[peer], !pr.isPaused(maxInflight: config.maxInflightMessages) else { return false }
        let prevIndex = pr.next - 1
        guard prevIndex >= log.firstIndex - 1, let prevTerm = log.term(at: prevIndex) else {
            // The entries it needs are compacted: send the snapshot (Raft §7).
            guard let snap = log.snapshot else { return false }
            pr.becomeSnapshot(index: snap.index)
            pr.noteProgress(at: now)
            progress[peer] = pr
            send(to: peer, .installSnapshot(snap))
            return false
        }
        let entries = log.slice(
            from: pr.next, to: log.lastIndex, maxCount: config.maxEntriesPerMessage, maxBytes: config.maxBytesPerMessage)
        if entries.isEmpty && pr.state == .replicate && !allowEmpty { return false }
        pr.sentEntries(lastIndex: entries.last?.index ?? prevIndex, count: entries.count)
        progress[peer] = pr
        send(
            to: peer,
            .appendEntries(
                prevIndex: prevIndex, prevTerm: prevTerm, entries: Array(entries), commit: log.commit, round: round))
        return pr.state == .replicate && pr.next <= log.lastIndex
    }

    private mutating func handleAppendResponse(from peer: NodeID, _ result: Message.AppendResult, round ackRound: UInt64) {
        guard var pr = progress[peer] else { return }
        pr.lastAckAt = now
        pr.hasAnswered = true
        pr.ackedRound = max(pr.ackedRound, min(ackRound, round))
        switch result {
        case .success(let index):
            // A follower cannot hold more of our log than we have: a larger index is forged.
            guard index <= log.lastIndex else { return }
            let moved = pr.acknowledge(index)
            switch pr.state {
            case .probe where index >= pr.match: pr.becomeReplicate()
            case .snapshot where pr.match >= pr.pendingSnapshot: pr.becomeReplicate()
            default: break
            }
            if moved || pr.match >= log.lastIndex { pr.noteProgress(at: now) }
            progress[peer] = pr
            if let removal = departing[peer], pr.match >= removal {
                // It holds its removal: it knows, and needs nothing more from us.
                departing[peer] = nil
                progress[peer] = nil
                return
            }
            if moved {
                maybeCommit()
                if transferee == peer && pr.match == log.lastIndex { sendTimeoutNow() }
            }
            sendAppends(to: peer)
        case .reject(let rejected, let conflictTerm, let conflictIndex):
            // We never sent an AppendEntries past our last index.
            guard rejected <= log.lastIndex else { return }
            let guess = nextIndexGuess(rejected: rejected, conflictTerm: conflictTerm, conflictIndex: conflictIndex)
            if pr.reject(rejectedIndex: rejected, nextGuess: guess) {
                progress[peer] = pr
                sendAppends(to: peer)
            } else {
                progress[peer] = pr
            }
        }
        advanceQuorumRound()
    }

    /// Fast backtracking (thesis §5.3): skip a whole conflicting term per round trip.
    private func nextIndexGuess(rejected: LogIndex, conflictTerm: Term?, conflictIndex: LogIndex) -> LogIndex {
        guard let conflictTerm else { return conflictIndex }
        var i = min(rejected, log.lastIndex)
        while i >= log.firstIndex, let t = log.term(at: i), t > conflictTerm { i -= 1 }
        if log.term(at: i) == conflictTerm { return i + 1 }
        return conflictIndex
    }

    /// Raft §5.3/§5.4.2: commit the highest index stored on a quorum of voters, but only by counting entries of the
    /// current term (Figure 8). The leader counts itself only for entries it has persisted.
    private mutating func maybeCommit() {
        guard role == .leader else { return }
        let selfAcked = log.synced
        guard
            let index = Quorum.committedIndex(
                voters: log.membership.voters, acked: { $0 == id ? selfAcked : progress[$0]?.match ?? 0 })
        else { return }
        guard index > log.commit, log.term(at: index) == term || config.planted(.commitOldTermEntries) else {
            return
        }
        log.commit = index
        needsBroadcast = true
        if !waitingReads.isEmpty {
            newReads.append(contentsOf: waitingReads)
            waitingReads.removeAll()
        }
        // Thesis §4.2.2: a leader removed from the configuration steps down once the removal commits.
        if !isVoter && log.lastConfigIndex <= log.commit {
            becomeFollower(term: term, leader: nil)
        }
    }

    private mutating func sendTimeoutNow() {
        guard let target = transferee, !timeoutNowSent else { return }
        timeoutNowSent = true
        send(to: target, .timeoutNow)
    }

    // MARK: - Heartbeats, rounds, leases and reads

    private mutating func startRound() {
        round += 1
        roundStartedAt.append((round, now))
    }

    private mutating func broadcastHeartbeat() {
        startRound()
        heartbeatDue = now + config.heartbeatInterval
        for peer in progress.keys.sorted() {
            let pr = progress[peer]!
            send(to: peer, .heartbeat(commit: min(pr.match, log.commit), round: round))
        }
        advanceQuorumRound()
    }

    /// The highest round a quorum of voters has acknowledged moves reads forward and extends the lease, measured
    /// from when that round *started* (thesis §6.4.1: a conservative start time for the lease).
    private mutating func advanceQuorumRound() {
        guard role == .leader else { return }
        let current = round
        guard
            let acked = Quorum.committedIndex(
                voters: log.membership.voters, acked: { $0 == id ? current : progress[$0]?.ackedRound ?? 0 })
        else { return }
        if acked > quorumRound {
            quorumRound = acked
            if let start = roundStartedAt.last(where: { $0.round <= acked })?.at,
                config.leaseReadsEnabled, !leaseForfeited
            {
                leaseExpiry = max(leaseExpiry, start + config.leaseDuration)
            }
            roundStartedAt.removeAll { $0.round < acked }
        }
        if !pendingReads.isEmpty {
            while let first = pendingReads.first, first.round <= quorumRound {
                pendingReads.removeFirst()
                confirm(first.read, index: first.index)
            }
        }
    }

    /// Gives every read queued since the last `ready()` one shared confirmation round.
    private mutating func flushReads() {
        guard !newReads.isEmpty else { return }
        if log.membership.voters == [id] || config.planted(.readIndexWithoutQuorum) {
            let reads = newReads
            newReads.removeAll()
            for read in reads { confirm(read, index: log.commit) }
            return
        }
        startRound()
        for read in newReads { pendingReads.append((read, log.commit, round)) }
        newReads.removeAll()
        heartbeatDue = now + config.heartbeatInterval
        for peer in progress.keys.sorted() {
            let pr = progress[peer]!
            send(to: peer, .heartbeat(commit: min(pr.match, log.commit), round: round))
        }
        advanceQuorumRound()
    }

    /// Whether a quorum of voters answered within the last election timeout (self included).
    private func quorumRecentlyActive() -> Bool {
        let voters = log.membership.voters
        var active = 0
        for voter in voters {
            if voter == id {
                active += 1
            } else if let pr = progress[voter], now - min(now, pr.lastAckAt) < config.electionTimeoutMin {
                active += 1
            }
        }
        return active >= Quorum.majority(voters.count)
    }

    private mutating func send(to peer: NodeID, _ body: Message.Body) {
        outbox.append(Message(from: id, to: peer, term: term, body: body))
    }

    // MARK: - Invariants

    /// Checks the core's internal invariants (used by the simulator after every step).
    public func checkInvariants() {
        log.checkInvariants()
        if role == .leader {
            precondition(leader == id, "leader must know itself")
            for (peer, pr) in progress { precondition(pr.match < pr.next, "progress of \(peer): \(pr)") }
        }
        precondition(vote == nil || term > 0, "a vote needs a term")
    }
}

/// How an election (or a pre-vote) was decided: the votes counted when the result was known.
public struct ElectionTally: Sendable, Hashable {
    /// The term campaigned for.
    public var term: Term
    public var preVote: Bool
    public var won: Bool
    public var granted: Int
    public var refused: Int
    public var voters: Int
}
