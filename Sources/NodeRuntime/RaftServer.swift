import ClusterAPI
import Foundation
import HTTPAPI
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
/// the snapshot thread (`SnapshotFiles`) from a copy-on-write image. The loop-confined parts each hold one job:
/// `PendingRequests`, `MembershipTracker`, `SnapshotSchedule`, `DiskSpace`, `WatchHub`.
// @unchecked Sendable: every mutable property is confined to `loop` (see above); the rest are `let`s or locked boxes.
final class RaftServer: ReadyHost, @unchecked Sendable {
    public struct Settings: Sendable {
        public var raft: RaftCore.RaftConfig
        public var tickMs: Int64 = 10
        public var requestTimeoutMs: Int64 = 5000
        public var maxPendingWrites = 10_000
        public var maxPendingReads = 10_000
        public var snapshotEnabled = true
        public var snapshotEvery: UInt64 = 100_000
        /// A snapshot is also taken once this many bytes of entries were applied since the last one, so that large
        /// values cannot grow the in-memory log without bound between snapshots.
        public var snapshotEveryBytes: UInt64 = 64 << 20
        public var retainedEntries: UInt64 = 1000
        /// The entries kept after a snapshot (for slow followers) hold at most about this many bytes.
        public var retainedBytes: UInt64 = 32 << 20
        /// Bytes of entries in the log not yet applied: a write that would go past it is refused with
        /// `429 overloaded` (nothing proposed), so a burst of large values cannot grow the log without bound.
        public var maxUnappliedBytes: UInt64 = 128 << 20
        /// MemFirst: how often the interval flush is checked.
        public var flushCheckMs: Int64 = 10
        /// The config files' addresses; the replicated table (`Membership.addresses`) takes precedence.
        public var addresses: [NodeID: String] = [:]
        public var selfAddress: String = ""
        /// A learner is promotable once it is not receiving a snapshot, answered within an election timeout, and is at
        /// most this many entries behind the leader's last index.
        public var promotionMaxLag: UInt64 = 100
        /// `quota_backend_bytes`: above it the `NOSPACE` alarm is raised and writes are refused (`507 no_space`).
        public var quotaBackendBytes: UInt64 = 8 << 30
        /// How often the data directory's size is measured.
        public var usageCheckMs: UInt64 = 1000
        /// `[watch]`: the change history and how often watchers get `event: progress`.
        var watchHistory = WatchHub.Settings()
        var watchProgressMs: Int64 = 1000

        public init(raft: RaftCore.RaftConfig) { self.raft = raft }
    }

    public let settings: Settings
    /// Whether this node serves lease and linearizable reads as a follower (`[raft.read_consistency] follower_reads`).
    public var followerReads: Bool { settings.raft.followerReads }
    public let loop: EventLoop
    let io: NIOThreadPool
    /// The data directory (`db_root_dir`), measured against the quota.
    let dataPath: String
    /// The `NOSPACE` alarm, if raised: written on the loop (a copy of `space.alarm`), read by HTTP threads (writes are
    /// refused while it is).
    let alarmBox = NIOLockedValueBox<NodeAlarm?>(nil)
    /// Snapshot files and the thread that writes them (never the WAL's).
    let snapshotFiles: SnapshotFiles
    let log: NodeLog
    private let writer: LogWriter
    /// Injected at construction: read on the loop (sends, peers, admission) and from HTTP threads (forwarding).
    let transport: PeerTransport
    private let startedAt = RaftServer.monotonicMillis()
    /// Where members listen: the config files' addresses overlaid with every replicated address ever seen (kept after
    /// a removal, so that the leader can still tell a removed node). Written on the loop, read anywhere.
    let addressBook: NIOLockedValueBox<[NodeID: String]>

    // MARK: loop-confined state
    var core: RaftNode
    private var stateMachine: KVStateMachine
    /// Log time for TTLs: anchored at each applied entry's stamp, advanced by the monotonic clock (`LogClock`).
    private var logClock = LogClock()
    /// Runs every Ready in Raft's order (`ReadyExecutor`, shared with the simulator).
    private let executor = ReadyExecutor()
    private var readyScheduled = false
    /// Writes, reads, apply waiters and transfers awaiting an answer, with their deadlines.
    private var pending = PendingRequests()
    /// Watches and the change history they resume from.
    private var watches: WatchHub
    private var progressTask: RepeatedTask?
    /// An empty transaction proposed to let expiries pass is in flight (`proposeExpiryTickIfDue`).
    private var expiryTickInFlight = false
    /// The applied changes of the entry being applied (reused across entries).
    private var changes: [KVChange] = []
    /// When to take a snapshot; the newest one's image; a received one staged until its Ready.
    private var snapshots: SnapshotSchedule
    /// The data directory against the quota, the NOSPACE alarm, log writes waiting for space.
    private var space: DiskSpace
    /// Bytes of entry data handed to the log and not yet applied (`Settings.maxUnappliedBytes`); an estimate that
    /// may only over-count (a follower's truncated suffix), and returns to 0 whenever everything is applied.
    private(set) var unappliedBytes: UInt64 = 0
    private var stopped = false
    private var tickTask: RepeatedTask?
    /// The newest commit-index-only hard state not yet handed to the WAL thread (see `persist`).
    private var deferredCommitState: HardState?
    private var flushTask: RepeatedTask?
    private var lastRole: Role = .follower
    /// The configuration, removal and admission last acted on.
    private var membershipTracker: MembershipTracker
    private var removed: Bool { membershipTracker.removed }
    /// The last leadership published through `onLeadershipChange`.
    private var leadership: (isLeader: Bool, leader: NodeID?) = (false, nil)
    var metrics = NodeMetrics()
    /// What this node saw (`GET /events`): written on the loop, read by the metrics port under its lock.
    let events: EventRing
    /// Derives role, election, peer and fsync events (`RaftServer+Events.swift`). Loop-confined.
    var eventRecorder = EventRecorder()
    /// `state_hash` of `/status`, cached per applied index (the hash is a function of it).
    private var stateHashCache: (index: LogIndex, hash: String)?
    /// The `state_hash` being computed on `hashIO`, and for which applied index (at most one at a time).
    private var stateHashInFlight: (index: LogIndex, hash: EventLoopFuture<String>)?
    /// Hashes the whole state for `/status` (FNV-1a over every key and value: seconds for a large state in a debug
    /// build), so that neither the loop nor the WAL or snapshot threads wait for it.
    let hashIO: NIOThreadPool
    /// Called on the loop whenever the role, the known leader or the removal of this node changes.
    var onLeadershipChange: (@Sendable (_ isLeader: Bool, _ leader: NodeID?, _ removed: Bool) -> Void)?

