import ClusterAPI
import Foundation

/// One finding of `dctl doctor`: a named check, its verdict, and one sentence.
public struct DoctorCheck: Sendable, Hashable {
    public enum Verdict: String, Sendable, Hashable, Comparable {
        case ok, skip, warn, fail

        private var rank: Int {
            switch self {
            case .ok: return 0
            case .skip: return 1
            case .warn: return 2
            case .fail: return 3
            }
        }

        public static func < (lhs: Verdict, rhs: Verdict) -> Bool { lhs.rank < rhs.rank }
    }

    public var name: String
    public var verdict: Verdict
    public var detail: String

    public init(_ name: String, _ verdict: Verdict, _ detail: String) {
        self.name = name
        self.verdict = verdict
        self.detail = detail
    }
}

/// `dctl doctor`'s checks, as a pure function of one survey (docs/dctl.md, "doctor"). Thresholds are constants here.
public enum DoctorChecks {
    /// Clock offsets above this (ms, beyond the probe's round trip) are a warning: TTLs follow the log's clock
    /// (leader-stamped), but an operator reading logs across nodes, and certificate validity, need clocks in step.
    public static let clockOffsetWarnMs = 500.0
    /// A certificate that expires within this many days is a warning.
    public static let certificateWarnDays = 30.0
    /// Free space below this share of the data directory's file system, or below 1 GiB, is a warning.
    public static let diskFreeWarnShare = 0.10
    public static let diskFreeWarnBytes: UInt64 = 1 << 30
    /// A data directory above this share of its `quota_backend_bytes` is a warning (the NOSPACE alarm comes at 100%).
    public static let quotaWarnShare = 0.80
    /// A WAL fsync p99 above this (ms) is a warning: commits wait for it, and heartbeats queue behind slow writes.
    public static let fsyncP99WarnMs = 100.0

    public static func checks(view: ClusterView, probes: [NodeProbe], now: Date = Date()) -> [DoctorCheck] {
        let answered = probes.filter { $0.status != nil }
        return [
            quorum(view), clocks(answered), settings(answered), security(answered, now: now), disks(answered),
            wal(answered), versions(answered),
        ]
    }

    /// The exit status of a set of checks: 0 all ok, 4 no quorum, 1 a failure, 2 a warning.
    public static func exitStatus(_ checks: [DoctorCheck], view: ClusterView) -> ExitStatus {
        if view.health == .unavailable { return .unavailable }
        let worst = checks.map(\.verdict).max() ?? .ok
        switch worst {
        case .fail: return .failed
        case .warn: return .degraded
        case .ok, .skip: return .ok
        }
    }

    // MARK: The checks

    static func quorum(_ view: ClusterView) -> DoctorCheck {
        let leader = view.leaderID.map { "leader \($0) at term \(view.term ?? 0)" } ?? "no leader"
        let summary = "\(view.votersUp)/\(view.voterCount) voters up, \(leader)"
        switch view.health {
        case .healthy:
            return DoctorCheck("quorum", .ok, "\(summary), tolerates \(view.tolerates) more failure(s), no node lagging")
        case .degraded:
            return DoctorCheck("quorum", .warn, "\(summary); " + view.reasons.filter { !$0.contains("INSECURE") }.joined(separator: "; "))
        case .unavailable:
            return DoctorCheck("quorum", .fail, "\(summary); " + view.reasons.joined(separator: "; "))
        }
    }

    static func clocks(_ probes: [NodeProbe]) -> DoctorCheck {
        var offsets: [(UInt64, Double, Double)] = []
        for probe in probes {
            guard let status = probe.status, let facts = status.node, let sent = probe.sentAtMs,
                let received = probe.receivedAtMs
            else { continue }
            // The node read its clock somewhere in [sent, received] of ours: the offset is known to ± half the trip.
            let offset = Double(facts.nowMs) - (sent + received) / 2
            offsets.append((status.nodeID, offset, (received - sent) / 2))
        }
        guard let lowest = offsets.min(by: { $0.1 < $1.1 }), let highest = offsets.max(by: { $0.1 < $1.1 }) else {
            return DoctorCheck("clocks", .skip, "no node reports its clock (now_ms)")
        }
        let spread = highest.1 - lowest.1
        let uncertainty = highest.2 + lowest.2
        let text = offsets.map { "node \($0.0) \(Int($0.1.rounded())) ms" }.joined(separator: ", ")
        let detail = "offsets from this machine: \(text) (±\(Int(uncertainty.rounded())) ms)"
        if spread - uncertainty > clockOffsetWarnMs {
            return DoctorCheck(
                "clocks", .warn,
                "nodes \(lowest.0) and \(highest.0) differ by about \(Int(spread.rounded())) ms: \(detail)")
        }
        return DoctorCheck("clocks", .ok, detail)
    }

