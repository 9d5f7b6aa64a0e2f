import HTTPAPI
import RaftCore

/// Every metric the node exposes, in one place (`/metrics` in Prometheus text format). Loop-confined.
struct NodeMetrics {
    var writes: UInt64 = 0
    var reads: UInt64 = 0
    var leaseReads: UInt64 = 0
    /// Lease and linearizable reads this node served as a follower, with a read index from the leader.
    var followerReads: UInt64 = 0
    var applied: UInt64 = 0
    var overloaded: UInt64 = 0
    var persistBatches: UInt64 = 0
    var persistedEntries: UInt64 = 0
    var snapshots: UInt64 = 0
    var leaderChanges: UInt64 = 0
    var persistMs = LatencyHistogram()
    /// Log writes that ended in an fsync (write plus fsync of one batch, or a MemFirst flush).
    var fsyncMs = LatencyHistogram()
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
        node: NodeID, core: RaftNode, applied: LogIndex, keys: Int, pendingWrites: Int, pendingReads: Int,
        peerRefusals: [String: Int] = [:], watch: WatchGauges = WatchGauges()
    ) -> String {
        var out = PrometheusText()
        let labels: PrometheusText.Labels = [("node", "\(node)")]
        func gauge(_ name: String, _ help: String, _ value: Double) {
            out.gauge(name, help: help, samples: [(labels, value)])
        }
        func counter(_ name: String, _ help: String, _ value: UInt64) {
            out.counter(name, help: help, samples: [(labels, Double(value))])
        }
        func summary(_ name: String, _ help: String, _ h: LatencyHistogram) {
            out.summary(
                name, help: help, quantiles: [0.5, 0.9, 0.99].map { ($0, h.quantile($0)) }, sum: Double(h.sum),
                count: h.total, labels: labels)
        }
        gauge("dengine_term", "Current Raft term", Double(core.term))
        gauge("dengine_is_leader", "1 if this node is the leader", core.role == .leader ? 1 : 0)
        gauge("dengine_leader_id", "Leader known to this node (0 if none)", Double(core.leader ?? 0))
        gauge("dengine_commit_index", "Commit index", Double(core.commitIndex))
        gauge("dengine_applied_index", "Applied index", Double(applied))
        gauge("dengine_last_log_index", "Last log index", Double(core.lastIndex))
        gauge("dengine_first_log_index", "First log index kept in memory", Double(core.firstIndex))
        gauge("dengine_snapshot_index", "Index of the latest snapshot", Double(core.snapshotMetadata?.index ?? 0))
        gauge("dengine_lease_remaining_ms", "Leader lease left", Double(core.leaseRemaining))
        gauge("dengine_keys", "Keys in the state machine", Double(keys))
        gauge("dengine_pending_writes", "Writes proposed and not yet answered", Double(pendingWrites))
        gauge("dengine_pending_reads", "ReadIndex reads waiting for confirmation", Double(pendingReads))
        counter("dengine_writes_total", "Writes applied and acknowledged", writes)
        counter("dengine_reads_total", "Reads served", reads)
        counter("dengine_lease_reads_total", "Reads served under the leader lease", leaseReads)
        counter(
            "dengine_follower_reads_total", "Lease and linearizable reads served as a follower (read index from the leader)",
            followerReads)
        counter("dengine_entries_applied_total", "Log entries applied", self.applied)
        counter("dengine_overloaded_total", "Requests refused with 429", overloaded)
        counter("dengine_persist_batches_total", "Ready batches persisted (one fsync each under DiskFirst)", persistBatches)
        counter("dengine_persisted_entries_total", "Entries persisted", persistedEntries)
        counter("dengine_snapshots_total", "Snapshots taken", snapshots)
        counter("dengine_leader_elections_won_total", "Times this node became leader", leaderChanges)
        if !peerRefusals.isEmpty {
            out.counter(
                "dengine_peer_frames_refused_total", help: "Peer frames refused before reaching Raft, by reason",
                samples: peerRefusals.sorted { $0.key < $1.key }.map { (labels + [("reason", $0.key)], Double($0.value)) })
        }
        summary("dengine_write_latency_ms", "Propose-to-apply latency on the leader", writeLatencyMs)
        summary("dengine_persist_latency_ms", "Time to persist one Ready", persistMs)
        summary("dengine_fsync_latency_ms", "Log writes that ended in an fsync (write and fsync of one batch)", fsyncMs)
        var match: [(labels: PrometheusText.Labels, value: Double)] = []
        var lag: [(labels: PrometheusText.Labels, value: Double)] = []
        for (peer, pr) in core.progress.sorted(by: { $0.key < $1.key }) {
            let peerLabels = labels + [("peer", "\(peer)")]
            match.append((peerLabels, Double(pr.match)))
            lag.append((peerLabels, Double(core.lastIndex > pr.match ? core.lastIndex - pr.match : 0)))
        }
        if !match.isEmpty {
            out.gauge("dengine_peer_match_index", help: "Leader's view of the peer's match index", samples: match)
            out.gauge("dengine_peer_lag_entries", help: "Entries the peer is behind the leader", samples: lag)
        }
        gauge("dengine_watchers", "Watch streams registered on this node", Double(watch.watchers))
        gauge(
            "dengine_watch_buffered_bytes", "Bytes watch streams hold for their clients (queued or being written)",
            Double(watch.bufferedBytes))
        gauge("dengine_watch_history_first_index", "The oldest index a watch can start from", Double(watch.firstIndex))
        return out.output
    }

    /// The watch gauges of `/metrics`.
    struct WatchGauges {
        var watchers = 0
        var bufferedBytes = 0
        var firstIndex: LogIndex = 0
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
