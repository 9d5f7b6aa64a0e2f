import ClusterAPI
import DashboardCore
import Foundation

/// Polls every endpoint in parallel on background threads and folds each round into the model.
///
/// One round: every target is fetched at once (one Dispatch work item each) with a deadline shorter than the
/// interval, so a slow or dead node delays nothing beyond its deadline. The next round starts one interval after
/// the previous one started. The curses thread never waits on this: it reads `latest` (a copy) under a lock.
/// With a recorder (`--record FILE`), every round and every action is appended to the file as it is applied.
// @unchecked Sendable: the model, version, interval, stop flag and recorder are under `lock` (an NSCondition).
final class Poller: DashboardSource, @unchecked Sendable {
    private let lock = NSCondition()
    private var model: DashboardModel
    private var version = 0
    private var intervalMs: UInt64
    private var stopped = false
    private let clock: @Sendable () -> UInt64
    private let recorder: FileHandle?

    init(endpoints: [Endpoint], intervalMs: UInt64, clock: @escaping @Sendable () -> UInt64, recorder: FileHandle? = nil) {
        self.model = DashboardModel(endpoints: endpoints)
        self.intervalMs = intervalMs
        self.clock = clock
        self.recorder = recorder
        if let recorder, let header = try? WireJSON.encode(RecordingHeader(endpoints: endpoints, intervalMs: intervalMs)) {
            recorder.write(header + Data("\n".utf8))
        }
    }

    var frameTimeMs: UInt64? { nil }
    var replayStatus: String? { nil }
    func replayKey(_ key: Character) -> Bool { false }

    /// An action's result, into the events pane (and the recording).
    func recordAction(_ message: String) {
        let now = clock()
        lock.withLock {
            model.recordAction(message, atMs: now)
            version += 1
            write(RecordedLine(action: message, atMs: now))
        }
    }

    /// Appends one line to the recording (under `lock`).
    private func write(_ line: RecordedLine) {
        guard let recorder, let text = try? line.encodedLine() else { return }
        recorder.write(Data((text + "\n").utf8))
    }

    /// The per-request deadline for `interval`: 80% of it, at most 2 s.
    static func deadlineMs(intervalMs: UInt64) -> Int { Int(min(intervalMs * 4 / 5, 2000)) }

    /// The latest model and how many rounds produced it.
    var latest: (model: DashboardModel, version: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (model, version)
    }

    var interval: UInt64 {
        get { lock.lock(); defer { lock.unlock() }; return intervalMs }
        set {
            lock.lock()
            intervalMs = newValue
            lock.broadcast()
            lock.unlock()
        }
    }

    /// One round, synchronously (used by `--once` and by the polling thread).
    func pollOnce() {
        let (targets, interval) = lock.withLock {
            (model.pollTargets.map { ($0, model.eventCursor(for: $0)) }, intervalMs)
        }
        let results = Self.fetchAll(targets, timeoutMs: Self.deadlineMs(intervalMs: interval))
        let now = clock()
        lock.withLock {
            model.apply(results, nowMs: now)
            version += 1
            write(RecordedLine(round: results, atMs: now))
        }
    }

    /// Every target's status, then (when it answered) its events after the cursor, all targets at once.
    static func fetchAll(_ targets: [(endpoint: Endpoint, after: UInt64)], timeoutMs: Int) -> [PollResult] {
        let results = ResultBox(count: targets.count)
        let group = DispatchGroup()
        for (index, (endpoint, after)) in targets.enumerated() {
            DispatchQueue.global().async(group: group) {
                let outcome = StatusFetcher.fetch(endpoint, timeoutMs: timeoutMs)
                var events: NodeEventsResponse?
                // Its own deadline: a node slow to answer /status still gets its events read (a round can take
                // two deadlines at most; the wait below allows for that).
                if case .status = outcome {
                    events = StatusFetcher.fetchEvents(endpoint, after: after, timeoutMs: timeoutMs)
                }
                results.set(index, PollResult(endpoint: endpoint, outcome: outcome, events: events))
            }
        }
        // Each fetch (status, then events) ends by its own deadline; the margin covers scheduling only.
        _ = group.wait(timeout: .now() + .milliseconds(2 * timeoutMs + 250))
        return targets.map(\.endpoint).enumerated().map { index, endpoint in
            results.get(index) ?? PollResult(endpoint: endpoint, outcome: .failure("timed out"))
        }
    }

    /// Starts the polling thread.
    func start() {
        let thread = Thread { [self] in run() }
        thread.name = "dtop-poller"
        thread.start()
    }

    func stop() {
        lock.withLock {
            stopped = true
            lock.broadcast()
        }
    }

    private func run() {
        while true {
            let started = ContinuousClock.now
            pollOnce()
            lock.lock()
            // Wait out the rest of the interval; an interval change or stop wakes the wait early.
            while !stopped {
                let due = started + .milliseconds(intervalMs)
                let left = ContinuousClock.now.duration(to: due)
                if left <= .zero { break }
                let seconds = Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18
                _ = lock.wait(until: Date().addingTimeInterval(seconds))
            }
            let done = stopped
            lock.unlock()
            if done { return }
        }
    }

    // @unchecked Sendable: `slots` is under `lock`.
    private final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var slots: [PollResult?]
        init(count: Int) { slots = Array(repeating: nil, count: count) }
        func set(_ index: Int, _ result: PollResult) { lock.withLock { slots[index] = result } }
        func get(_ index: Int) -> PollResult? { lock.withLock { slots[index] } }
    }
}