    // MARK: - Boot

    /// Opens the data directory, restores the newest snapshot and boots the core from the WAL.
    init(settings: Settings, storage: DataDirectory.Opened, strategy: RaftStorage.PersistenceStrategy,
        maxBufferedEntries: Int, loop: EventLoop, transport: PeerTransport, log: NodeLog) throws
    {
        self.transport = transport
        self.dataPath = storage.path
        self.membershipTracker = MembershipTracker(selfID: settings.raft.id)
        self.settings = settings
        self.loop = loop
        self.log = log
        self.addressBook = NIOLockedValueBox(settings.addresses)
        self.events = EventRing(nodeID: settings.raft.id, bootWallMs: NodeBackend.wallClockMillis())
        self.io = NIOThreadPool(numberOfThreads: 1)
        self.hashIO = NIOThreadPool(numberOfThreads: 1)
        self.snapshotFiles = SnapshotFiles(store: storage.snapshots)
        self.space = DiskSpace(quotaBytes: settings.quotaBackendBytes, checkEveryMs: settings.usageCheckMs)
        let wal = storage.wal
        var sm = KVStateMachine()
        var restoredSnapshot: (meta: SnapshotMetadata, data: [UInt8])?
        if let stored = storage.latestSnapshot {
            let (restored, meta) = try KVStateMachine.restore(from: stored.data)
            sm = restored
            restoredSnapshot = (meta, stored.data)
        }
        self.snapshots = SnapshotSchedule(
            enabled: settings.snapshotEnabled, every: settings.snapshotEvery, everyBytes: settings.snapshotEveryBytes,
            retainedEntries: settings.retainedEntries, retainedBytes: settings.retainedBytes, restored: restoredSnapshot)
        if let walSnapshot = wal.snapshot, walSnapshot.index > sm.appliedIndex {
            throw NodeStartupError(
                "the log was compacted to index \(walSnapshot.index) but the newest snapshot file in "
                    + "\(storage.path)/snapshots covers only \(sm.appliedIndex): the snapshot is missing. Move the data "
                    + "directory aside and let the node catch up from the leader.")
        }
        self.stateMachine = sm
        self.watches = WatchHub(settings: settings.watchHistory, appliedIndex: sm.appliedIndex)
        logClock.observe(sm.clockMs, monotonicMs: RaftServer.monotonicMillis())
        self.writer = LogWriter(wal: wal, strategy: strategy, maxBufferedEntries: maxBufferedEntries)
        self.core = try RaftNode(config: settings.raft, storage: wal, now: RaftServer.monotonicMillis())
        for warning in storage.warnings { log.warn(warning) }
    }

    /// Starts ticking. Call it before the client port accepts requests.
    func start() {
        io.start()
        snapshotFiles.thread.start()
        hashIO.start()
        loop.execute {
            let tick = TimeAmount.milliseconds(self.settings.tickMs)
            self.tickTask = self.loop.scheduleRepeatedTask(initialDelay: tick, delay: tick) { _ in self.onTick() }
            let progress = TimeAmount.milliseconds(self.settings.watchProgressMs)
            self.progressTask = self.loop.scheduleRepeatedTask(initialDelay: progress, delay: progress) { _ in
                self.watches.progress(appliedIndex: self.stateMachine.appliedIndex)
            }
            if case .memFirst = self.writer.strategy {
                let every = TimeAmount.milliseconds(self.settings.flushCheckMs)
                self.flushTask = self.loop.scheduleRepeatedTask(initialDelay: every, delay: every) { _ in
                    self.scheduleFlush()
                }
            }
            self.log.info("node \(self.settings.raft.id) started: \(self.core.hardState), last index \(self.core.lastIndex)")
            self.recordEvent(.started, "started at term \(self.core.term), last index \(self.core.lastIndex)")
        }
    }

