import ClusterAPI
import Foundation
import KVStore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NodeConfig
import PeerTransport
import RaftCore
import RaftStorage
import SystemClock

/// The shell around the pure Raft core: it owns the core, the state machine and the WAL writer, and carries out
/// every `Ready` in the order the core states (persist, then send, then apply, then advance).
///
/// Threading: every mutable property is confined to `loop` (one NIO event loop). Disk I/O runs on `io`, a
/// one-thread pool, so the loop never blocks on a write or an fsync; while one Ready is being persisted the core keeps
/// taking messages and proposals, which then form the next batch (group commit). The state machine is applied on the
/// loop right after the messages went out: a put costs about a microsecond, and snapshot serialisation runs on
/// `io` from a copy-on-write image.
public final class RaftServer: @unchecked Sendable {
    public struct Settings: Sendable {
        public var raft: RaftCore.RaftConfig
        public var tickMs: Int64 = 10
        public var requestTimeoutMs: Int64 = 5000
        public var maxPendingWrites = 10_000
        public var maxPendingReads = 10_000
        public var snapshotEnabled = true
        public var snapshotEvery: UInt64 = 10_000
        public var retainedEntries: UInt64 = 1000
        /// MemFirst: how often the interval flush is checked.
        public var flushCheckMs: Int64 = 10
        /// The config files' addresses; the replicated table (`Membership.addresses`) takes precedence.
        public var addresses: [NodeID: String] = [:]
        public var selfAddress: String = ""
        /// A learner is promotable once it is not receiving a snapshot, answered within an election timeout, and is at
        /// most this many entries behind the leader's last index.
        public var promotionMaxLag: UInt64 = 100

        public init(raft: RaftCore.RaftConfig) { self.raft = raft }
    }

    public let settings: Settings
    public let loop: EventLoop
    let io: NIOThreadPool
    /// Snapshot serialisation and files: its own thread, so that writing a large image never delays the WAL.
    let snapshotIO: NIOThreadPool
    /// Serialises the snapshot store between the two threads (a received snapshot is saved on the WAL thread).
    private let snapshotLock = NIOLock()
    let log: NodeLog
    private let writer: LogWriter
    private let snapshots: SnapshotStore
    var transport: PeerTransport?
    private let startedAt = RaftServer.monotonicMillis()
    /// Where members listen: the config files' addresses overlaid with every replicated address ever seen (kept after
    /// a removal, so that the leader can still tell a removed node). Written on the loop, read anywhere.
    let addressBook: NIOLockedValueBox<[NodeID: String]>

    // MARK: loop-confined state
    private var core: RaftNode
    private var stateMachine: KVStateMachine
    /// Log time for TTLs: anchored at each applied entry's stamp, advanced by the monotonic clock (`LogClock`).
    private var logClock = LogClock()
    private var persisting = false
    /// The hard state of the last Ready handed to the WAL thread (`nil` before the first).
    private var persistedHardState: HardState?
    private var readyScheduled = false
    private var pendingWrites: [LogIndex: PendingWrite] = [:]
    private var writeDeadlines: [(deadline: UInt64, index: LogIndex)] = []
    private var writeDeadlineHead = 0
    private var readIndexWaiters: [UInt64: (deadline: UInt64, done: (Result<LogIndex, APIError>) -> Void)] = [:]
    private var applyWaiters: [(index: LogIndex, done: () -> Void)] = []
    private var nextReadID: UInt64 = 0
    private var stagedSnapshots: [LogIndex: [UInt8]] = [:]
    private var latestSnapshot: (meta: SnapshotMetadata, data: [UInt8])?
    private var snapshotInProgress = false
    private var lastSnapshotIndex: LogIndex = 0
    private var stopped = false
    private var tickTask: RepeatedTask?
    private var flushTask: RepeatedTask?
    private var lastRole: Role = .follower
    /// The configuration the transport and the address book were last synchronised with.
    private var knownMembership: Membership?
    /// What `knownMembership` was derived from: the latest configuration entry (index and term: a new leader may
    /// put another one at the same index) and the snapshot. The configuration changes only when one of them does, so
    /// the ready loop compares three integers, not two memberships.
    private var membershipKey: (configIndex: LogIndex, configTerm: Term, snapshotIndex: LogIndex)?
    /// This node knows it was removed (its latest configuration entry removes it): it serves and forwards nothing.
    private var removed = false
    /// The last leadership published through `onLeadershipChange`.
    private var leadership: (isLeader: Bool, leader: NodeID?) = (false, nil)
    private var announcedRemoval = false
    /// The admission view last published to the transport (issue #14: who may speak to this node).
    private var admitted: PeerAdmission?
    var metrics = NodeMetrics()
    /// `state_hash` of `/status`, cached per applied index (the hash is a function of it).
    private var stateHashCache: (index: LogIndex, hash: String)?
    /// Called on the loop whenever the role, the known leader or the removal of this node changes.
    var onLeadershipChange: (@Sendable (_ isLeader: Bool, _ leader: NodeID?, _ removed: Bool) -> Void)?
    private var transferWaiters: [(target: NodeID, deadline: UInt64, done: (Result<MembershipChangeResponse, APIError>) -> Void)] = []

    struct PendingWrite {
        var term: Term
        var deadline: UInt64
        var done: (Result<(LogIndex, KVResult), APIError>) -> Void
    }

    // MARK: - Boot

