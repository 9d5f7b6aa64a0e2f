import ClusterAPI
import HTTPAPI
import KVStore
import RaftCore

/// The watches of one node and the history they resume from, fed by the state machine's changes as they are applied.
///
/// Confined to the Raft loop (`RaftServer` owns it): changes are recorded and offered in apply order, so every stream
/// sees them in index order, each once, with no gap.
///
/// **History.** The changes of the last applied entries, bounded by `historyEntries` changes and `historyBytes` bytes
/// of keys and values; whole indexes are evicted, oldest first. Every change with an index `>= firstIndex` is in it:
/// a watch may start at any `since >= firstIndex`, an older one is `410 compacted` naming `firstIndex`. At boot, and
/// after a snapshot is installed, the history starts empty right after the state machine's applied index.
///
/// Invariant: `firstIndex <= appliedIndex + 1`, and `history` holds changes in index order, all `>= firstIndex`.
struct WatchHub {
    struct Settings: Sendable {
        var historyEntries = 10_000
        var historyBytes = 64 << 20
    }

    private struct Watcher {
        var request: WatchRequest
        var stream: WatchStream
        /// The first index this watcher reports (changes before it are skipped).
        var from: LogIndex
    }

    let settings: Settings
    private var history: [KVChange] = []
    /// `size` of each change in `history`, kept beside it: eviction reads these instead of the old changes' key and
    /// value (by then out of cache: two misses per write).
    private var sizes: [Int] = []
    private var head = 0
    private var historyBytes = 0
    private(set) var firstIndex: LogIndex
    private var watchers: [Watcher] = []

    init(settings: Settings, appliedIndex: LogIndex) {
        self.settings = settings
        self.firstIndex = appliedIndex + 1
    }

    var watcherCount: Int { watchers.count }
    var historyCount: Int { history.count - head }
    /// Key and value bytes held by the history array, evicted slots included (at most `historyBytes` plus one entry).
    var storedBytes: Int { history.reduce(0) { $0 + $1.key.count + $1.value.count } }

    // MARK: Changes

    /// Records the changes of one applied entry (all with the same index) and offers them to the watchers.
    mutating func record(_ changes: [KVChange]) {
        guard let index = changes.first?.index else { return }
        history.append(contentsOf: changes)
        for change in changes {
            let size = Self.size(change)
            sizes.append(size)
            historyBytes += size
        }
        evict()
        var gone = false
        for watcher in watchers where index >= watcher.from {
            let events = Self.events(changes, matching: watcher.request)
            if !events.isEmpty && !watcher.stream.offer(events) { gone = true }
        }
        if gone { watchers.removeAll { !$0.stream.isOpen } }
    }

    /// Offers every watcher `event: progress` with the applied index, and forgets the streams that closed.
    mutating func progress(appliedIndex: LogIndex) {
        for watcher in watchers {
            _ = watcher.stream.offer([.progress(max(appliedIndex, watcher.from - 1))])
        }
        watchers.removeAll { !$0.stream.isOpen }
    }

    /// A snapshot replaced the state: the changes between the old and new applied index are unknown. Every watch ends
    /// with `event: dropped` (its client resumes with `since`, and gets `410` if that is now too old).
    mutating func reset(appliedIndex: LogIndex) {
        for watcher in watchers {
            watcher.stream.end(reason: "the node installed a snapshot at index \(appliedIndex); resume with since")
        }
        watchers = []
        history = []
        sizes = []
        head = 0
        historyBytes = 0
        firstIndex = appliedIndex + 1
    }

    // MARK: Watchers

    /// Starts `stream` at `request.since` (or after `appliedIndex`): offers the history from there, then a progress
    /// event, and registers it for what follows. Fails with `410 compacted` when `since` is older than the history.
    mutating func register(
        _ request: WatchRequest, stream: WatchStream, appliedIndex: LogIndex
    ) -> Result<Void, APIError> {
        let from = request.since ?? appliedIndex + 1
        guard from >= firstIndex else {
            return .failure(
                APIError(
                    code: .compacted,
                    message: "since \(from) is older than this node's watch history, which starts at index "
                        + "\(firstIndex); read the current state and watch from there",
                    oldestIndex: firstIndex))
        }
        // The history is in index order: find the first change at or after `from`, then offer it index by index. A
        // replay larger than the stream's buffer ends the stream with `event: dropped` once it is delivered: the client
        // resumes from the last id it got, further on each time.
        var low = head
        var high = history.count
        while low < high {
            let mid = (low + high) / 2
            if history[mid].index < from { low = mid + 1 } else { high = mid }
        }
        var position = low
        while position < history.count {
            let index = history[position].index
            var end = position
            while end < history.count && history[end].index == index { end += 1 }
            let events = Self.events(Array(history[position..<end]), matching: request)
            if !events.isEmpty && !stream.offer(events) { return .success(()) }
            position = end
        }
        guard stream.offer([.progress(max(appliedIndex, from - 1))]) else { return .success(()) }
        watchers.append(Watcher(request: request, stream: stream, from: from))
        return .success(())
    }

    // MARK: Helpers

    /// The events `changes` (one index) make for `request`; the last carries the index's `id`.
    private static func events(_ changes: [KVChange], matching request: WatchRequest) -> [WatchStreamEvent] {
        var events: [WatchStreamEvent] = []
        for change in changes where request.matches(change.key) {
            let type: WatchEventType
            switch change.kind {
            case .put: type = .put
            case .delete: type = .delete
            case .expire: type = .expire
            }
            events.append(
                WatchStreamEvent(
                    kind: .change(type), key: change.key, value: change.value, index: change.index, closesIndex: false))
        }
        if !events.isEmpty { events[events.count - 1].closesIndex = true }
        return events
    }

    private static func size(_ change: KVChange) -> Int { change.key.count + change.value.count + 32 }

    private mutating func evict() {
        while history.count - head > settings.historyEntries || historyBytes > settings.historyBytes {
            let index = history[head].index
            while head < history.count && history[head].index == index {
                historyBytes -= sizes[head]
                // The slot stays until the array is compacted below; its key and value go now. Kept, they held up to
                // 1024 evicted values past `historyBytes`: 512 MiB of 512 KiB values, growing with every write.
                history[head].key = []
                history[head].value = []
                head += 1
            }
            firstIndex = index + 1
        }
        if head > 1024 && head * 2 > history.count {
            history.removeFirst(head)
            sizes.removeFirst(head)
            head = 0
        }
    }
}