    static func settings(_ probes: [NodeProbe]) -> DoctorCheck {
        let facts = probes.compactMap { probe in probe.status.flatMap { status in status.node.map { (status.nodeID, $0) } } }
        guard !facts.isEmpty else { return DoctorCheck("settings", .skip, "no node reports its settings") }
        var differences: [String] = []
        let names = Set(facts.flatMap { $0.1.settings.keys }).sorted()
        for name in names {
            let values = Dictionary(grouping: facts, by: { $0.1.settings[name] ?? "-" })
            guard values.count > 1 else { continue }
            let described = values.sorted { $0.key < $1.key }.map { value, nodes in
                "\(value) on node \(nodes.map { String($0.0) }.joined(separator: ","))"
            }
            differences.append("\(name): " + described.joined(separator: " but "))
        }
        guard differences.isEmpty else {
            return DoctorCheck("settings", .fail, "nodes disagree: " + differences.joined(separator: "; "))
        }
        let sample = facts[0].1.settings
        let summary = ["election_timeout_min", "election_timeout_max", "lease_duration_ms", "strategy"]
            .compactMap { name in sample[name].map { "\(name) \($0)" } }.joined(separator: ", ")
        return DoctorCheck("settings", .ok, "\(facts.count) nodes agree (\(summary))")
    }

    static func security(_ probes: [NodeProbe], now: Date) -> DoctorCheck {
        let statuses = probes.compactMap(\.status)
        let reported = statuses.filter { $0.security != nil }
        guard !reported.isEmpty else { return DoctorCheck("security", .skip, "no node reports its security mode") }
        var problems: [(DoctorCheck.Verdict, String)] = []
        for status in reported {
            guard let security = status.security else { continue }
            switch security.mode {
            case "insecure":
                problems.append((.warn, "node \(status.nodeID) serves plaintext without authentication on \(status.address) ([security] insecure = true)"))
            case "tls":
                for (what, text) in [("certificate", security.certificateNotAfter), ("CA", security.caNotAfter)] {
                    guard let text, let date = ISO8601DateFormatter().date(from: text) else { continue }
                    let days = date.timeIntervalSince(now) / 86_400
                    if days < 0 {
                        problems.append((.fail, "node \(status.nodeID)'s \(what) expired at \(text)"))
                    } else if days < certificateWarnDays {
                        problems.append((.warn, "node \(status.nodeID)'s \(what) expires in \(Int(days)) days (\(text))"))
                    }
                }
            default:
                break
            }
        }
        let modes = Set(reported.compactMap { $0.security?.mode })
        if modes.contains("tls"), modes.count > 1 {
            problems.append((.fail, "nodes run in different modes: " + modes.sorted().joined(separator: ", ")))
        }
        if let worst = problems.map(\.0).max() {
            return DoctorCheck("security", worst, problems.map(\.1).joined(separator: "; "))
        }
        switch modes.first {
        case "tls":
            let soonest = reported.compactMap { $0.security?.certificateNotAfter }.min() ?? "-"
            return DoctorCheck("security", .ok, "TLS on every node, clients authenticated; first certificate expiry \(soonest)")
        default:
            return DoctorCheck("security", .ok, "plaintext on loopback only (no TLS; see docs/security.md to secure it)")
        }
    }