    /// Stops ticking, fails what is pending, flushes the WAL. The returned future completes when everything is on
    /// disk.
    public func shutdown() -> EventLoopFuture<Void> {
        loop.flatSubmit {
            self.stopped = true
            self.tickTask?.cancel()
            self.progressTask?.cancel()
            self.flushTask?.cancel()
            Self.run(self.pending.failAll())
            let writer = self.writer
            let deferred = self.deferredCommitState
            self.deferredCommitState = nil
            return self.io.runIfActive(eventLoop: self.loop) {
                if let deferred {
                    try writer.write(entries: [], hardState: deferred, snapshot: nil, now: RaftServer.monotonicMillis())
                }
                try writer.flush()
                writer.wal.close()
            }.always { _ in
                try? self.io.syncShutdownGracefully()
                try? self.snapshotFiles.thread.syncShutdownGracefully()
                try? self.hashIO.syncShutdownGracefully()
            }
        }
    }

    // MARK: - Ticks

    private func onTick() {
        guard !stopped else { return }
        let now = RaftServer.monotonicMillis()
        core.tick(now: now)
        writeDeferredCommitState()
        if space.startMeasurement(now: now) { measureUsage() }
        recordPeerChanges(now: now)
        Self.run(pending.expire(now: now))
        Self.run(pending.completeTransfers(leader: core.leader, commitIndex: core.commitIndex, now: now))
        proposeExpiryTickIfDue()
        scheduleReady()
    }

    /// Keys expire when an applied entry's stamp passes their expiry (the state machine's clock is the log's). On a
    /// cluster without writes that would wait for the next write, and watchers would hear of the expiry late: the
    /// leader proposes an empty transaction (it changes nothing but the clock) once a key's expiry has passed by log
    /// time, one at a time.
    private func proposeExpiryTickIfDue() {
        guard core.role == .leader, !expiryTickInFlight, !space.raised, let due = stateMachine.nextExpiryMs,
            logClock.now(wallMs: NodeBackend.wallClockMillis(), monotonicMs: RaftServer.monotonicMillis()) >= due
        else { return }
        expiryTickInFlight = true
        let empty = KVCommand.txn(KVTransaction(compare: [], success: [], failure: []))
        write { stamp in KVOperation(timestampMs: stamp, command: empty) }.whenComplete { _ in
            self.expiryTickInFlight = false
        }
    }

