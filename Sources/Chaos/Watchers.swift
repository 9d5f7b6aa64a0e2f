import ClusterAPI
import ClusterClient
import Foundation
import Linearizability

/// Issue #17 in the torture test: one watch per node on every workload key (prefix `k`), started at index 1 and
/// resumed by `since` on the next node whenever its node is killed, paused away or partitioned off. After the run
/// every stream is checked against the others and against the acknowledged writes of the history.
// @unchecked Sendable: the mutable fields are touched only under `lock` (`threads` only in `init`).
final class ChaosWatchers: @unchecked Sendable {
    private let lock = NSLock()
    private var streams: [Int: [WatchEvent]] = [:]
    private var progress: [Int: UInt64] = [:]
    private var endings: [Int: String] = [:]
    private var stopping = false
    private var threads: [Thread] = []

    /// Starts one watcher per node of `cluster` (on its own thread: the watch client blocks on sockets).
    init(cluster: ChaosCluster) {
        let ids = cluster.ids
        for id in ids {
            // Its own node first, then the others in order: where it resumes when its node goes away.
            let order = [id] + ids.filter { $0 != id }
            let targets = order.map { NodeTarget(id: UInt64($0), client: cluster.node($0).client, metrics: nil) }
            let thread = Thread { [self] in
                var watch = ResumingWatch(targets: targets, selector: "prefix=k", since: 1)
                watch.connectTimeout = .seconds(1)
                let end: String
                do {
                    while true {
                        try watch.run(
                            onEvent: { event in
                                self.lock.withLock { self.streams[id, default: []].append(event) }
                                return !self.isStopping
                            },
                            onNote: { _ in },
                            onProgress: { index in
                                self.lock.withLock { self.progress[id] = index }
                                return !self.isStopping
                            })
                        if self.isStopping { break }
                    }
                    end = "stopped"
                } catch {
                    end = "\(error)"
                }
                self.lock.withLock { self.endings[id] = end }
            }
            thread.stackSize = 512 * 1024
            threads.append(thread)
        }
        for thread in threads { thread.start() }
    }

    private var isStopping: Bool { lock.withLock { stopping } }

    /// Waits (at most `timeout`) until every watcher has reported progress up to `index`, then stops them.
    func finish(through index: UInt64, timeout: Duration) async -> [Int: UInt64] {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let done = lock.withLock { progress.values.filter { $0 >= index }.count == threads.count || endings.count == threads.count }
            if done { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        lock.withLock { stopping = true }
        return lock.withLock { progress }
    }

    /// The violations: a stream whose indexes go back or repeat; two streams that disagree on an index both saw;
    /// an acknowledged write (with its index) missing from, or different in, a stream that got past its index.
    func check(history: History<KVInput, KVOutput>) -> (violations: [String], summary: String) {
        let (streams, progress, endings) = lock.withLock { (self.streams, self.progress, self.endings) }
        var violations: [String] = []
        var byIndex: [UInt64: WatchEvent] = [:]
        for (id, events) in streams.sorted(by: { $0.key < $1.key }) {
            for (a, b) in zip(events, events.dropFirst()) where b.index <= a.index {
                violations.append("watch on node \(id): index \(b.index) after \(a.index) (repeated or out of order)")
            }
            for event in events {
                if let other = byIndex[event.index], other != event {
                    violations.append("watch on node \(id): at index \(event.index) \(event) but another watch saw \(other)")
                }
                byIndex[event.index] = event
            }
        }
        for operation in history.operations where operation.process >= 0 {
            guard case .ok(let output) = operation.outcome, let index = operation.index else { continue }
            let expected: WatchEvent?
            switch (operation.input, output) {
            case (.put(let key, let value), _): expected = WatchEvent(type: .put, key: key, value: value, index: index)
            case (.cas(let key, _, let new), .swapped(true)):
                expected = WatchEvent(type: .put, key: key, value: new, index: index)
            default: expected = nil  // deletes report only keys that existed; failed cas changes nothing
            }
            guard let expected else { continue }
            for (id, events) in streams {
                guard (progress[id] ?? 0) >= index, let first = events.first, first.index <= index else { continue }
                if !events.contains(expected) {
                    violations.append("watch on node \(id) lacks the acknowledged write \(expected)")
                }
            }
        }
        let summary = streams.keys.sorted().map { id in
            "n\(id): \(streams[id]?.count ?? 0) events to index \(progress[id] ?? 0)"
                + (endings[id].map { $0 == "stopped" ? "" : " (ended: \($0))" } ?? "")
        }.joined(separator: ", ")
        return (Array(violations.prefix(20)), summary)
    }
}