    /// Opens the data directory, restores the newest snapshot and boots the core from the WAL.
    public init(settings: Settings, storage: DataDirectory.Opened, strategy: RaftStorage.PersistenceStrategy,
        maxBufferedEntries: Int, loop: EventLoop, log: NodeLog) throws
    {
        self.settings = settings
        self.loop = loop
        self.log = log
        self.addressBook = NIOLockedValueBox(settings.addresses)
        self.io = NIOThreadPool(numberOfThreads: 1)
        self.snapshotIO = NIOThreadPool(numberOfThreads: 1)
        self.snapshots = storage.snapshots
        let wal = storage.wal
        var sm = KVStateMachine()
        if let stored = storage.latestSnapshot {
            let (restored, meta) = try KVStateMachine.restore(from: stored.data)
            sm = restored
            latestSnapshot = (meta, stored.data)
            lastSnapshotIndex = meta.index
        }
        if let walSnapshot = wal.snapshot, walSnapshot.index > sm.appliedIndex {
            throw NodeStartupError(
                "the log was compacted to index \(walSnapshot.index) but the newest snapshot file in "
                    + "\(storage.path)/snapshots covers only \(sm.appliedIndex): the snapshot is missing. Move the data "
                    + "directory aside and let the node catch up from the leader.")
        }
        self.stateMachine = sm
        logClock.observe(sm.clockMs, monotonicMs: RaftServer.monotonicMillis())
        self.writer = LogWriter(wal: wal, strategy: strategy, maxBufferedEntries: maxBufferedEntries)
        self.core = try RaftNode(config: settings.raft, storage: wal, now: RaftServer.monotonicMillis())
        for warning in storage.warnings { log.warn(warning) }
    }

