import ClusterAPI
import ClusterClient
import Foundation
import Linearizability

/// One torture run: a cluster, the workload, the nemesis, then healing, convergence and the checks.
public struct ChaosRun: Sendable {
    public struct Options: Sendable {
        public var nodes = 3
        public var seed: UInt64 = 1
        public var duration: Duration = .seconds(60)
        public var dnodeBinary: String
        /// Where the run's files go; a fresh directory under it per run.
        public var workDirectory: URL = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent(
            "dengine-chaos")
        /// Use network namespaces (partitions); when unavailable the partition faults are skipped with a note.
        public var useNetwork = true
        public var cluster = ChaosCluster.Options()
        public var workload = Workload.Options()
        public var nemesis = Nemesis.Options()
        /// How long the checker may search.
        public var checkTimeout: Duration = .seconds(120)
        /// Keep the run directory even when the verdict is valid.
        public var keepFiles = false
        /// A watch per node on every workload key, checked against the history (issue #17).
        public var watchers = true
        public init(dnodeBinary: String) { self.dnodeBinary = dnodeBinary }
    }

    public var options: Options
    public init(options: Options) { self.options = options }

    /// Runs the whole thing; never throws for a bad verdict (that is in the report), only for set-up failures.
    public func run(log: @escaping @Sendable (String) -> Void = { print($0) }) async throws -> ChaosReport {
        let started = ContinuousClock.now
        let root = options.workDirectory.appendingPathComponent(
            "\(getpid())-seed\(options.seed)-n\(options.nodes)-\(Int(Date().timeIntervalSince1970))")
        var notes: [String] = []
        var network: ChaosNetwork?
        let wantsNetwork = options.useNetwork && options.nemesis.kinds.contains(where: \.needsNetwork)
        if wantsNetwork {
            if let reason = ChaosNetwork.unavailableReason() {
                notes.append("partitions skipped: \(reason)")
                log("chaos: partitions skipped: \(reason)")
            } else {
                let net = ChaosNetwork(nodeIDs: Array(1...options.nodes))
                try net.setUp()
                network = net
                log("chaos: network namespaces \(net.prefix)* on \(net.subnet).0/24")
            }
        }
        defer { network?.teardown() }
        let cluster = try ChaosCluster(
            binary: options.dnodeBinary, nodes: options.nodes, root: root, options: options.cluster, network: network)
        log("chaos: seed \(options.seed), \(options.nodes) nodes, \(options.duration), files in \(root.path)")
        if let bug = options.cluster.plantedBug { log("chaos: PLANTED BUG \(bug) (test-only)") }

        do {
            for id in cluster.ids { try cluster.start(id) }
        } catch {
            await cluster.shutdown()
            throw error
        }
        var report = ChaosReport(seed: options.seed, nodes: options.nodes, directory: root.path)
        report.notes = notes
        guard await cluster.waitForLeader(timeout: .seconds(30)) != nil else {
            await cluster.shutdown()
            report.problems.append(
                "no leader within 30 s of the start\n" + cluster.ids.map { cluster.tail($0) }.joined())
            report.duration = ContinuousClock.now - started
            return report
        }

        let watchers = options.watchers ? ChaosWatchers(cluster: cluster) : nil
        let workload = Workload(cluster: cluster, seed: options.seed, options: options.workload)
        let nemesis = Nemesis(cluster: cluster, seed: options.seed, options: options.nemesis, log: log)
        report.notes += nemesis.notes
        let workloadTask = Task { await workload.run() }
        let nemesisTask = Task { await nemesis.run() }
        let runDeadline = ContinuousClock.now + options.duration
        var lastProgress = ContinuousClock.now
        while ContinuousClock.now < runDeadline {
            try? await Task.sleep(for: min(.seconds(1), runDeadline - ContinuousClock.now))
            if ContinuousClock.now - lastProgress >= .seconds(30) {
                lastProgress = ContinuousClock.now
                log("chaos: \(workload.operationCounts.total) ops, faults \(nemesis.faultsInjected)")
            }
        }
        nemesis.stop()
        await nemesisTask.value
        workload.stop()
        await workloadTask.value
        report.workloadSeconds = Double(options.duration / .milliseconds(1)) / 1000
        log("chaos: workload done: \(workload.operationCounts)")

        // Healed: a leader, final reads of every key, then convergence.
        var finalValues: [String: String?] = [:]
        if await cluster.waitForLeader(timeout: .seconds(30)) == nil {
            report.problems.append("no leader within 30 s of healing")
        } else {
            finalValues = await finalReads(cluster: cluster, workload: workload, report: &report)
        }
        let convergence = await Convergence.wait(
            cluster: cluster, expectedMembers: Set(cluster.ids).subtracting(nemesis.removedNodes), timeout: .seconds(30)
        )
        report.convergence = convergence.summary
        if !convergence.converged { report.problems.append("no convergence: \(convergence.summary)") }
        if let watchers {
            var applied: UInt64 = 0
            for id in cluster.ids { applied = max(applied, await Convergence.probe(cluster, id)?.appliedIndex ?? 0) }
            _ = await watchers.finish(through: applied, timeout: .seconds(15))
        }

        // Checks.
        let history = workload.recorder.history()
        report.operations = workload.operationCounts
        report.historyOperations = history.operations.count
        report.faults = nemesis.faultsInjected
        report.faultsNotApplied = nemesis.faultsNotApplied
        report.keys = workload.keys.count
        let checkStarted = ContinuousClock.now
        let result = LinearizabilityChecker.check(history, model: KVModel(), timeout: options.checkTimeout)
        report.checkSeconds = Double((ContinuousClock.now - checkStarted) / .milliseconds(1)) / 1000
        switch result {
        case .linearizable: report.linearizability = "linearizable"
        case .unknown(let timeout): report.linearizability = "unknown (checker timed out after \(timeout))"
        case .notLinearizable(let witness):
            report.linearizability = "NOT linearizable"
            report.violations.append("linearizability violation:\n\(witness)")
        }
        // Writes ranked by the log index the server returned: the real commit order. (A linearization found by the
        // checker is one valid order, not necessarily the one that happened: concurrent writes may come out swapped.)
        let writes = EventualReads.writesByIndex(history)
        let eventual = EventualReads.check(reads: workload.eventual, writes: writes)
        report.eventualReads = workload.eventual.count
        for violation in eventual.prefix(20) { report.violations.append("eventual read: \(violation)") }
        if eventual.count > 20 { report.violations.append("... \(eventual.count - 20) more eventual-read violations") }
        if let watchers {
            let (violations, summary) = watchers.check(history: history)
            report.notes.append("watches: \(summary)")
            report.violations += violations.map { "watch: \($0)" }
        }
        report.lostWrites = LostWrites.check(history: history, finalValues: finalValues)
        for lost in report.lostWrites.prefix(20) { report.violations.append("acknowledged write lost: \(lost)") }

        await cluster.shutdown()
        report.duration = ContinuousClock.now - started
        report.nemesisLog = nemesis.logLines
        try? report.write(
            history: history, targets: workload.operationTargets, eventualReads: workload.eventual, to: root)
        if report.valid && !options.keepFiles {
            try? FileManager.default.removeItem(at: root)
            report.directory = nil
        } else if !report.valid {
            for id in cluster.ids { report.nodeTails += cluster.tail(id) }
        }
        return report
    }

