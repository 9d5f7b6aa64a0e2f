import ClusterAPI
import ClusterClient
import Foundation

/// The kinds of fault the nemesis injects.
public enum FaultKind: String, Sendable, CaseIterable, Codable {
    /// `kill -9` of one node (the leader half the time), restarted after a pause.
    case kill
    /// `kill -9` of a majority at once, restarted after a pause (the cluster is unavailable meanwhile).
    case killMajority = "kill-majority"
    /// SIGSTOP of the leader for longer than the election timeout (it loses its lease), then SIGCONT.
    case pause
    /// SIGSTOP of the leader and, while it sleeps, a partition that cuts it off; SIGCONT while still cut off (it
    /// wakes up believing it leads, with requests queued on its client sockets), then heal.
    case pauseIsolated = "pause-partitioned"
    /// Network: the leader alone on one side.
    case isolateLeader = "partition-leader"
    /// Network: a random majority and minority.
    case partitionHalves = "partition-halves"
    /// Network: two sides that cannot talk, bridged by one node that talks to both.
    case partitionBridge = "partition-bridge"
    /// Membership: remove a follower, then join it back as a learner and promote it.
    case membership
    /// Clock: restart one node under libfaketime at a rate off by 30-40%, later restart it normally.
    case clockSkew = "clock-skew"

    public var needsNetwork: Bool {
        self == .isolateLeader || self == .partitionHalves || self == .partitionBridge || self == .pauseIsolated
    }

    /// The kinds a run uses unless told otherwise: all of them.
    public static let defaults: [FaultKind] = [
        .kill, .killMajority, .pause, .pauseIsolated, .isolateLeader, .partitionHalves, .partitionBridge, .clockSkew,
        .membership,
    ]
}

/// Injects faults from a seeded schedule, one at a time, each healed before the next; logs every step.
// @unchecked Sendable: `random` and the fault log are used by the one task that runs the schedule.
public final class Nemesis: @unchecked Sendable {
    public struct Options: Sendable {
        public var kinds: [FaultKind] = FaultKind.defaults
        /// Quiet time between faults.
        public var interval: ClosedRange<Double> = 0.8...2.0
        /// How long a fault lasts before it is healed.
        public var faultDuration: ClosedRange<Double> = 1.0...3.0
        public init() {}
    }

    public static let faketimeLibrary = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"

    private let cluster: ChaosCluster
    private let options: Options
    private var random: SeededRandom
    private let started = ContinuousClock.now
    private let log: @Sendable (String) -> Void
    private let lock = NSLock()
    private var stopping = false
    private var injected: [String: Int] = [:]
    private var skipped: [String: Int] = [:]
    private var lines: [String] = []
    /// Nodes removed by the membership fault and not yet back.
    private var removed: Set<Int> = []
    public let activeKinds: [FaultKind]
    public let notes: [String]

    public init(cluster: ChaosCluster, seed: UInt64, options: Options, log: @escaping @Sendable (String) -> Void) {
        self.cluster = cluster
        self.options = options
        self.random = SeededRandom(seed: seed ^ 0x5EED_0F_FA17)
        self.log = log
        var kinds: [FaultKind] = []
        var notes: [String] = []
        for kind in options.kinds {
            if kind.needsNetwork && cluster.network == nil {
                notes.append(
                    "\(kind.rawValue) skipped: no network namespaces "
                        + "(\(ChaosNetwork.unavailableReason() ?? "not requested"))"
                )
            } else if kind == .clockSkew && !FileManager.default.fileExists(atPath: Self.faketimeLibrary) {
                notes.append("clock-skew skipped: libfaketime not installed (apt-get install faketime)")
            } else {
                kinds.append(kind)
            }
        }
        self.activeKinds = kinds
        self.notes = notes
    }

    public var faultsInjected: [String: Int] { lock.withLock { injected } }
    public var faultsNotApplied: [String: Int] { lock.withLock { skipped } }
    public var logLines: [String] { lock.withLock { lines } }

    public func stop() { lock.withLock { stopping = true } }
    private var isStopping: Bool { lock.withLock { stopping } }

    private func note(_ text: String) {
        let elapsed = Double((ContinuousClock.now - started) / .milliseconds(1)) / 1000
        let line = String(format: "[nemesis %7.2fs] ", elapsed) + text
        lock.withLock { lines.append(line) }
        log(line)
    }

    private func count(_ kind: FaultKind, applied: Bool) {
        lock.withLock {
            if applied { injected[kind.rawValue, default: 0] += 1 } else { skipped[kind.rawValue, default: 0] += 1 }
        }
    }