    static func disks(_ probes: [NodeProbe]) -> DoctorCheck {
        let disks = probes.compactMap { probe in probe.status.flatMap { status in status.node?.disk.map { (status.nodeID, $0) } } }
        guard !disks.isEmpty else { return DoctorCheck("disk", .skip, "no node reports its disk space") }
        let low = disks.filter { _, disk in
            disk.freeBytes < diskFreeWarnBytes || Double(disk.freeBytes) < Double(disk.totalBytes) * diskFreeWarnShare
        }
        // Each node's data directory against its quota, and its alarms (NOSPACE refuses writes: a failure).
        var quota: [String] = []
        var nearQuota: [String] = []
        var alarmed: [String] = []
        for probe in probes {
            guard let status = probe.status else { continue }
            for alarm in status.alarms ?? [] { alarmed.append("node \(status.nodeID) \(alarm.type): \(alarm.reason)") }
            guard let storage = status.storage, storage.quotaBytes > 0 else { continue }
            let share = Double(storage.backendBytes) / Double(storage.quotaBytes)
            let text = "node \(status.nodeID) \(formatBytes(storage.backendBytes)) of quota \(formatBytes(storage.quotaBytes))"
            quota.append(text)
            if share >= quotaWarnShare { nearQuota.append("\(text) (\(Int((share * 100).rounded()))%)") }
        }
        var text = disks.map { "node \($0.0) \(formatBytes($0.1.freeBytes)) free" }.joined(separator: ", ")
        if !quota.isEmpty { text += "; data " + quota.joined(separator: ", ") }
        if !alarmed.isEmpty {
            return DoctorCheck("disk", .fail, "alarm raised, writes refused: \(alarmed.joined(separator: "; ")) (`dctl alarm`); \(text)")
        }
        if !low.isEmpty {
            return DoctorCheck("disk", .warn, "low space on node \(low.map { String($0.0) }.joined(separator: ",")): \(text)")
        }
        if !nearQuota.isEmpty {
            return DoctorCheck("disk", .warn, "near quota_backend_bytes: \(nearQuota.joined(separator: ", "))")
        }
        return DoctorCheck("disk", .ok, text)
    }

    /// Each node's WAL fsync latency (p50/p99 of log writes that ended in an fsync, from `/status` `storage`).
    static func wal(_ probes: [NodeProbe]) -> DoctorCheck {
        let reports = probes.compactMap { probe in probe.status.flatMap { status in status.storage.map { (status.nodeID, $0) } } }
        guard !reports.isEmpty else { return DoctorCheck("wal", .skip, "no node reports its fsync latency") }
        func ms(_ value: Double) -> String { value == value.rounded() ? "\(Int(value))" : String(format: "%.1f", value) }
        let text = reports.map { id, storage in
            "node \(id) p50 \(ms(storage.fsyncP50Ms)) ms p99 \(ms(storage.fsyncP99Ms)) ms (\(storage.fsyncs) fsyncs)"
        }.joined(separator: ", ")
        let slow = reports.filter { $0.1.fsyncP99Ms > fsyncP99WarnMs }.map { String($0.0) }
        if !slow.isEmpty {
            return DoctorCheck(
                "wal", .warn,
                "slow fsync on node \(slow.joined(separator: ",")) (p99 above \(Int(fsyncP99WarnMs)) ms): \(text)")
        }
        return DoctorCheck("wal", .ok, "fsync \(text)")
    }

    static func versions(_ probes: [NodeProbe]) -> DoctorCheck {
        let versions = probes.compactMap { probe in probe.status.flatMap { status in status.node.map { (status.nodeID, $0.version) } } }
        guard !versions.isEmpty else { return DoctorCheck("versions", .skip, "no node reports its version") }
        let distinct = Set(versions.map(\.1))
        if distinct.count > 1 {
            let text = versions.map { "node \($0.0) \($0.1)" }.joined(separator: ", ")
            return DoctorCheck("versions", .warn, "version skew: \(text)")
        }
        return DoctorCheck("versions", .ok, "dnode \(distinct.first ?? "?") on \(versions.count) nodes")
    }

    static func formatBytes(_ bytes: UInt64) -> String {
        let gib = Double(bytes) / Double(1 << 30)
        if gib >= 1 { return String(format: "%.1f GiB", gib) }
        return String(format: "%.0f MiB", Double(bytes) / Double(1 << 20))
    }
}