    private func scheduleFlush() {
        let writer = self.writer
        io.runIfActive(eventLoop: loop) { () -> (point: (index: LogIndex, term: Term)?, ms: UInt64)? in
            let began = RaftServer.monotonicMillis()
            guard try writer.flushIfDue(now: began) != nil else { return nil }
            return (writer.syncedPoint, RaftServer.monotonicMillis() - began)
        }.whenComplete { result in
            switch result {
            case .failure(let error): self.fatal(error)
            case .success(let flushed):
                if let flushed, !self.stopped { self.recordFsync(ms: flushed.ms) }
                // A MemFirst leader counts its own entries toward commit once they are fsynced.
                guard let point = flushed?.point, !self.stopped else { return }
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
                if self.core.snapshotMetadata == meta {
                    self.snapshots.stage(meta, data: data)
                    self.recordEvent(
                        .snapshotReceived, "received snapshot at index \(meta.index) (\(data.count) bytes) from node "
                            + "\(message.from)", peer: message.from, index: meta.index, bytes: UInt64(data.count))
                }
                self.scheduleReady()
                return
            }
            // A lease is judged by the clock now, not at the last tick: a process that was paused must not trust a
            // lease that expired while it slept.
            if case .readIndex(_, true) = message.body { self.core.tick(now: RaftServer.monotonicMillis()) }
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
    ///
    /// `eventLoop` is where the returned future completes (the caller's: no hop back is needed); the Raft loop's
    /// when `nil`.
    public func write(
        timeoutMs: Int64? = nil, on eventLoop: (any EventLoop)? = nil,
        _ make: @escaping @Sendable (_ stampMs: UInt64) -> KVOperation
    ) -> EventLoopFuture<(LogIndex, KVResult)> {
        let promise = (eventLoop ?? loop).makePromise(of: (LogIndex, KVResult).self)
        loop.execute {
            let data = make(
                self.logClock.stamp(wallMs: NodeBackend.wallClockMillis(), monotonicMs: RaftServer.monotonicMillis())
            ).encoded
            guard !self.stopped else {
                return promise.fail(APIError(code: .unavailable, message: "the node is shutting down"))
            }
            if let refusal = self.removedRefusal() { return promise.fail(refusal) }
            if let refusal = self.noSpaceRefusal() { return promise.fail(refusal) }
            guard self.pending.writeCount < self.settings.maxPendingWrites else {
                self.metrics.overloaded += 1
                return promise.fail(APIError(code: .overloaded, message: "too many writes in flight; retry later"))
            }
            guard self.unappliedBytes + UInt64(data.count) <= self.settings.maxUnappliedBytes
                || self.unappliedBytes == 0
            else {
                self.metrics.overloaded += 1
                return promise.fail(
                    APIError(
                        code: .overloaded,
                        message: "\(self.unappliedBytes) bytes of writes are not yet applied (the cap is "
                            + "\(self.settings.maxUnappliedBytes)); retry later"))
            }
            switch self.core.propose([RaftNode.Proposal(data: data)]) {
            case .success(let assigned):
                let now = RaftServer.monotonicMillis()
                let deadline = now + UInt64(timeoutMs ?? self.settings.requestTimeoutMs)
                let index = assigned.indexes.lowerBound
                Self.run(self.pending.addWrite(index: index, term: assigned.term, deadline: deadline) { result in
                    promise.completeWith(result.mapError { $0 as any Error })
                })
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
        _ consistency: ReadConsistency, on eventLoop: (any EventLoop)? = nil,
        _ body: @escaping @Sendable (KVStateMachine, _ logTimeMs: UInt64) -> T
    ) -> EventLoopFuture<T> {
        read(consistency, on: eventLoop) { sm in
            body(sm, self.logClock.now(wallMs: NodeBackend.wallClockMillis(), monotonicMs: RaftServer.monotonicMillis()))
        }
    }

    /// A read at the requested consistency, answered from this node's state machine once that is safe.
    ///
    /// `eventLoop` is where the returned future completes (the caller's: no hop back is needed); the Raft loop's
    /// when `nil`.
    public func read<T: Sendable>(
        _ consistency: ReadConsistency, on eventLoop: (any EventLoop)? = nil,
        _ body: @escaping @Sendable (KVStateMachine) -> T
    ) -> EventLoopFuture<T> {
        let promise = (eventLoop ?? loop).makePromise(of: T.self)
        loop.execute {
            guard !self.stopped else {
                return promise.fail(APIError(code: .unavailable, message: "the node is shutting down"))
            }
            if let refusal = self.removedRefusal() { return promise.fail(refusal) }
            self.metrics.reads += 1
            switch consistency {
            case .eventual:
                promise.succeed(self.withStateMachine(body))
            case .lease:
                switch self.withCore({ $0.leaseRead(now: RaftServer.monotonicMillis()) }) {
                case .success(let index):
                    self.metrics.leaseReads += 1
                    self.whenApplied(index) { promise.succeed(self.withStateMachine(body)) }
                case .failure(.notLeader(.some)) where self.settings.raft.followerReads:
                    // A follower asks the leader, which answers at once under its lease.
                    self.readIndex(promise: promise, lease: true, body)
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

    /// ReadIndex on the leader, or on a follower a read index asked of the leader (`lease`: the leader may answer
    /// under its lease).
    private func readIndex<T: Sendable>(
        promise: EventLoopPromise<T>, lease: Bool = false, _ body: @escaping (KVStateMachine) -> T
    ) {
        guard pending.readCount < settings.maxPendingReads else {
            return promise.fail(APIError(code: .overloaded, message: "too many reads in flight; retry later"))
        }
        let id = pending.nextRead()
        switch core.readIndex(id: id, lease: lease) {
        case .success:
            if core.role != .leader { metrics.followerReads += 1 }
            let deadline = RaftServer.monotonicMillis() + UInt64(settings.requestTimeoutMs)
            pending.addRead(id: id, deadline: deadline) { result in
                switch result {
                case .success(let index): self.whenApplied(index) { promise.succeed(self.withStateMachine(body)) }
                case .failure(let error): promise.fail(error)
                }
            }
            scheduleReady()
        case .failure(.notLeader(let leader)):
            promise.fail(notLeaderError(leader))
        case .failure:
            promise.fail(APIError(code: .unavailable, message: "leadership transfer in progress; retry shortly"))
        }
    }

    private func whenApplied(_ index: LogIndex, _ action: @escaping () -> Void) {
        if stateMachine.appliedIndex >= index { action() } else { pending.addApplyWaiter(index, action) }
    }

    /// Runs the answers `PendingRequests` returned, once its mutation is over.
    private static func run(_ answers: PendingRequests.Answers) {
        for answer in answers { answer() }
    }

    /// Why a read the core dropped failed, for its client: safe to retry in every case (nothing was read).
    func readDroppedError(_ reason: DropReason) -> APIError {
        switch reason {
        case .notLeader, .leadershipTransfer:
            return notLeaderError(core.leader)
        case .leaderChanged, .refusedByLeader, .noAnswer:
            let leader = core.leader
            return APIError(
                code: leader == nil ? .noLeader : .unavailable,
                message: "the leader did not confirm this follower read (\(reason.rawValue)); retry shortly",
                leaderID: leader, leaderAddress: leader.flatMap { address(of: $0) })
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
                self.pending.addTransfer(to: target, deadline: deadline) { result in
                    promise.completeWith(result.mapError { $0 as any Error })
                }
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

    // MARK: - Membership

    /// The address to dial or to report for `id`: the replicated one, else the config file's, in a form a client can
    /// dial (a wildcard host such as `0.0.0.0` becomes `127.0.0.1`).
    func address(of id: NodeID) -> String? {
        addressBook.withLockedValue { $0[id] }.map { HostPort($0)?.dialAddress.description ?? $0 }
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
                let peers = MembershipGuard.peers(of: self.core, now: RaftServer.monotonicMillis())
                if let refusal = self.membershipGuard.catchUpRefusal(
                    node, peer: peers[node], leaderLastIndex: self.core.lastIndex)
                {
                    return promise.fail(refusal)
                }
            case .remove:
                guard membership.contains(node) else {
                    return promise.fail(APIError(code: .notFound, message: "node \(node) is not a member of this cluster"))
                }
                let peers = MembershipGuard.peers(of: self.core, now: RaftServer.monotonicMillis())
                if let refusal = self.membershipGuard.quorumLossRefusal(
                    removing: node, voters: membership.voters, peers: peers)
                {
                    return promise.fail(refusal)
                }
            }
            var addresses = self.addressBook.withLockedValue { $0 }.filter { membership.contains($0.key) }
            if let joinAddress { addresses[node] = joinAddress }
            switch self.core.proposeMembershipChange(change, addresses: addresses) {
            case .success(let index):
                self.log.always("Proposed membership change \(change) at index \(index)")
                let deadline = RaftServer.monotonicMillis() + UInt64(max(1, timeoutMs))
                Self.run(self.pending.addWrite(index: index, term: self.core.term, deadline: deadline) { result in
                    promise.completeWith(result.map { _ in MembershipChangeResponse(nodeID: node, index: index) }.mapError { $0 as any Error })
                })
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

    private var membershipGuard: MembershipGuard {
        MembershipGuard(
            selfID: settings.raft.id, reachableWithinMs: settings.raft.electionTimeoutMin,
            promotionMaxLag: settings.promotionMaxLag)
    }

    /// The refusal of a write while the NOSPACE alarm is raised (`507`: nothing proposed). Any thread.
    func noSpaceRefusal() -> APIError? {
        alarmBox.withLockedValue { $0 }.map { DiskSpace.refusal($0, nodeID: settings.raft.id) }
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
        guard let change = withCore({ membershipTracker.update($0) }) else { return }
        if let line = change.changedLine {
            log.always(line)
            recordEvent(.membershipChanged, line)
        }
        let book = addressBook.withLockedValue { book -> [NodeID: String] in
            for (id, address) in change.membership.addresses { book[id] = address }
            return book
        }
        transport.updatePeers(MembershipTracker.dialable(book, selfID: settings.raft.id))
        if change.removedChanged { onLeadershipChange?(leadership.isLeader, leadership.leader, removed) }
        if let line = change.removalLine { log.always(line) }
    }

    /// Tells the transport whose peer frames to take, before this Ready's messages go out (so a learner's first
    /// answer to the leader that added it is admitted).
    private func publishAdmission() {
        guard let admission = withCore({ membershipTracker.admission($0) }) else { return }
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

    /// Runs `body` with `core` accessed in place. Read through this class's stored property for a method call or
    /// an argument, a struct as large as `RaftNode` is copied whole (every array, set and dictionary in it retained,
    /// then released); an `inout` access is not. For the calls made per request or per Ready.
    @inline(__always)
    private func withCore<T>(_ body: (inout RaftNode) -> T) -> T { body(&core) }

    /// `body` applied to the state machine accessed in place (not copied whole: see `withCore`), for every read.
    @inline(__always)
    private func withStateMachine<T>(_ body: (KVStateMachine) -> T) -> T {
        func borrow(_ machine: inout KVStateMachine) -> T { body(machine) }
        return borrow(&stateMachine)
    }

    /// `ReadyHost`: read directly (through the protocol's `core` getter it would copy the node).
    var coreSyncedIndex: LogIndex { withCore { $0.syncedIndex } }

    // MARK: - Ready loop (ReadyHost: the order lives in RaftCore's `ReadyExecutor`, shared with the simulator)

    func scheduleReady() {
        guard !readyScheduled else { return }
        readyScheduled = true
        loop.execute {
            self.readyScheduled = false
            guard !self.stopped else { return }
            self.executor.run(self)
        }
    }

    func readyTaken(_ rd: Ready) {
        syncMembership()
        publishAdmission()
        if let soft = rd.softState {
            logRoleChange(soft)
            recordSoftState(soft)
            leadership = (soft.role == .leader, soft.leader)
            onLeadershipChange?(leadership.isLeader, leadership.leader, removed)
            Self.run(
                pending.completeTransfers(
                    leader: core.leader, commitIndex: core.commitIndex, now: RaftServer.monotonicMillis()))
        }
    }

    func send(_ messages: [Message]) {
        for message in messages { send(message, via: transport) }
    }

    /// Writes the deferred commit-index-only hard state, if any, to the WAL thread in order, unsynced, not waited for.
    private func writeDeferredCommitState() {
        guard let hardState = deferredCommitState, !stopped else { return }
        deferredCommitState = nil
        let writer = self.writer
        io.runIfActive(eventLoop: loop) {
            try writer.write(entries: [], hardState: hardState, snapshot: nil, now: RaftServer.monotonicMillis())
        }.whenFailure { error in
            // The commit index is volatile: a record the full disk refused is written again with the next batch.
            switch DiskSpace.setback(error) {
            case .diskFull(let reason): self.raiseNoSpace(reason)
            case .noDescriptors: break
            case .fatal: self.fatal(error)
            }
        }
    }

    func persist(_ rd: Ready, _ kind: ReadyPersistence, completion: @escaping (LogIndex?) -> Void) {
        let writer = self.writer
        for entry in rd.entries { unappliedBytes += UInt64(entry.data.count) }
        guard kind == .full else {
            // Only the commit index moved. Raft keeps it volatile: the record rides with the next full write, or the
            // next tick writes it (`writeDeferredCommitState`), instead of a WAL hand-off for every commit.
            if let hardState = rd.hardState { deferredCommitState = hardState }
            return
        }
        // A snapshot's write goes after the deferred record, as before; otherwise this Ready's own hard state is newer
        // than a deferred one (same term and vote, a commit index no lower) or the deferred one rides with it.
        if rd.snapshot != nil { writeDeferredCommitState() }
        let hardState = rd.hardState ?? deferredCommitState
        deferredCommitState = nil
        // A sole voter's own copy is the whole quorum: it fsyncs at once instead of waiting for the flush policy.
        let soleVoter = core.membership.voters == [settings.raft.id]
        let snapshotData: [UInt8]? = rd.snapshot.flatMap { snapshots.takeStaged($0.index) }
        if let snap = rd.snapshot, snapshotData == nil {
            fatal(NodeStartupError("snapshot \(snap.index) to install was not staged"))
        }
        let files = snapshotFiles
        let started = RaftServer.monotonicMillis()
        let write = { @Sendable () throws -> (KVStateMachine?, LogIndex, UInt64?) in
            // A received snapshot is decoded here, off the Raft loop (a large image takes a while), before it is
            // recorded: an image that does not decode never reaches the WAL.
            var restored: KVStateMachine?
            if let snap = rd.snapshot, let data = snapshotData {
                do {
                    restored = try KVStateMachine.restore(from: data).0
                } catch {
                    throw NodeStartupError("snapshot \(snap) to install does not decode: \(error)")
                }
                try files.save(snap, data: data)
            }
            let acknowledges = soleVoter || rd.messages.contains {
                if case .appendResponse(.success, _) = $0.body { return true }
                return false
            }
            let (syncs, began) = (writer.fsyncCount, RaftServer.monotonicMillis())
            let durability = try writer.persist(
                entries: rd.entries, hardState: hardState, snapshot: rd.snapshot, acknowledges: acknowledges)
            let fsyncMs = writer.fsyncCount > syncs ? RaftServer.monotonicMillis() - began : nil
            return (restored, durability.synced, fsyncMs)
        }
        // A full disk (or no descriptor left) undoes the write and leaves the log usable: the same write is tried again
        // until it goes through (the Ready stays in progress meanwhile: nothing it would acknowledge goes out).
        func attempt() {
            io.runIfActive(eventLoop: loop, write).assumeIsolated().whenComplete { result in
                switch result {
                case .failure(let error):
                    if DiskSpace.setback(error) == .fatal { return self.fatal(error) }
                    guard !self.stopped, let retry = self.space.writeFailed(error) else { return }
                    if let line = retry.logLine { self.log.error(line) }
                    if let reason = retry.raise { self.raiseNoSpace(reason) }
                    self.loop.assumeIsolated().scheduleTask(in: .milliseconds(retry.afterMs)) { attempt() }
                case .success(let (restored, synced, fsyncMs)):
                    if let fsyncMs { self.recordFsync(ms: fsyncMs) }
                    if self.space.writeSucceeded() { self.log.warn("the log write that waited for space went through") }
                    self.metrics.persistBatches += 1
                    self.metrics.persistedEntries += UInt64(rd.entries.count)
                    self.metrics.persistMs.record(RaftServer.monotonicMillis() - started)
                    if let snap = rd.snapshot, let data = snapshotData, let restored {
                        self.installSnapshot(snap, data: data, restored: restored)
                    }
                    completion(synced)
                }
            }
        }
        attempt()
    }

    func apply(_ rd: Ready) { applyAndServe(rd) }

    func readyDone() {
        maybeSnapshot()
        scheduleReady()
    }

    /// Step 3 of a Ready: apply its committed entries (answering their writes) and serve or fail its reads.
    private func applyAndServe(_ rd: Ready) {
        let now = RaftServer.monotonicMillis()
        for entry in rd.committedEntries { apply(entry, now: now) }
        for read in rd.readStates {
            let answer = pending.readConfirmed(id: read.id, index: read.index)
            answer?()
        }
        for dropped in rd.droppedReads {
            let answer = pending.readFailed(id: dropped.id, readDroppedError(dropped.reason))
            answer?()
        }
        Self.run(pending.applyWaiters(upTo: stateMachine.appliedIndex))
    }

    private func send(_ message: Message, via transport: PeerTransport) {
        if case .installSnapshot(let meta) = message.body {
            if let image = snapshots.image(at: meta.index) {
                transport.send(message, snapshotData: image)
                recordEvent(
                    .snapshotSent, "sent snapshot at index \(meta.index) (\(image.count) bytes) to node \(message.to)",
                    peer: message.to, index: meta.index, bytes: UInt64(image.count))
            } else {
                core.reportSnapshot(message.to, success: false)
            }
        } else {
            transport.send(message)
        }
    }

    private func apply(_ entry: Entry, now: UInt64) {
        changes.removeAll(keepingCapacity: true)
        let result = stateMachine.apply(entry, changes: &changes)
        if !changes.isEmpty { watches.record(changes) }
        let size = UInt64(entry.data.count)
        snapshots.applied(bytes: size)
        unappliedBytes = entry.index >= core.lastIndex ? 0 : unappliedBytes - min(unappliedBytes, size)
        logClock.observe(stateMachine.clockMs, monotonicMs: now)
        metrics.applied += 1
        let (succeeded, answer) = pending.applied(index: entry.index, entryTerm: entry.term, result: result)
        if succeeded {
            metrics.writes += 1
            metrics.writeLatency(now: now, index: entry.index)
        }
        answer?()
    }

    private func installSnapshot(_ meta: SnapshotMetadata, data: [UInt8], restored: KVStateMachine) {
        stateMachine = restored
        watches.reset(appliedIndex: restored.appliedIndex)
        logClock.observe(restored.clockMs, monotonicMs: RaftServer.monotonicMillis())
        snapshots.installed(meta, data: data)
        log.info("installed snapshot \(meta) (\(data.count) bytes)")
        recordEvent(
            .snapshotInstalled, "installed snapshot at index \(meta.index) (\(data.count) bytes)", index: meta.index,
            bytes: UInt64(data.count))
    }

    private func maybeSnapshot() {
        let applied = stateMachine.appliedIndex
        guard snapshots.isDue(applied: applied, noSpace: space.raised, now: RaftServer.monotonicMillis()),
            let meta = core.snapshotMetadata(at: applied)
        else { return }
        let plan = snapshots.begin(applied: applied)
        snapshotFiles.take(stateMachine, at: meta, retain: plan.retain, writer: writer, walThread: io, loop: loop)
            .whenComplete { result in
                switch result {
                case .success(nil):
                    self.snapshots.notTaken()
                    self.log.info("snapshot at \(meta.index) superseded by an installed snapshot")
                case .success(let taken?):
                    // Recording the snapshot fsynced the whole WAL: a MemFirst leader may now count its own entries
                    // (its flush timer has nothing left to flush, so nobody else would tell the core).
                    if let synced = taken.synced {
                        self.core.markSynced(through: synced.index, term: synced.term)
                        self.scheduleReady()
                    }
                    guard self.snapshots.taken(meta, data: taken.data, plan: plan) else { return }
                    self.core.compact(snapshot: meta, retain: plan.retain)
                    self.metrics.snapshots += 1
                    self.log.info("snapshot at \(meta.index) (\(taken.data.count) bytes); log compacted")
                    self.recordEvent(
                        .snapshotTaken, "took snapshot at index \(meta.index) (\(taken.data.count) bytes); log compacted",
                        index: meta.index, bytes: UInt64(taken.data.count))
                case .failure(let error):
                    // Nothing changed: the snapshot file was not saved or the log record not written.
                    let retryAt = RaftServer.monotonicMillis() + DiskSpace.snapshotRetryMs
                    switch DiskSpace.setback(error) {
                    case .diskFull(let reason):
                        self.snapshots.notTaken(retryAt: retryAt)
                        self.raiseNoSpace(reason)
                    case .noDescriptors:
                        self.snapshots.notTaken(retryAt: retryAt)
                        self.log.warn("\(error); the snapshot is tried again in 1 s")
                    case .fatal:
                        self.snapshots.notTaken()
                        self.fatal(error)
                    }
                }
            }
    }

    // MARK: - Disk space (the NOSPACE alarm)

    /// Measures the data directory on the WAL thread (in order with the writes) and raises the alarm above the quota.
    private func measureUsage() {
        let path = dataPath
        io.runIfActive(eventLoop: loop) { DataDirectory.usedBytes(path) }.whenComplete { result in
            if let reason = self.space.measured(try? result.get()) { self.raiseNoSpace(reason) }
        }
    }

    private func raiseNoSpace(_ reason: String) {
        guard let alarm = space.raise(reason, atMs: NodeBackend.wallClockMillis()) else { return }
        alarmBox.withLockedValue { $0 = alarm }
        recordEvent(.alarmRaised, "NOSPACE alarm raised: \(reason)")
        log.always("Alarm NOSPACE raised node=\(settings.raft.id): \(reason); writes are refused (507) until "
            + "`dctl alarm disarm`")
        maybeSnapshot()
    }

    /// The alarms and the space used (`GET /alarms`).
    func alarms() -> EventLoopFuture<AlarmsResponse> {
        loop.submit { self.space.response(nodeID: self.settings.raft.id) }
    }

    /// Clears the alarm once there is space again: the data directory is measured now and must be within the quota,
    /// and no write may be waiting for the disk (`POST /alarm/disarm`; `409 conflict` otherwise).
    func disarm() -> EventLoopFuture<AlarmsResponse> {
        let path = dataPath
        return io.runIfActive(eventLoop: loop) { DataDirectory.usedBytes(path) }.flatMapThrowing { used in
            if try self.space.disarm(used: used, path: path).get() {
                self.alarmBox.withLockedValue { $0 = nil }
                self.recordEvent(.alarmCleared, "NOSPACE alarm disarmed: \(used) bytes used")
                self.log.always("Alarm NOSPACE disarmed node=\(self.settings.raft.id): \(used) bytes used; writes accepted")
            }
            return self.space.response(nodeID: self.settings.raft.id)
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
    /// Called on the loop. Once the node is shutting down, the WAL is flushed and closed and the I/O threads stop:
    /// work queued behind that (a snapshot, a commit-index record) fails harmlessly and is only logged.
    func fatal(_ error: Error) {
        if stopped {
            log.info("after shutdown, ignored: \(error)")
            return
        }
        log.error("fatal storage error, stopping: \(error)")
        FileHandle.standardError.write(Data("dnode: fatal storage error, stopping (exit 74): \(error)\n".utf8))
        exit(74)
    }

    // MARK: - Watches and backups

    /// Starts a watch on this node's applied state (see `WatchHub.register`).
    func watch(_ request: WatchRequest, stream: WatchStream) -> EventLoopFuture<Void> {
        loop.submit {
            guard !self.stopped else { throw APIError(code: .unavailable, message: "the node is shutting down") }
            return try self.watches.register(request, stream: stream, appliedIndex: self.stateMachine.appliedIndex)
                .get()
        }
    }

    /// A consistent image of the leader's state for a backup: a linearizable read (the leader confirms it still
    /// leads, then waits until it has applied what it committed) takes a copy-on-write copy of the state machine on
    /// the loop; the image is serialised on the snapshot thread, so the loop never waits for it.
    func backup() -> EventLoopFuture<(image: [UInt8], meta: SnapshotMetadata, keys: Int, stateHash: UInt64)> {
        read(.linearizable) { sm -> (KVStateMachine, SnapshotMetadata?) in
            (sm, self.core.snapshotMetadata(at: sm.appliedIndex))
        }.flatMap { sm, meta in
            guard let meta else {
                return self.loop.makeFailedFuture(
                    APIError(code: .unavailable, message: "the applied index was compacted meanwhile; retry"))
            }
            return self.snapshotFiles.thread.runIfActive(eventLoop: self.loop) {
                (sm.snapshot(membership: meta.membership), meta, sm.count, sm.stateHash)
            }
        }
    }

    // MARK: - Status

    /// The status document of SPEC (`/status`).
    ///
    /// Everything is read on the loop at one instant; `state_hash` (of the state at that `applied_index`) is computed
    /// on `hashIO` from a copy-on-write image, never on the loop: hashing every value of a large state took seconds
    /// and stalled writes, heartbeats and leadership. It is cached per applied index. The status leaves `state_hash`
    /// out when it is not ready within `stateHashWaitMs`, or while the hash of another index is still being computed
    /// (rather than queue a second one): a monitoring poll never waits seconds for it. Ask again for the hash.
    func status() -> EventLoopFuture<NodeStatus> {
        loop.flatSubmit {
            let applied = self.stateMachine.appliedIndex
            var status = StatusReport(
                core: self.core, selfID: self.settings.raft.id, selfAddress: self.settings.selfAddress,
                address: self.address(of:), now: RaftServer.monotonicMillis()
            ).status(
                appliedIndex: applied, stateHash: nil, uptimeMs: RaftServer.monotonicMillis() - self.startedAt,
                metrics: self.metrics, alarms: self.alarmBox.withLockedValue { $0.map { [$0] } ?? [] },
                storage: self.storageStatus())
            if let cached = self.stateHashCache, cached.index == applied {
                status.stateHash = cached.hash
                return self.loop.makeSucceededFuture(status)
            }
            guard let hash = self.stateHash(at: applied) else { return self.loop.makeSucceededFuture(status) }
            // A status answers within `stateHashWaitMs`: with the hash when it is ready by then, else without it.
            let partial = status
            let answer = self.loop.makePromise(of: NodeStatus.self)
            let pending = PendingAnswer()
            hash.assumeIsolated().whenComplete { result in
                guard pending.take() else { return }
                var complete = partial
                if case .success(let text) = result { complete.stateHash = text }
                answer.succeed(complete)
            }
            self.loop.assumeIsolated().scheduleTask(in: .milliseconds(Self.stateHashWaitMs)) {
                if pending.take() { answer.succeed(partial) }
            }
            return answer.futureResult
        }
    }

    /// How long `/status` waits for a `state_hash` being computed before it answers without one.
    static let stateHashWaitMs: Int64 = 250

    /// Answered once (loop-confined).
    private final class PendingAnswer {
        private var open = true
        func take() -> Bool {
            defer { open = false }
            return open
        }
    }

    /// The hash of the state at `applied` (the current applied index), computed off the loop; `nil` while the hash of
    /// another index is being computed. Called on the loop.
    private func stateHash(at applied: LogIndex) -> EventLoopFuture<String>? {
        if let inFlight = stateHashInFlight {
            return inFlight.index == applied ? inFlight.hash : nil
        }
        let image = stateMachine
        let hash = hashIO.runIfActive(eventLoop: loop) { StatusReport.hashText(image.stateHash) }
        stateHashInFlight = (applied, hash)
        hash.whenComplete { result in
            self.stateHashInFlight = nil
            if case .success(let text) = result, applied >= (self.stateHashCache?.index ?? 0) {
                self.stateHashCache = (applied, text)
            }
        }
        return hash
    }

    private func storageStatus() -> StorageStatus {
        StorageStatus(
            fsyncP50Ms: metrics.fsyncMs.quantile(0.5), fsyncP99Ms: metrics.fsyncMs.quantile(0.99),
            fsyncs: metrics.fsyncMs.total, snapshotIndex: snapshots.latest?.meta.index ?? 0,
            snapshotBytes: UInt64(snapshots.latest?.data.count ?? 0), firstLogIndex: core.firstIndex,
            backendBytes: space.backendBytes, quotaBytes: space.quotaBytes)
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
    func cluster() -> EventLoopFuture<ClusterResponse> {
        loop.submit {
            StatusReport(
                core: self.core, selfID: self.settings.raft.id, selfAddress: self.settings.selfAddress,
                address: self.address(of:), now: RaftServer.monotonicMillis()
            ).cluster()
        }
    }

    /// Prometheus text for `/metrics`.
    public func metricsText() -> EventLoopFuture<String> {
        loop.submit {
            self.metrics.render(
                node: self.settings.raft.id, core: self.core, applied: self.stateMachine.appliedIndex,
                keys: self.stateMachine.count, pendingWrites: self.pending.writeCount,
                pendingReads: self.pending.readCount, peerRefusals: self.transport.refusals(),
                watch: NodeMetrics.WatchGauges(
                    watchers: self.watches.watcherCount, bufferedBytes: WatchStream.totalBufferedBytes,
                    firstIndex: self.watches.firstIndex))
        }
    }

    static func monotonicMillis() -> UInt64 { MonotonicClock.milliseconds() }
}
