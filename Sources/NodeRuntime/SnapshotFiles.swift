import KVStore
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RaftCore
import RaftStorage

/// A node's snapshot files and the thread that writes them. Taking a snapshot serialises a copy-on-write image of the
/// state machine and saves it on `thread` (so writing a large image never delays the WAL), then records it in the WAL
/// and compacts on the WAL thread; a received snapshot is saved on the WAL thread. The store is shared by those two
/// threads under `lock`. `RaftServer` decides when (`SnapshotSchedule`) and acts on the result on its loop.
struct SnapshotFiles: Sendable {
    let thread: NIOThreadPool
    let store: SnapshotStore
    private let lock = NIOLock()

    init(store: SnapshotStore) {
        self.store = store
        self.thread = NIOThreadPool(numberOfThreads: 1)
    }

    /// What taking a snapshot wrote.
    struct Taken: Sendable {
        var data: [UInt8]
        /// Recording the snapshot fsynced the whole WAL through this point.
        var synced: (index: LogIndex, term: Term)?
    }

    /// Serialises `image` at `meta` and saves it (snapshot thread), then records it in the WAL and compacts the WAL to
    /// keep `retain` entries before it (WAL thread, `walThread`). `nil`: a newer snapshot was installed meanwhile.
    func take(
        _ image: KVStateMachine, at meta: SnapshotMetadata, retain: UInt64, writer: LogWriter, walThread: NIOThreadPool,
        loop: EventLoop
    ) -> EventLoopFuture<Taken?> {
        thread.runIfActive(eventLoop: loop) { () -> [UInt8] in
            let data = image.snapshot(membership: meta.membership)
            try save(meta, data: data)
            return data
        }.flatMap { data in
            walThread.runIfActive(eventLoop: loop) { () -> Taken? in
                // A newer snapshot from the leader may have been installed while this one was being written.
                if let current = writer.wal.snapshot, current.index >= meta.index { return nil }
                try writer.persist(entries: [], snapshot: meta)
                try writer.compact(before: meta.index + 1 > retain ? meta.index + 1 - retain : 1)
                return Taken(data: data, synced: writer.syncedPoint)
            }
        }
    }

    /// Saves a snapshot file, on the calling thread.
    func save(_ meta: SnapshotMetadata, data: [UInt8]) throws {
        try lock.withLock { _ = try store.save(metadata: meta, data: data) }
    }

}
