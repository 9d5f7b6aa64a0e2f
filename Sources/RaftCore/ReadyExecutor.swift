/// What a shell provides to carry out Readies: the node (`RaftServer`) and the simulator (`Simulation`) both run
/// every `Ready` through the one `ReadyExecutor`, so the simulator checks the order production uses.
///
/// Every method is called on the thread that owns `core` (the node's Raft event loop; the simulator's only thread).
public protocol ReadyHost: AnyObject {
    /// The core whose Readies are executed.
    var core: RaftNode { get set }
    /// `core.syncedIndex`. The default reads it through `core`'s getter, which copies the whole node: a host on a hot
    /// path implements it with a direct read.
    var coreSyncedIndex: LogIndex { get }
    /// Called with every Ready right after `core.ready()`, empty ones included, before anything else: the place to
    /// note a role change (`softState`) or a new configuration.
    func readyTaken(_ rd: Ready)
    /// Steps 0 and 2: sends `messages` (a snapshot message carries the image the shell holds for it).
    func send(_ messages: [Message])
    /// Step 1: makes `rd`'s snapshot, entries and hard state durable (see `ReadyPersistence`). For `.full`, call
    /// `completion` with how far the log is now fsynced (`nil`: all of it) once done, now or later, on the core's
    /// thread; never call it if persistence failed (the shell stops). For `.commitIndexOnly`, write in order (now, or with a later write:
    /// the commit index is volatile) and do not call `completion`: the executor does not wait.
    func persist(_ rd: Ready, _ kind: ReadyPersistence, completion: @escaping (_ syncedThrough: LogIndex?) -> Void)
    /// Step 3: applies `rd.committedEntries` in order, serves `rd.readStates` once applied and fails
    /// `rd.droppedReads`.
    func apply(_ rd: Ready)
    /// After a Ready is done (advanced and applied): the place for snapshots and for asking for the next Ready.
    func readyDone()
}

extension ReadyHost {
    public var coreSyncedIndex: LogIndex { core.syncedIndex }
}

/// How step 1 of a Ready is written.
public enum ReadyPersistence: Sendable, Equatable {
    /// Entries, a snapshot, or a new term or vote: durable (fsynced per the persistence strategy) before step 2.
    case full
    /// Only the commit index moved. Raft keeps it volatile (etcd's `MustSync` is false for it): written in order,
    /// unsynced (the next batch's fsync covers it), and not waited for.
    case commitIndexOnly
}

/// Runs Readies in the order Raft requires (see `Ready`), one at a time:
///
/// 0. send `earlyMessages` (a leader's replication does not wait for its own disk);
/// 1. persist (`ReadyPersistence`); committed entries already on disk from earlier Readies are applied before this
///    Ready's fsync instead of after it (under load a write waits for its own batch's fsync only);
/// 2. send `messages`, which depend on step 1;
/// 4. `advance` (before applying: the commit index may move with it);
/// 3. apply and serve the rest.
///
/// While one Ready is being persisted the core keeps taking messages and proposals; they form the next Ready, taken
/// when the shell calls `run` after `readyDone` (group commit).
public final class ReadyExecutor {
    /// A Ready's step 1 is in progress: `run` takes no new Ready until it completes.
    public private(set) var persisting = false
    /// The hard state of the last Ready handed to `persist` (`nil` before the first).
    private var persistedHardState: HardState?

    public init() {}

    /// Takes the core's next Ready, if none is being persisted, and executes it (step 1 possibly later, when the host
    /// completes it). Returns `false` when it took nothing (busy, or the Ready was empty).
    @discardableResult
    public func run<Host: ReadyHost>(_ host: Host) -> Bool {
        guard !persisting else { return false }
        let rd = host.core.ready()
        host.readyTaken(rd)
        if rd.isEmpty { return false }
        host.send(rd.earlyMessages)
        guard rd.needsPersistence else {
            finish(rd, host, appliedEarly: false, syncedThrough: host.coreSyncedIndex)
            return true
        }
        let termAndVoteKept = rd.hardState.map { hs in
            persistedHardState.map { $0.term == hs.term && $0.vote == hs.vote } ?? false
        } ?? true
        if let hs = rd.hardState { persistedHardState = hs }
        if rd.entries.isEmpty, rd.snapshot == nil, termAndVoteKept {
            host.persist(rd, .commitIndexOnly) { _ in }
            finish(rd, host, appliedEarly: false, syncedThrough: host.coreSyncedIndex)
            return true
        }
        persisting = true
        // Entries committed and persisted by earlier Readies (all below this Ready's first new entry) are applied now.
        let appliedEarly = rd.snapshot == nil
            && (rd.committedEntries.last.map { last in rd.entries.first.map { last.index < $0.index } ?? true } ?? true)
        if appliedEarly { host.apply(rd) }
        host.persist(rd, .full) { [weak self, weak host] synced in
            guard let self, let host else { return }
            self.persisting = false
            self.finish(rd, host, appliedEarly: appliedEarly, syncedThrough: synced)
        }
        return true
    }

    private func finish<Host: ReadyHost>(_ rd: Ready, _ host: Host, appliedEarly: Bool, syncedThrough: LogIndex?) {
        host.send(rd.messages)
        host.core.advance(rd, syncedThrough: syncedThrough)
        if !appliedEarly { host.apply(rd) }
        host.readyDone()
    }
}
