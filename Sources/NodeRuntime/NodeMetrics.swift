import RaftCore

/// Every metric the node exposes, in one place (`/metrics` in Prometheus text format). Loop-confined.
struct NodeMetrics {
    var writes: UInt64 = 0
    var reads: UInt64 = 0
    var leaseReads: UInt64 = 0
    var applied: UInt64 = 0
    var overloaded: UInt64 = 0
    var persistBatches: UInt64 = 0
    var persistedEntries: UInt64 = 0
    var snapshots: UInt64 = 0
    var leaderChanges: UInt64 = 0
    var persistMs = LatencyHistogram()
    var writeLatencyMs = LatencyHistogram()
    private var proposedAt: [LogIndex: UInt64] = [:]

    mutating func proposed(at now: UInt64, index: LogIndex) {
        proposedAt[index] = now
        if proposedAt.count > 100_000 { proposedAt.removeAll() }
    }

    mutating func writeLatency(now: UInt64, index: LogIndex) {
        if let start = proposedAt.removeValue(forKey: index) { writeLatencyMs.record(now - min(now, start)) }
    }

    func render(
        node: NodeID, core: RaftNode, applied: LogIndex, keys: Int, pendingWrites: Int, pendingReads: Int, fsyncs: Int
    ) -> String {
        var out = PrometheusText()
        let labels = "node=\"\(node)\""
        out.gauge("dengine_term", "Current Raft term", labels, Double(core.term))
        out.gauge("dengine_is_leader", "1 if this node is the leader", labels, core.role == .leader ? 1 : 0)
        out.gauge("dengine_leader_id", "Leader known to this node (0 if none)", labels, Double(core.leader ?? 0))
        out.gauge("dengine_commit_index", "Commit index", labels, Double(core.commitIndex))
        out.gauge("dengine_applied_index", "Applied index", labels, Double(applied))
        out.gauge("dengine_last_log_index", "Last log index", labels, Double(core.lastIndex))
        out.gauge("dengine_first_log_index", "First log index kept in memory", labels, Double(core.firstIndex))
        out.gauge("dengine_snapshot_index", "Index of the latest snapshot", labels, Double(core.snapshotMetadata?.index ?? 0))
        out.gauge("dengine_lease_remaining_ms", "Leader lease left", labels, Double(core.leaseRemaining))
        out.gauge("dengine_keys", "Keys in the state machine", labels, Double(keys))
        out.gauge("dengine_pending_writes", "Writes proposed and not yet answered", labels, Double(pendingWrites))
        out.gauge("dengine_pending_reads", "ReadIndex reads waiting for confirmation", labels, Double(pendingReads))
        out.counter("dengine_writes_total", "Writes applied and acknowledged", labels, Double(writes))
        out.counter("dengine_reads_total", "Reads served", labels, Double(reads))
        out.counter("dengine_lease_reads_total", "Reads served under the leader lease", labels, Double(leaseReads))
        out.counter("dengine_entries_applied_total", "Log entries applied", labels, Double(applied))
        out.counter("dengine_overloaded_total", "Requests refused with 429", labels, Double(overloaded))
        out.counter("dengine_persist_batches_total", "Ready batches persisted (one fsync each under DiskFirst)", labels, Double(persistBatches))
        out.counter("dengine_persisted_entries_total", "Entries persisted", labels, Double(persistedEntries))
        out.counter("dengine_snapshots_total", "Snapshots taken", labels, Double(snapshots))
        out.counter("dengine_leader_elections_won_total", "Times this node became leader", labels, Double(leaderChanges))
        out.summary("dengine_write_latency_ms", "Propose-to-apply latency on the leader", labels, writeLatencyMs)
        out.summary("dengine_persist_latency_ms", "Time to persist one Ready", labels, persistMs)
        for (peer, pr) in core.progress.sorted(by: { $0.key < $1.key }) {
            let peerLabels = "\(labels),peer=\"\(peer)\""
            out.gauge("dengine_peer_match_index", "Leader's view of the peer's match index", peerLabels, Double(pr.match))
            out.gauge(
                "dengine_peer_lag_entries", "Entries the peer is behind the leader", peerLabels,
                Double(core.lastIndex > pr.match ? core.lastIndex - pr.match : 0))
        }
        return out.text
    }
}

/// A small log-linear latency histogram in milliseconds (0.01 ms resolution below 1 ms is not needed here).
struct LatencyHistogram {
    /// Bucket upper bounds in ms.
    static let bounds: [UInt64] = [0, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300, 500, 750, 1000, 2000, 5000]
    private(set) var counts = [UInt64](repeating: 0, count: bounds.count + 1)
    private(set) var total: UInt64 = 0
    private(set) var sum: UInt64 = 0

    mutating func record(_ ms: UInt64) {
        var i = 0
        while i < Self.bounds.count && ms > Self.bounds[i] { i += 1 }
        counts[i] += 1
        total += 1
        sum += ms
    }

    /// The upper bound of the bucket holding quantile `q` (0 when empty).
    func quantile(_ q: Double) -> Double {
        guard total > 0 else { return 0 }
        let rank = UInt64((Double(total) * q).rounded(.up))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() {
            seen += c
            if seen >= rank { return Double(i < Self.bounds.count ? Self.bounds[i] : Self.bounds.last! * 2) }
        }
        return Double(Self.bounds.last!)
    }
}

/// Prometheus text exposition format 0.0.4.
struct PrometheusText {
    private(set) var text = ""
    private var declared: Set<String> = []

    private mutating func declare(_ name: String, _ help: String, _ type: String) {
        guard !declared.contains(name) else { return }
        declared.insert(name)
        text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
    }

    mutating func gauge(_ name: String, _ help: String, _ labels: String, _ value: Double) {
        declare(name, help, "gauge")
        text += "\(name){\(labels)} \(format(value))\n"
    }

    mutating func counter(_ name: String, _ help: String, _ labels: String, _ value: Double) {
        declare(name, help, "counter")
        text += "\(name){\(labels)} \(format(value))\n"
    }

    mutating func summary(_ name: String, _ help: String, _ labels: String, _ h: LatencyHistogram) {
        declare(name, help, "summary")
        for q in [0.5, 0.9, 0.99] {
            text += "\(name){\(labels),quantile=\"\(q)\"} \(format(h.quantile(q)))\n"
        }
        text += "\(name)_sum{\(labels)} \(h.sum)\n\(name)_count{\(labels)} \(h.total)\n"
    }

    private func format(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : String(v)
    }
}