    private func seconds(_ range: ClosedRange<Double>) -> Duration {
        .milliseconds(Int(Double.random(in: range, using: &random) * 1000))
    }

    /// How long to keep a leader stopped: longer than the election timeout, so the others elect a new leader and
    /// the old one's lease is long gone when it wakes.
    private func pauseDuration() -> Duration {
        let minimum = Double(cluster.options.electionTimeoutMaxMs) / 1000 + 0.3
        return seconds(minimum...(minimum + 1.5))
    }

    /// Waits `duration` or until `stop()`, whichever is first.
    private func wait(_ duration: Duration) async {
        let deadline = ContinuousClock.now + duration
        while !isStopping && ContinuousClock.now < deadline {
            try? await Task.sleep(for: min(.milliseconds(50), deadline - ContinuousClock.now))
        }
    }

    /// Injects faults until `stop()`, then heals everything.
    public func run() async {
        guard !activeKinds.isEmpty else {
            note("no fault kinds enabled")
            return
        }
        note("kinds: \(activeKinds.map(\.rawValue).joined(separator: ", "))")
        for line in notes { note(line) }
        while !isStopping {
            await wait(seconds(options.interval))
            if isStopping { break }
            let kind = activeKinds.randomElement(using: &random)!
            await inject(kind)
        }
        await healAll()
    }

    private func inject(_ kind: FaultKind) async {
        let ids = cluster.ids
        let leader = await cluster.leader()
        switch kind {
        case .kill:
            let target = (Bool.random(using: &random) ? leader : nil) ?? ids.randomElement(using: &random)!
            note("kill -9 n\(target)\(target == leader ? " (leader)" : "")")
            await cluster.kill9(target)
            count(kind, applied: true)
            await wait(seconds(options.faultDuration))
            restart(target)
        case .killMajority:
            let targets = Array(ids.shuffled(using: &random).prefix(ids.count / 2 + 1)).sorted()
            note("kill -9 \(targets.map { "n\($0)" }.joined(separator: " ")) (a majority)")
            for target in targets { await cluster.kill9(target) }
            count(kind, applied: true)
            await wait(seconds(options.faultDuration))
            for target in targets { restart(target) }
        case .pause:
            guard let leader else {
                note("pause: no leader, skipped")
                count(kind, applied: false)
                return
            }
            let duration = pauseDuration()
            note("SIGSTOP n\(leader) (leader) for \(duration)")
            cluster.pause(leader)
            count(kind, applied: true)
            await wait(duration)
            cluster.resume(leader)
            note("SIGCONT n\(leader)")
        case .pauseIsolated:
            guard let leader, let network = cluster.network else {
                note("pause-partitioned: no leader, skipped")
                count(kind, applied: false)
                return
            }
            let duration = pauseDuration()
            note("SIGSTOP n\(leader) (leader) for \(duration), cut off from the others")
            cluster.pause(leader)
            do {
                try network.partition([[leader], cluster.ids.filter { $0 != leader }])
                count(kind, applied: true)
            } catch {
                note("pause-partitioned: partition failed: \(error)")
                count(kind, applied: false)
            }
            await wait(duration)
            cluster.resume(leader)
            note("SIGCONT n\(leader), still cut off")
            await wait(seconds(0.5...1.0))
            do {
                try network.heal()
                note("heal network")
            } catch {
                note("heal failed: \(error)")
            }
        case .isolateLeader, .partitionHalves, .partitionBridge:
            guard let network = cluster.network else { return }
            var groups: [[Int]] = []
            var links: [(Int, Int)] = []
            switch kind {
            case .isolateLeader:
                guard let leader else {
                    note("partition-leader: no leader, skipped")
                    count(kind, applied: false)
                    return
                }
                groups = [[leader], ids.filter { $0 != leader }]
            case .partitionHalves:
                let shuffled = ids.shuffled(using: &random)
                let minority = ids.count / 2
                groups = [Array(shuffled.prefix(minority)).sorted(), Array(shuffled.dropFirst(minority)).sorted()]
            default:
                // Bridge: the rest split in two halves that cannot talk; the bridge node talks to both.
                let shuffled = ids.shuffled(using: &random)
                let bridge = shuffled[0]
                let rest = Array(shuffled.dropFirst())
                let left = Array(rest.prefix(rest.count / 2)).sorted()
                let right = Array(rest.dropFirst(rest.count / 2)).sorted()
                for a in left { for b in right { links.append((a, b)) } }
                groups = [left, [bridge], right]
            }
            do {
                if kind == .partitionBridge {
                    try network.block(links: links)
                    note("partition \(groups[0]) <-> n\(groups[1][0]) (bridge) <-> \(groups[2])")
                } else {
                    try network.partition(groups)
                    let sides = groups.map { $0.map { "n\($0)" }.joined(separator: " ") }
                    note("partition " + sides.joined(separator: " | "))
                }
                count(kind, applied: true)
            } catch {
                note("\(kind.rawValue) failed: \(error)")
                count(kind, applied: false)
            }
            await wait(seconds(options.faultDuration))
            do {
                try network.heal()
                note("heal network")
            } catch {
                note("heal failed: \(error)")
            }
        case .membership:
            await membershipChange(leader: leader)
        case .clockSkew:
            let target = ids.randomElement(using: &random)!
            let rate = Bool.random(using: &random) ? "0.7" : "1.4"
            note("clock-skew n\(target): restart under libfaketime at x\(rate)")
            await cluster.kill9(target)
            cluster.setEnvironment(
                target, ["LD_PRELOAD": Self.faketimeLibrary, "FAKETIME": "+0 x\(rate)"])
            restart(target)
            count(kind, applied: true)
            await wait(seconds(options.faultDuration) * 2)
            note("clock-skew n\(target): back to the real clock")
            await cluster.kill9(target)
            cluster.setEnvironment(target, nil)
            restart(target)
        }
    }