    public func start(transport: PeerTransport) {
        io.start()
        snapshotIO.start()
        loop.execute {
            self.transport = transport
            let tick = TimeAmount.milliseconds(self.settings.tickMs)
            self.tickTask = self.loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in self.onTick() }
            if case .memFirst = self.writer.strategy {
                let every = TimeAmount.milliseconds(self.settings.flushCheckMs)
                self.flushTask = self.loop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
                    self.scheduleFlush()
                }
            }
            self.log.info("node \(self.settings.raft.id) started: \(self.core.hardState), last index \(self.core.lastIndex)")
        }
    }

    /// Stops ticking, fails what is pending, flushes the WAL. The returned future completes when everything is on
    /// disk.
    public func shutdown() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.stopped = true
            self.tickTask?.cancel()
            self.flushTask?.cancel()
            for (_, write) in self.pendingWrites {
                write.done(.failure(APIError(code: .timeout, message: "the node is shutting down; the write may or may not be applied")))
            }
            self.pendingWrites.removeAll()
            for (_, waiter) in self.readIndexWaiters {
                waiter.done(.failure(APIError(code: .unavailable, message: "the node is shutting down")))
            }
            self.readIndexWaiters.removeAll()
            let writer = self.writer
            return self.io.runIfActive(eventLoop: self.loop) {
                try writer.flush()
                writer.wal.close()
            }.always { _ in
                try? self.io.syncShutdownGracefully()
                try? self.snapshotIO.syncShutdownGracefully()
            }
        }
    }

    // MARK: - Ticks

    private func onTick() {
        guard !stopped else { return }
        let now = RaftServer.monotonicMillis()
        core.tick(now: now)
        expireDeadlines(now: now)
        completeTransfers(now: now)
        scheduleReady()
    }

    private func expireDeadlines(now: UInt64) {
        while writeDeadlineHead < writeDeadlines.count, writeDeadlines[writeDeadlineHead].deadline <= now {
            let index = writeDeadlines[writeDeadlineHead].index
            writeDeadlineHead += 1
            if let write = pendingWrites.removeValue(forKey: index) {
                write.done(.failure(APIError(code: .timeout, message: "no answer within the request timeout; the write at index \(index) may or may not be applied")))
            }
        }
        if writeDeadlineHead > 1024 && writeDeadlineHead * 2 > writeDeadlines.count {
            writeDeadlines.removeFirst(writeDeadlineHead)
            writeDeadlineHead = 0
        }
        if !readIndexWaiters.isEmpty {
            for (id, waiter) in readIndexWaiters where waiter.deadline <= now {
                readIndexWaiters[id] = nil
                waiter.done(.failure(APIError(code: .timeout, message: "leadership could not be confirmed in time")))
            }
        }
    }

    private func scheduleFlush() {
        let writer = self.writer
        io.runIfActive(eventLoop: loop) { () -> (index: LogIndex, term: Term)? in
            try writer.flushIfDue(now: RaftServer.monotonicMillis()) == nil ? nil : writer.syncedPoint
        }.whenComplete { result in
            switch result {
            case .failure(let error): self.fatal(error)
            case .success(let point):
                // A MemFirst leader counts its own entries toward commit once they are fsynced.
                guard let point, !self.stopped else { return }
                self.core.markSynced(through: point.index, term: point.term)
                self.scheduleReady()
            }
        }
    }

    // MARK: - Peer input

    func receive(_ message: Message, snapshotData: [UInt8]?) {
        // Checked on the transport's thread, not the Raft loop: a large image takes a while to hash.
        let intact = snapshotData.map(KVStateMachine.isIntactImage) ?? true
        loop.execute {
            guard !self.stopped, message.to == self.settings.raft.id else { return }
            // Messages from nodes this one has no address for are accepted: a node that missed the configuration
            // entries adding a member learns its address from the entries that member, as leader, sends it.
            if case .installSnapshot(let meta) = message.body {
                guard let data = snapshotData else { return }
                // A damaged image is dropped here, before the core accepts it; the leader sends it again.
                guard intact else {
                    self.log.warn("dropped snapshot \(meta) from node \(message.from): the image fails its checksum")
                    return
                }
                self.core.step(message)
                // Staged only if the core took it: a snapshot it ignored (older than one it took before this Ready)
                // must not replace the image the next Ready will ask for.
                if self.core.snapshotMetadata == meta { self.stagedSnapshots = [meta.index: data] }
                self.scheduleReady()
                return
            }
            self.core.step(message)
            self.scheduleReady()
        }
    }

    func peerUnreachable(_ peer: NodeID) {
        loop.execute {
            self.core.reportUnreachable(peer)
        }
    }

    // MARK: - Client operations

    /// Proposes a write; completes when it is applied (with its result), or with the error to answer.
    public func write(_ operation: KVOperation, timeoutMs: Int64? = nil) -> EventLoopFuture<(LogIndex, KVResult)> {
        write(timeoutMs: timeoutMs) { _ in operation }
    }

    /// Proposes the write `make` builds from its log-time stamp (`LogClock`, taken on the Raft loop: a TTL is
    /// counted from it).
    public func write(
        timeoutMs: Int64? = nil, _ make: @escaping @Sendable (_ stampMs: UInt64) -> KVOperation
    ) -> EventLoopFuture<(LogIndex, KVResult)> {
        let promise = loop.makePromise(of: (LogIndex, KVResult).self)
        loop.execute {
            let data = make(
                self.logClock.stamp(wallMs: NodeBackend.wallClockMillis(), monotonicMs: RaftServer.monotonicMillis())
            ).encoded
            guard !self.stopped else {
                return promise.fail(APIError(code: .unavailable, message: "the node is shutting down"))
            }
            if let refusal = self.removedRefusal() { return promise.fail(refusal) }
            guard self.pendingWrites.count < self.settings.maxPendingWrites else {
                self.metrics.overloaded += 1
                return promise.fail(APIError(code: .overloaded, message: "too many writes in flight; retry later"))
            }
            switch self.core.propose([RaftNode.Proposal(data: data)]) {
            case .success(let assigned):
                let now = RaftServer.monotonicMillis()
                let deadline = now + UInt64(timeoutMs ?? self.settings.requestTimeoutMs)
                let index = assigned.indexes.lowerBound
                self.pendingWrites[index] = PendingWrite(term: assigned.term, deadline: deadline) { result in
                    switch result {
                    case .success(let value): promise.succeed(value)
                    case .failure(let error): promise.fail(error)
                    }
                }
                self.writeDeadlines.append((deadline, index))
                self.metrics.proposed(at: now, index: index)
                self.scheduleReady()
            case .failure(.notLeader(let leader)):
                promise.fail(self.notLeaderError(leader))
            case .failure(.transferInProgress):
                promise.fail(APIError(code: .unavailable, message: "leadership transfer in progress; retry shortly"))
            }
        }
        return promise.futureResult
    }

    /// A read at the requested consistency, answered from this node's state machine once that is safe, with log
    /// time at that moment (`LogClock`: what expiry is judged by).
    public func read<T: Sendable>(
        _ consistency: ReadConsistency, _ body: @escaping @Sendable (KVStateMachine, _ logTimeMs: UInt64) -> T
    ) -> EventLoopFuture<T> {
        read(consistency) { sm in
            body(sm, self.logClock.now(wallMs: NodeBackend.wallClockMillis(), monotonicMs: RaftServer.monotonicMillis()))
        }
    }

    /// A read at the requested consistency, answered from this node's state machine once that is safe.
    public func read<T: Sendable>(
        _ consistency: ReadConsistency, _ body: @escaping @Sendable (KVStateMachine) -> T
    ) -> EventLoopFuture<T> {
        let promise = loop.makePromise(of: T.self)
        loop.execute {
            guard !self.stopped else {
                return promise.fail(APIError(code: .unavailable, message: "the node is shutting down"))
            }
            if let refusal = self.removedRefusal() { return promise.fail(refusal) }
            self.metrics.reads += 1
            switch consistency {
            case .eventual:
                promise.succeed(body(self.stateMachine))
            case .lease:
                switch self.core.leaseRead(now: RaftServer.monotonicMillis()) {
                case .success(let index):
                    self.metrics.leaseReads += 1
                    self.whenApplied(index) { promise.succeed(body(self.stateMachine)) }
                case .failure(.notLeader(let leader)):
                    promise.fail(self.notLeaderError(leader))
                case .failure(.transferInProgress):
                    promise.fail(APIError(code: .unavailable, message: "leadership transfer in progress; retry shortly"))
                case .failure(.noLease), .failure(.notReady):
                    self.readIndex(promise: promise, body)
                }
            case .linearizable:
                self.readIndex(promise: promise, body)
            }
        }
        return promise.futureResult
    }

    private func readIndex<T: Sendable>(promise: EventLoopPromise<T>, _ body: @escaping (KVStateMachine) -> T) {
        guard readIndexWaiters.count < settings.maxPendingReads else {
            return promise.fail(APIError(code: .overloaded, message: "too many reads in flight; retry later"))
        }
        nextReadID += 1
        let id = nextReadID
        switch core.readIndex(id: id) {
        case .success:
            let deadline = RaftServer.monotonicMillis() + UInt64(settings.requestTimeoutMs)
            readIndexWaiters[id] = (deadline, { result in
                switch result {
                case .success(let index): self.whenApplied(index) { promise.succeed(body(self.stateMachine)) }
                case .failure(let error): promise.fail(error)
                }
            })
            scheduleReady()
        case .failure(.notLeader(let leader)):
            promise.fail(notLeaderError(leader))
        case .failure:
            promise.fail(APIError(code: .unavailable, message: "leadership transfer in progress; retry shortly"))
        }
    }

    private func whenApplied(_ index: LogIndex, _ action: @escaping () -> Void) {
        if stateMachine.appliedIndex >= index {
            action()
        } else {
            applyWaiters.append((index, action))
        }
    }

    func notLeaderError(_ leader: NodeID?) -> APIError {
        if let leader {
            return APIError(
                code: .unavailable, message: "node \(settings.raft.id) is not the leader; node \(leader) is",
                leaderID: leader, leaderAddress: address(of: leader))
        }
        return APIError(code: .noLeader, message: "no leader is known right now (election in progress?); retry shortly")
    }

    /// Leadership transfer (thesis §3.10): completes once `target` leads, or fails after the timeout.
    public func transferLeadership(to target: NodeID, timeoutMs: Int64) -> EventLoopFuture<MembershipChangeResponse> {
        let promise = loop.makePromise(of: MembershipChangeResponse.self)
        loop.execute {
            switch self.core.transferLeadership(to: target) {
            case .success:
                if self.core.leader == target && target == self.settings.raft.id {
                    return promise.succeed(MembershipChangeResponse(nodeID: target, index: self.core.commitIndex))
                }
                let deadline = RaftServer.monotonicMillis() + UInt64(max(1, timeoutMs))
                self.transferWaiters.append((target, deadline, { result in promise.completeWith(result.mapError { $0 as any Error }) }))
                self.scheduleReady()
            case .failure(.notLeader(let leader)):
                promise.fail(self.notLeaderError(leader))
            case .failure(.targetIsLearner(let id)):
                promise.fail(APIError(code: .invalidRequest, message: "node \(id) is a learner; promote it first"))
            case .failure(.unknownTarget(let id)):
                promise.fail(APIError(code: .notFound, message: "node \(id) is not a voting member"))
            }
        }
        return promise.futureResult
    }

    private func completeTransfers(now: UInt64 = RaftServer.monotonicMillis()) {
        guard !transferWaiters.isEmpty else { return }
        transferWaiters.removeAll { waiter in
            if core.leader == waiter.target {
                waiter.done(.success(MembershipChangeResponse(nodeID: waiter.target, index: core.commitIndex)))
                return true
            }
            if now >= waiter.deadline {
                waiter.done(.failure(APIError(code: .timeout, message: "node \(waiter.target) did not take over in time")))
                return true
            }
            return false
        }
    }

    // MARK: - Membership

    /// The address to dial or to report for `id`: the replicated one, else the config file's.
    func address(of id: NodeID) -> String? {
        addressBook.withLockedValue { $0[id] }
    }

    /// Adds a learner (`/join`). Idempotent: a member already listed at `address` gets the configuration's index.
    public func join(_ id: NodeID, address: String, timeoutMs: Int64) -> EventLoopFuture<MembershipChangeResponse> {
        changeMembership(.addLearner(id), joinAddress: address, timeoutMs: timeoutMs)
    }

    /// Learner to voter (`/promote`), only once it has caught up (`Settings.promotionMaxLag`).
    public func promote(_ id: NodeID, timeoutMs: Int64) -> EventLoopFuture<MembershipChangeResponse> {
        changeMembership(.promote(id), joinAddress: nil, timeoutMs: timeoutMs)
    }

    /// Removes a member (`/remove`); removing the leader makes it step down once the change commits.
    public func remove(_ id: NodeID, timeoutMs: Int64) -> EventLoopFuture<MembershipChangeResponse> {
        changeMembership(.remove(id), joinAddress: nil, timeoutMs: timeoutMs)
    }

    private func changeMembership(_ change: MembershipChange, joinAddress: String?, timeoutMs: Int64)
        -> EventLoopFuture<MembershipChangeResponse>
    {
        let promise = loop.makePromise(of: MembershipChangeResponse.self)
        loop.execute {
            guard !self.stopped else {
                return promise.fail(APIError(code: .unavailable, message: "the node is shutting down"))
            }
            if let refusal = self.removedRefusal() { return promise.fail(refusal) }
            guard self.core.role == .leader else { return promise.fail(self.notLeaderError(self.core.leader)) }
            let node = change.node
            let membership = self.core.membership
            // Requests that are already satisfied succeed without a new entry (a retried join, a second promote).
            switch change {
            case .addLearner:
                if membership.contains(node) {
                    let known = self.address(of: node)
                    if let joinAddress, let known, !RaftServer.sameAddress(known, joinAddress) {
                        return promise.fail(
                            APIError(
                                code: .conflict,
                                message: "node \(node) is already a member, at \(known), not \(joinAddress); remove it first"))
                    }
                    return self.succeedWhenCommitted(self.core.lastConfigIndex, node: node, promise: promise)
                }
            case .promote:
                if membership.voters.contains(node) {
                    return self.succeedWhenCommitted(self.core.lastConfigIndex, node: node, promise: promise)
                }
                guard membership.learners.contains(node) else {
                    return promise.fail(APIError(code: .notFound, message: "node \(node) is not a learner of this cluster"))
                }
                if let refusal = self.catchUpRefusal(node) { return promise.fail(refusal) }
            case .remove:
                guard membership.contains(node) else {
                    return promise.fail(APIError(code: .notFound, message: "node \(node) is not a member of this cluster"))
                }
                if let refusal = self.quorumLossRefusal(removing: node) { return promise.fail(refusal) }
            }
            var addresses = self.addressBook.withLockedValue { $0 }.filter { membership.contains($0.key) }
            if let joinAddress { addresses[node] = joinAddress }
            switch self.core.proposeMembershipChange(change, addresses: addresses) {
            case .success(let index):
                self.log.always("Proposed membership change \(change) at index \(index)")
                let deadline = RaftServer.monotonicMillis() + UInt64(max(1, timeoutMs))
                self.pendingWrites[index] = PendingWrite(term: self.core.term, deadline: deadline) { result in
                    switch result {
                    case .success: promise.succeed(MembershipChangeResponse(nodeID: node, index: index))
                    case .failure(let error): promise.fail(error)
                    }
                }
                self.writeDeadlines.append((deadline, index))
                self.scheduleReady()
            case .failure(.notLeader(let leader)):
                promise.fail(self.notLeaderError(leader))
            case .failure(.transferInProgress):
                promise.fail(APIError(code: .unavailable, message: "leadership transfer in progress; retry shortly"))
            case .failure(.leaderNotReady):
                promise.fail(
                    APIError(code: .unavailable, message: "the new leader has not committed an entry of its term yet; retry shortly"))
            case .failure(.changeInProgress):
                promise.fail(
                    APIError(
                        code: .membershipChangeInProgress,
                        message: "the membership change at index \(self.core.lastConfigIndex) has not committed yet; one change at a time"))
            case .failure(.invalid(.lastVoter(let id))):
                promise.fail(APIError(code: .conflict, message: "node \(id) is the last voter and cannot be removed"))
            case .failure(.invalid(let error)):
                promise.fail(APIError(code: .conflict, message: "\(error)"))
            }
        }
        return promise.futureResult
    }

    /// Answers once the configuration entry at `index` is applied here (at once if it already is).
    private func succeedWhenCommitted(
        _ index: LogIndex, node: NodeID, promise: EventLoopPromise<MembershipChangeResponse>
    ) {
        whenApplied(index) { promise.succeed(MembershipChangeResponse(nodeID: node, index: index)) }
    }

    /// `nil` when learner `id` may be promoted; otherwise the 409 `not_caught_up` carrying its progress.
    private func catchUpRefusal(_ id: NodeID) -> APIError? {
        let last = core.lastIndex
        let now = RaftServer.monotonicMillis()
        guard let pr = core.progress[id] else {
            return APIError(
                code: .notCaughtUp, message: "node \(id) has not been heard from yet",
                progress: CatchUpProgress(matchIndex: 0, leaderLastIndex: last))
        }
        let lag = last > pr.match ? last - pr.match : 0
        let recent = pr.hasAnswered && now - min(now, pr.lastAckAt) < settings.raft.electionTimeoutMin
        guard pr.state != .snapshot, recent, lag <= settings.promotionMaxLag else {
            let why: String
            if !recent {
                why = "has not answered within the last \(settings.raft.electionTimeoutMin) ms"
            } else if pr.state == .snapshot {
                why = "is receiving a snapshot"
            } else {
                why = "is \(lag) entries behind (at most \(settings.promotionMaxLag) allowed)"
            }
            return APIError(
                code: .notCaughtUp, message: "node \(id) \(why); retry when it has caught up (dctl promote --wait)",
                progress: CatchUpProgress(matchIndex: pr.match, leaderLastIndex: last))
        }
        return nil
    }

    /// Refuses a removal after which the voters that answered within an election timeout would not form a quorum of
    /// the new configuration: it takes effect when appended, so it could never commit and the cluster would stall
    /// (etcd's strict reconfiguration check).
    private func quorumLossRefusal(removing node: NodeID) -> APIError? {
        let voters = core.membership.voters.subtracting([node])
        guard !voters.isEmpty else { return nil }
        let now = RaftServer.monotonicMillis()
        let active = voters.filter { id in
            if id == settings.raft.id { return true }
            guard let pr = core.progress[id], pr.hasAnswered else { return false }
            return now - min(now, pr.lastAckAt) < settings.raft.electionTimeoutMin
        }
        let quorum = voters.count / 2 + 1
        guard active.count < quorum else { return nil }
        return APIError(
            code: .conflict,
            message: "removing node \(node) would leave \(active.count) of \(voters.count) voters reachable, below the "
                + "quorum of \(quorum): the change could not commit; bring the unreachable voters back first")
    }

    /// The refusal a removed node gives to every client request.
    private func removedRefusal() -> APIError? {
        guard removed else { return nil }
        return APIError(
            code: .unavailable,
            message: "node \(settings.raft.id) was removed from the cluster and no longer serves requests; ask a member")
    }

    /// Keeps the address book and the transport's peers in step with the configuration, and says when this node
    /// learns that it was removed.
    private func syncMembership() {
        let key = (
            configIndex: core.lastConfigIndex, configTerm: core.term(at: core.lastConfigIndex) ?? 0,
            snapshotIndex: core.snapshotMetadata?.index ?? 0
        )
        if let known = membershipKey, known == key { return }
        membershipKey = key
        let membership = core.membership
        if let known = knownMembership, known.voters != membership.voters || known.learners != membership.learners {
            log.always("Membership changed node=\(settings.raft.id) \(membership)")
        }
        knownMembership = membership
        let book = addressBook.withLockedValue { book -> [NodeID: String] in
            for (id, address) in membership.addresses { book[id] = address }
            return book
        }
        // Every node with a known address stays dialable, members or not: a follower that appends the removal of
        // the leader must still hear the leader's answer to a request it forwarded, and the leader must still reach
        // a departing node. Links connect only when something is sent to them.
        var peers: [NodeID: (host: String, port: Int)] = [:]
        for (id, text) in book where id != settings.raft.id {
            guard let address = HostPort(text)?.dialAddress else { continue }
            peers[id] = (address.host, address.port)
        }
        transport?.updatePeers(peers)
        if core.isRemoved != removed {
            removed = core.isRemoved
            onLeadershipChange?(leadership.isLeader, leadership.leader, removed)
        }
        if core.isRemoved && !announcedRemoval {
            announcedRemoval = true
            log.always(
                "Removed from the cluster node=\(settings.raft.id) \(membership): this node no longer takes part; "
                    + "stop it, or wipe its data directory to join again")
        } else if !core.isRemoved && announcedRemoval {
            announcedRemoval = false
            log.always("Member again node=\(settings.raft.id) \(membership)")
        }
    }

    /// Tells the transport whose peer frames to take: the members of the configuration in force, the nodes a leader
    /// still tells of their removal, and the leader this node follows (a follower that appended the leader's own
    /// removal must still hear it until the removal commits); chunks only from that leader. Published before this
    /// Ready's messages go out, so a learner's first answer to the leader that added it is admitted.
    private func publishAdmission() {
        var members = core.membership.members
        members.formUnion(core.departing.keys)
        if let leader = core.leader { members.insert(leader) }
        let admission = PeerAdmission(members: members, leader: core.leader == settings.raft.id ? nil : core.leader)
        guard admission != admitted, let transport else { return }
        admitted = admission
        transport.admit(members: admission.members, leader: admission.leader)
    }

    static func sameAddress(_ a: String, _ b: String) -> Bool {
        guard let x = HostPort(a)?.dialAddress, let y = HostPort(b)?.dialAddress else { return a == b }
        return x == y
    }

    /// Whether this node should ask to join on start: it is not a voter of the bootstrap configuration and has never
    /// received a configuration from a leader.
    public func needsToJoin() -> EventLoopFuture<Bool> {
        loop.submit { self.core.hasBootstrapMembership && !self.core.isVoter }
    }

    // MARK: - Ready loop

    func scheduleReady() {
        guard !readyScheduled else { return }
        readyScheduled = true
        loop.execute {
            self.readyScheduled = false
            self.processReady()
        }
    }

    private func processReady() {
        guard !persisting, !stopped else { return }
        let rd = core.ready()
        syncMembership()
        publishAdmission()
        if rd.isEmpty { return }
        if let soft = rd.softState {
            logRoleChange(soft)
            leadership = (soft.role == .leader, soft.leader)
            onLeadershipChange?(leadership.isLeader, leadership.leader, removed)
            completeTransfers()
        }
        if let transport { for message in rd.earlyMessages { send(message, via: transport) } }
        guard rd.needsPersistence else {
            afterPersist(rd)
            return
        }
        let termAndVoteKept = rd.hardState.map { hs in
            persistedHardState.map { $0.term == hs.term && $0.vote == hs.vote } ?? false
        } ?? true
        if let hs = rd.hardState { persistedHardState = hs }
        if rd.entries.isEmpty, rd.snapshot == nil, termAndVoteKept, let hs = rd.hardState {
            // Only the commit index moved. Raft keeps it volatile (etcd's MustSync is false for it): write the record
            // in order on the WAL thread, unsynced (the next batch's fsync covers it), and do not wait for it.
            let writer = self.writer
            io.runIfActive(eventLoop: loop) {
                try writer.write(entries: [], hardState: hs, snapshot: nil, now: RaftServer.monotonicMillis())
            }.whenFailure { self.fatal($0) }
            afterPersist(rd)
            return
        }
        persisting = true
        // Entries committed and already persisted here by earlier Readies (all of them below this Ready's first new
        // entry) are applied and answered now, not after this Ready's fsync: under load a write waits for its own
        // batch's fsync only, not also for the next one's.
        // A sole voter's own copy is the whole quorum: it fsyncs at once instead of waiting for the flush policy.
        let soleVoter = core.membership.voters == [settings.raft.id]
        let appliedEarly = rd.snapshot == nil
            && (rd.committedEntries.last.map { last in rd.entries.first.map { last.index < $0.index } ?? true } ?? true)
        if appliedEarly { applyAndServe(rd) }
        let snapshotData: [UInt8]? = rd.snapshot.flatMap { stagedSnapshots.removeValue(forKey: $0.index) }
        if let snap = rd.snapshot, snapshotData == nil {
            fatal(NodeStartupError("snapshot \(snap.index) to install was not staged"))
        }
        let writer = self.writer
        let snapshots = self.snapshots
        let lock = snapshotLock
        let started = RaftServer.monotonicMillis()
        io.runIfActive(eventLoop: loop) { () -> (KVStateMachine?, LogIndex) in
            // A received snapshot is decoded here, off the Raft loop (a large image takes a while), before it is
            // recorded: an image that does not decode never reaches the WAL.
            var restored: KVStateMachine?
            if let snap = rd.snapshot, let data = snapshotData {
                do {
                    restored = try KVStateMachine.restore(from: data).0
                } catch {
                    throw NodeStartupError("snapshot \(snap) to install does not decode: \(error)")
                }
                try lock.withLock { _ = try snapshots.save(metadata: snap, data: data) }
            }
            let acknowledges = soleVoter || rd.messages.contains {
                if case .appendResponse(.success, _) = $0.body { return true }
                return false
            }
            let durability = try writer.persist(
                entries: rd.entries, hardState: rd.hardState, snapshot: rd.snapshot, acknowledges: acknowledges)
            return (restored, durability.synced)
        }.whenComplete { result in
            switch result {
            case .failure(let error):
                self.fatal(error)
            case .success(let (restored, synced)):
                self.persisting = false
                self.metrics.persistBatches += 1
                self.metrics.persistedEntries += UInt64(rd.entries.count)
                self.metrics.persistMs.record(RaftServer.monotonicMillis() - started)
                if let snap = rd.snapshot, let data = snapshotData, let restored {
                    self.installSnapshot(snap, data: data, restored: restored)
                }
                self.afterPersist(rd, applied: appliedEarly, syncedThrough: synced)
            }
        }
    }

    /// `syncedThrough`: how far the WAL is fsynced after this Ready (`nil` when the Ready wrote nothing that counts).
    private func afterPersist(_ rd: Ready, applied: Bool = false, syncedThrough: LogIndex? = nil) {
        // 2. send
        if let transport { for message in rd.messages { send(message, via: transport) } }
        // 4. advance (before applying: the commit index may move with it)
        core.advance(rd, syncedThrough: syncedThrough ?? core.syncedIndex)
        // 3. apply and serve
        if !applied { applyAndServe(rd) }
        maybeSnapshot()
        scheduleReady()
    }

    /// Step 3 of a Ready: apply its committed entries (answering their writes) and serve or fail its reads.
    private func applyAndServe(_ rd: Ready) {
        let now = RaftServer.monotonicMillis()
        for entry in rd.committedEntries { apply(entry, now: now) }
        for read in rd.readStates {
            if let waiter = readIndexWaiters.removeValue(forKey: read.id) { waiter.done(.success(read.index)) }
        }
        for dropped in rd.droppedReads {
            if let waiter = readIndexWaiters.removeValue(forKey: dropped.id) {
                waiter.done(.failure(notLeaderError(core.leader)))
            }
        }
        serveApplyWaiters()
    }

    private func send(_ message: Message, via transport: PeerTransport) {
        if case .installSnapshot(let meta) = message.body {
            if let latest = latestSnapshot, latest.meta.index == meta.index {
                transport.send(message, snapshotData: latest.data)
            } else {
                core.reportSnapshot(message.to, success: false)
            }
        } else {
            transport.send(message)
        }
    }

    private func apply(_ entry: Entry, now: UInt64) {
        let result = stateMachine.apply(entry)
        logClock.observe(stateMachine.clockMs, monotonicMs: now)
        metrics.applied += 1
        guard let write = pendingWrites.removeValue(forKey: entry.index) else { return }
        if entry.term == write.term {
            metrics.writes += 1
            metrics.writeLatency(now: now, index: entry.index)
            write.done(.success((entry.index, result)))
        } else {
            // Another leader's entry took this index: ours was never committed and never will be.
            write.done(.failure(APIError(code: .unavailable, message: "leadership changed before the write committed; it was not applied")))
        }
    }

    private func serveApplyWaiters() {
        guard !applyWaiters.isEmpty else { return }
        let applied = stateMachine.appliedIndex
        var remaining: [(index: LogIndex, done: () -> Void)] = []
        for waiter in applyWaiters {
            if waiter.index <= applied { waiter.done() } else { remaining.append(waiter) }
        }
        applyWaiters = remaining
    }

    private func installSnapshot(_ meta: SnapshotMetadata, data: [UInt8], restored: KVStateMachine) {
        stateMachine = restored
        logClock.observe(restored.clockMs, monotonicMs: RaftServer.monotonicMillis())
        latestSnapshot = (meta, data)
        lastSnapshotIndex = meta.index
        log.info("installed snapshot \(meta) (\(data.count) bytes)")
    }

    private func maybeSnapshot() {
        guard settings.snapshotEnabled, !snapshotInProgress,
            stateMachine.appliedIndex >= lastSnapshotIndex + settings.snapshotEvery,
            let meta = core.snapshotMetadata(at: stateMachine.appliedIndex)
        else { return }
        snapshotInProgress = true
        let image = stateMachine
        let writer = self.writer
        let snapshots = self.snapshots
        let lock = snapshotLock
        let retained = settings.retainedEntries
        let io = self.io
        let loop = self.loop
        // Serialise and save on the snapshot thread; then record it in the WAL and compact on the WAL thread.
        snapshotIO.runIfActive(eventLoop: loop) { () -> [UInt8] in
            let data = image.snapshot(membership: meta.membership)
            try lock.withLock { _ = try snapshots.save(metadata: meta, data: data) }
            return data
        }.flatMap { data in
            io.runIfActive(eventLoop: loop) { () -> (data: [UInt8], synced: (index: LogIndex, term: Term)?)? in
                // A newer snapshot from the leader may have been installed while this one was being written.
                if let current = writer.wal.snapshot, current.index >= meta.index { return nil }
                try writer.persist(entries: [], snapshot: meta)
                try writer.compact(before: meta.index + 1 > retained ? meta.index + 1 - retained : 1)
                return (data, writer.syncedPoint)
            }
        }.whenComplete { result in
            self.snapshotInProgress = false
            switch result {
            case .success(nil):
                self.log.info("snapshot at \(meta.index) superseded by an installed snapshot")
            case .success(let (data, synced)?):
                // Recording the snapshot fsynced the whole WAL: a MemFirst leader may now count its own entries (its
                // flush timer has nothing left to flush, so nobody else would tell the core).
                if let synced {
                    self.core.markSynced(through: synced.index, term: synced.term)
                    self.scheduleReady()
                }
                guard meta.index > self.lastSnapshotIndex else { return }
                self.latestSnapshot = (meta, data)
                self.lastSnapshotIndex = meta.index
                self.core.compact(snapshot: meta, retain: retained)
                self.metrics.snapshots += 1
                self.log.info("snapshot at \(meta.index) (\(data.count) bytes); log compacted")
            case .failure(let error):
                self.fatal(error)
            }
        }
    }

    private func logRoleChange(_ soft: SoftState) {
        let id = settings.raft.id
        switch soft.role {
        case .leader:
            log.always("Became leader node=\(id) term=\(soft.term)")
        case .follower:
            let leader = soft.leader.map { " leader=\($0)" } ?? ""
            log.always("Became follower node=\(id) term=\(soft.term)\(leader)")
        case .candidate:
            log.always("Became candidate node=\(id) term=\(soft.term)")
        case .preCandidate:
            log.always("Became pre-candidate node=\(id) term=\(soft.term)")
        }
        if soft.role != lastRole {
            if soft.role == .leader { metrics.leaderChanges += 1 }
            lastRole = soft.role
        }
        // Writes proposed while leader may still commit under the next leader: they stay pending until their
        // index is applied (answered by term) or their deadline passes (504, outcome unknown).
    }

    /// A storage failure is fatal: the WAL is unusable and an fsync is never retried.
    func fatal(_ error: Error) {
        log.error("fatal storage error, stopping: \(error)")
        exit(74)
    }

    // MARK: - Status

    /// The status document of SPEC (`/status`).
    public func status() -> EventLoopFuture<NodeStatus> {
        loop.submit {
            let core = self.core
            let now = RaftServer.monotonicMillis()
            let role: NodeRole
            switch core.role {
            case .leader: role = .leader
            case .candidate, .preCandidate: role = .candidate
            case .follower: role = core.isRemoved ? .removed : (core.isLearner ? .learner : .follower)
            }
            var peers: [PeerStatus] = []
            if core.role == .leader {
                for (id, pr) in core.progress.sorted(by: { $0.key < $1.key }) {
                    let state: PeerReplicationState
                    switch pr.state {
                    case .probe: state = .probe
                    case .replicate: state = .replicate
                    case .snapshot: state = .snapshot
                    }
                    peers.append(
                        PeerStatus(
                            id: id, address: self.address(of: id) ?? "", matchIndex: pr.match,
                            lagEntries: core.lastIndex > pr.match ? core.lastIndex - pr.match : 0,
                            lastAckMsAgo: pr.hasAnswered ? (now > pr.lastAckAt ? now - pr.lastAckAt : 0) : nil,
                            state: state))
                }
            }
            var status = NodeStatus(
                nodeID: self.settings.raft.id, address: self.settings.selfAddress, role: role, term: core.term,
                leaderID: core.leader, commitIndex: core.commitIndex, appliedIndex: self.stateMachine.appliedIndex,
                lastLogIndex: core.lastIndex, snapshotIndex: core.snapshotMetadata?.index ?? 0,
                voters: core.membership.voters.sorted(), learners: core.membership.learners.sorted(),
                leaseRemainingMs: core.leaseRemaining, uptimeMs: now - self.startedAt, peers: peers,
                stats: NodeStats(
                    writesTotal: self.metrics.writes, readsTotal: self.metrics.reads,
                    writeP99Ms: self.metrics.writeLatencyMs.quantile(0.99)))
            if self.stateHashCache?.index != self.stateMachine.appliedIndex {
                let hash = String(self.stateMachine.stateHash, radix: 16)
                self.stateHashCache = (self.stateMachine.appliedIndex, String(repeating: "0", count: 16 - hash.count) + hash)
            }
            status.stateHash = self.stateHashCache?.hash
            status.members = core.membership.members.sorted().map { id in
                MemberAddress(id: id, address: id == self.settings.raft.id ? self.settings.selfAddress : self.address(of: id) ?? "")
            }
            return status
        }
    }

    /// `status()`, or a minimal document while the loop is shutting down (the metrics port never fails).
    public func currentStatus() async -> NodeStatus {
        if let status = try? await status().get() { return status }
        return NodeStatus(
            nodeID: settings.raft.id, address: settings.selfAddress, role: .follower, term: 0, leaderID: nil,
            commitIndex: 0, appliedIndex: 0, lastLogIndex: 0, snapshotIndex: 0, voters: [], learners: [],
            leaseRemainingMs: 0, uptimeMs: RaftServer.monotonicMillis() - startedAt, peers: [], stats: NodeStats())
    }

    /// Members and leader for `/cluster`.
    public func cluster() -> EventLoopFuture<ClusterResponse> {
        loop.submit {
            let m = self.core.membership
            var members: [ClusterMember] = []
            for id in m.members.sorted() {
                members.append(
                    ClusterMember(
                        id: id, address: self.address(of: id) ?? "",
                        role: id == self.core.leader ? .leader : (m.learners.contains(id) ? .learner : .follower),
                        status: m.learners.contains(id) ? .promotable : .active))
            }
            return ClusterResponse(leaderID: self.core.leader, term: self.core.term, members: members)
        }
    }

    /// Prometheus text for `/metrics`.
    public func metricsText() -> EventLoopFuture<String> {
        loop.submit {
            self.metrics.render(
                node: self.settings.raft.id, core: self.core, applied: self.stateMachine.appliedIndex,
                keys: self.stateMachine.count, pendingWrites: self.pendingWrites.count,
                pendingReads: self.readIndexWaiters.count, peerRefusals: self.transport?.refusals() ?? [:])
        }
    }

    static func monotonicMillis() -> UInt64 { MonotonicClock.milliseconds() }
}