    /// A linearizable read of every key the workload used, recorded into the history (process -1), so that a lost
    /// write shows up as a violation; also returns the values for the lost-write check.
    private func finalReads(
        cluster: ChaosCluster, workload: Workload, report: inout ChaosReport
    ) async -> [String: String?] {
        var values: [String: String?] = [:]
        for key in workload.keys {
            let deadline = ContinuousClock.now + .seconds(15)
            while ContinuousClock.now < deadline {
                let target = await cluster.leader() ?? cluster.ids[0]
                let completion = await workload.read(-1, key, .linearizable, target)
                if case .ok(let status, let body) = completion {
                    values[key] =
                        status == 404 ? .some(nil) : .some(try? WireJSON.decode(GetResponse.self, from: body).value)
                    break
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            if values[key] == nil { report.problems.append("final read of \(key) never succeeded") }
        }
        return values
    }
}

// MARK: - Lost writes

/// "Every acknowledged write is present": per key, the final value must come from the acknowledged write with the
/// highest log index, or from a write that may have landed later (an `.info` one, or one with a higher index).
enum LostWrites {
    static func quoted(_ value: String?) -> String { value.map { "\"\($0)\"" } ?? "nil" }

    static func check(history: History<KVInput, KVOutput>, finalValues: [String: String?]) -> [String] {
        var lastAcked: [String: (index: UInt64, value: String?, id: Int)] = [:]
        var laterCandidates: [String: [(index: UInt64?, value: String?)]] = [:]
        for (id, operation) in history.operations.enumerated() where operation.process >= 0 {
            let write: (key: String, value: String?)?
            switch (operation.input, operation.outcome) {
            case (.put(let key, let value), .ok), (.put(let key, let value), .info): write = (key, value)
            case (.delete(let key), .ok), (.delete(let key), .info): write = (key, nil)
            case (.cas(let key, _, let new), .ok(.swapped(true))), (.cas(let key, _, let new), .info):
                write = (key, new)
            default: write = nil
            }
            guard let write else { continue }
            if case .ok = operation.outcome, let index = operation.index {
                if (lastAcked[write.key]?.index ?? 0) < index { lastAcked[write.key] = (index, write.value, id) }
            }
            laterCandidates[write.key, default: []].append((operation.isInfo ? nil : operation.index, write.value))
        }
        var lost: [String] = []
        for (key, acked) in lastAcked.sorted(by: { $0.key < $1.key }) {
            guard let final = finalValues[key] else { continue }
            if final == acked.value { continue }
            let explained = (laterCandidates[key] ?? []).contains { candidate in
                candidate.value == final && (candidate.index == nil || candidate.index! > acked.index)
            }
            if !explained {
                lost.append(
                    "key \(key): write #\(acked.id) of \(quoted(acked.value)) acknowledged at index \(acked.index), "
                        + "final value \(quoted(final))"
                )
            }
        }
        return lost
    }
}

// MARK: - Convergence

/// After healing: every member reports the same applied index (equal to its commit index) and the same
/// state-machine hash (`state_hash` in `/status`).
enum Convergence {
    struct Probe: Decodable {
        var appliedIndex: UInt64
        var commitIndex: UInt64
        var stateHash: String?
        enum CodingKeys: String, CodingKey {
            case appliedIndex = "applied_index"
            case commitIndex = "commit_index"
            case stateHash = "state_hash"
        }
    }

    static func probe(_ cluster: ChaosCluster, _ id: Int) async -> Probe? {
        guard
            let response = try? await httpExchange(
                method: "GET", endpoint: cluster.node(id).metrics, path: "/status", timeout: .seconds(1)),
            response.status == 200
        else { return nil }
        return try? JSONDecoder().decode(Probe.self, from: response.body)
    }

    static func wait(cluster: ChaosCluster, expectedMembers: Set<Int>, timeout: Duration) async -> (
        converged: Bool, summary: String
    ) {
        let deadline = ContinuousClock.now + timeout
        var summary = ""
        while true {
            var probes: [Int: Probe] = [:]
            for id in expectedMembers.sorted() { if let probe = await probe(cluster, id) { probes[id] = probe } }
            summary = expectedMembers.sorted().map { id in
                guard let p = probes[id] else { return "n\(id) no answer" }
                return "n\(id) applied \(p.appliedIndex) hash \(p.stateHash ?? "-")"
            }.joined(separator: ", ")
            let applied = Set(probes.values.map(\.appliedIndex))
            let hashes = Set(probes.values.map { $0.stateHash ?? "" })
            if probes.count == expectedMembers.count && applied.count == 1 && hashes.count == 1
                && probes.values.allSatisfy({ $0.appliedIndex == $0.commitIndex }) && !hashes.contains("")
            {
                return (true, summary)
            }
            if ContinuousClock.now >= deadline { return (false, summary) }
            try? await Task.sleep(for: .milliseconds(200))
        }
    }
}