    private func restart(_ id: Int) {
        do {
            try cluster.start(id)
            note("restart n\(id)")
        } catch {
            note("restart n\(id) failed: \(error)")
        }
    }

    // MARK: Membership

    /// Removes a follower, waits, then joins it back and promotes it. Any error means the step did not happen.
    private func membershipChange(leader: Int?) async {
        let gone = removedNodes
        guard let leader,
            let target = cluster.ids.filter({ $0 != leader && !gone.contains($0) }).randomElement(using: &random)
        else {
            count(.membership, applied: false)
            return
        }
        let (removeStatus, removeText) = await post(leader, "/remove", "{\"node_id\":\(target)}")
        note("membership: remove n\(target) -> \(removeStatus) \(removeText)")
        guard removeStatus == 200 else {
            count(.membership, applied: false)
            return
        }
        count(.membership, applied: true)
        lock.withLock { _ = removed.insert(target) }
        await wait(seconds(options.faultDuration))
        await rejoin(target)
    }

    /// Joins `target` back as a learner and promotes it, retrying for a few seconds.
    private func rejoin(_ target: Int) async {
        let address = cluster.node(target).address
        let deadline = ContinuousClock.now + .seconds(10)
        var joined = false
        while ContinuousClock.now < deadline {
            guard let leader = await cluster.leader() else {
                try? await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !joined {
                let (status, text) = await post(leader, "/join", "{\"node_id\":\(target),\"address\":\"\(address)\"}")
                note("membership: join n\(target) -> \(status) \(text)")
                joined = status == 200
                if !joined {
                    try? await Task.sleep(for: .milliseconds(200))
                    continue
                }
            }
            let (status, text) = await post(leader, "/promote", "{\"node_id\":\(target)}")
            note("membership: promote n\(target) -> \(status) \(text)")
            if status == 200 {
                lock.withLock { _ = removed.remove(target) }
                return
            }
            try? await Task.sleep(for: .milliseconds(300))
        }
    }

    private func post(_ id: Int, _ path: String, _ body: String) async -> (Int, String) {
        do {
            let response = try await httpExchange(
                method: "POST", endpoint: cluster.node(id).client, path: path, body: Data(body.utf8),
                timeout: .seconds(5))
            return (response.status, String(decoding: response.body.prefix(200), as: UTF8.self))
        } catch {
            return (0, "\(error)")
        }
    }

    /// Nodes removed by a membership fault that could not be added back.
    public var removedNodes: Set<Int> { lock.withLock { removed } }

    // MARK: Healing

    /// SIGCONT everything, heal the network, restart skewed or dead nodes with the real clock, re-add removed nodes.
    public func healAll() async {
        for id in cluster.ids where cluster.isPaused(id) { cluster.resume(id) }
        if let network = cluster.network { try? network.heal() }
        for id in cluster.ids {
            cluster.setEnvironment(id, nil)
        }
        for id in cluster.ids where !cluster.isRunning(id) { restart(id) }
        for id in removedNodes { await rejoin(id) }
        note("healed")
    }
}
