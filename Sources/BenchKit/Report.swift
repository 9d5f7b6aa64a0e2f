import Foundation

/// One measured run of one scenario on one system.
public struct RunRecord: Sendable, Equatable {
    public var system: BenchSystem
    public var scenario: String
    public var round: Int
    public var conns: Int
    public var opsPerSecond: Double
    public var succeeded: Int
    public var notFound: Int
    public var errors: [String: Int]
    /// Microseconds.
    public var latency: LatencySummary
    /// CPU seconds the system's server processes used during the run (`--pids`), if measured.
    public var cpuSeconds: Double?

    /// CPU seconds per 10,000 successful operations, if measured.
    public var cpuPer10k: Double? {
        guard let cpuSeconds, succeeded > 0 else { return nil }
        return cpuSeconds / Double(succeeded) * 10_000
    }

    public init(
        system: BenchSystem, scenario: String, round: Int, conns: Int, opsPerSecond: Double, succeeded: Int,
        notFound: Int, errors: [String: Int], latency: LatencySummary
    ) {
        self.system = system
        self.scenario = scenario
        self.round = round
        self.conns = conns
        self.opsPerSecond = opsPerSecond
        self.succeeded = succeeded
        self.notFound = notFound
        self.errors = errors
        self.latency = latency
    }

    public init(
        system: BenchSystem, scenario: String, round: Int, conns: Int, result: LoadResult, cpuSeconds: Double? = nil
    ) {
        self.init(
            system: system, scenario: scenario, round: round, conns: conns, opsPerSecond: result.opsPerSecond,
            succeeded: result.succeeded, notFound: result.notFound, errors: result.errors,
            latency: result.latency.summary)
        self.cpuSeconds = cpuSeconds
    }

    public var errorCount: Int { errors.values.reduce(0, +) }

    /// `kind=count` pairs sorted by kind, `;`-separated; empty when there were none.
    public var errorText: String {
        errors.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ";")
    }
}

/// The medians over the rounds of one scenario on one system.
public struct ScenarioMedian: Sendable, Equatable {
    public var opsPerSecond: Double
    public var p50: Double
    public var p99: Double
    public var p999: Double
    public var errors: Int
    public var rounds: Int
    /// Median CPU seconds per 10k operations over the rounds that measured it.
    public var cpuPer10k: Double?

    /// `nil` when `records` is empty.
    public init?(_ records: [RunRecord]) {
        guard !records.isEmpty else { return nil }
        opsPerSecond = Self.median(records.map(\.opsPerSecond))
        p50 = Self.median(records.map { Double($0.latency.p50) })
        p99 = Self.median(records.map { Double($0.latency.p99) })
        p999 = Self.median(records.map { Double($0.latency.p999) })
        errors = records.map(\.errorCount).reduce(0, +)
        rounds = records.count
        let cpu = records.compactMap(\.cpuPer10k)
        cpuPer10k = cpu.isEmpty ? nil : Self.median(cpu)
    }

    /// The median (the mean of the two middle values for an even count).
    public static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let middle = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    }
}

/// The machine a report was measured on.
public struct MachineInfo: Sendable {
    public var cpus: Int
    public var cpuModel: String
    public var memory: String
    public var kernel: String

    public static func current() -> MachineInfo {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model =
            cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
            .flatMap { $0.split(separator: ":", maxSplits: 1).last }
            .map { String($0).trimmingSpaces } ?? "unknown"
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)) ?? ""
        var memory = "unknown"
        if let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemTotal:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        {
            memory = String(format: "%.1f GiB", kib / 1_048_576)
        }
        let kernel = ((try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "unknown")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        return MachineInfo(
            cpus: ProcessInfo.processInfo.activeProcessorCount, cpuModel: model, memory: memory, kernel: kernel)
    }

    public var description: String {
        "\(cpus) CPUs (\(cpuModel)), \(memory) RAM, Linux \(kernel)"
    }
}

/// Markdown and CSV renderings of a set of runs.
public enum ReportWriter {
    public static let csvHeader =
        "system,scenario,round,conns,ops_per_s,succeeded,not_found,errors,avg_us,p50_us,p90_us,p99_us,p999_us,max_us,error_kinds,cpu_s"

    /// One line per run, in the order given.
    public static func csv(_ records: [RunRecord]) -> String {
        var lines = [csvHeader]
        for record in records {
            let latency = record.latency
            lines.append(
                [
                    record.system.rawValue, record.scenario, String(record.round), String(record.conns),
                    String(format: "%.1f", record.opsPerSecond), String(record.succeeded), String(record.notFound),
                    String(record.errorCount), String(format: "%.1f", latency.mean), String(latency.p50),
                    String(latency.p90), String(latency.p99), String(latency.p999), String(latency.max),
                    record.errorText, record.cpuSeconds.map { String(format: "%.3f", $0) } ?? "",
                ].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// A Markdown report: a header of `meta` pairs, a table of every run, and for two systems the ratio table
    /// (medians over rounds, ours / etcd).
    public static func markdown(title: String, meta: [(String, String)], records: [RunRecord]) -> String {
        var out = "# \(title)\n\n"
        for (key, value) in meta {
            out += "- **\(key)**: \(value)\n"
        }
        out += "\n"
        let scenarios = records.map(\.scenario).uniqued()
        let has = { (system: BenchSystem) in records.contains { $0.system == system } }
        if has(.dengine) && has(.etcd) {
            out += "## Ratios (medians over rounds; ours / etcd)\n\n"
            out += "| scenario | dengine ops/s | etcd ops/s | ratio | dengine p50 / p99 ms | etcd p50 / p99 ms |"
            out += " p99 ratio | errors (dengine / etcd) |\n"
            out += "|---|---:|---:|---:|---:|---:|---:|---:|\n"
            for scenario in scenarios {
                guard let ours = ScenarioMedian(records.filter { $0.system == .dengine && $0.scenario == scenario }),
                    let theirs = ScenarioMedian(records.filter { $0.system == .etcd && $0.scenario == scenario })
                else { continue }
                let ratio = theirs.opsPerSecond > 0 ? ours.opsPerSecond / theirs.opsPerSecond : 0
                let p99Ratio = theirs.p99 > 0 ? ours.p99 / theirs.p99 : 0
                out += "| \(scenario) | \(formatOps(ours.opsPerSecond)) | \(formatOps(theirs.opsPerSecond)) | "
                out += String(format: "%.2fx", ratio)
                out += " | \(formatMillis(ours.p50)) / \(formatMillis(ours.p99))"
                out += " | \(formatMillis(theirs.p50)) / \(formatMillis(theirs.p99)) | "
                out += String(format: "%.2f", p99Ratio) + " | \(ours.errors) / \(theirs.errors) |\n"
            }
            out += "\n"
        }
        if has(.dengine) && has(.nginx) {
            out += "## HTTP ceiling (the same requests to nginx `return 200`; medians over rounds)\n\n"
            out += "| scenario | dengine ops/s | nginx ops/s | dengine / ceiling | dengine p50 / p99 ms | nginx p50 / p99 ms |\n"
            out += "|---|---:|---:|---:|---:|---:|\n"
            for scenario in scenarios {
                guard let ours = ScenarioMedian(records.filter { $0.system == .dengine && $0.scenario == scenario }),
                    let ceiling = ScenarioMedian(records.filter { $0.system == .nginx && $0.scenario == scenario })
                else { continue }
                let share = ceiling.opsPerSecond > 0 ? 100 * ours.opsPerSecond / ceiling.opsPerSecond : 0
                out += "| \(scenario) | \(formatOps(ours.opsPerSecond)) | \(formatOps(ceiling.opsPerSecond)) | "
                out += String(format: "%.0f %%", share)
                out += " | \(formatMillis(ours.p50)) / \(formatMillis(ours.p99))"
                out += " | \(formatMillis(ceiling.p50)) / \(formatMillis(ceiling.p99)) |\n"
            }
            out += "\n"
        }
        if records.contains(where: { $0.cpuSeconds != nil }) {
            out += "## CPU per 10k operations (user + system seconds of the servers' processes, from /proc; medians)\n\n"
            out += "| scenario | dengine s / 10k | etcd s / 10k | dengine / etcd |\n|---|---:|---:|---:|\n"
            for scenario in scenarios {
                let ours = ScenarioMedian(records.filter { $0.system == .dengine && $0.scenario == scenario })?.cpuPer10k
                let theirs = ScenarioMedian(records.filter { $0.system == .etcd && $0.scenario == scenario })?.cpuPer10k
                guard ours != nil || theirs != nil else { continue }
                let share = ours.flatMap { o in theirs.flatMap { $0 > 0 ? String(format: "%.2f", o / $0) : nil } }
                out += "| \(scenario) | \(ours.map { String(format: "%.2f", $0) } ?? "-") | "
                out += "\(theirs.map { String(format: "%.2f", $0) } ?? "-") | \(share ?? "-") |\n"
            }
            out += "\n"
        }
        out += "## Every run\n\n"
        out += "| system | scenario | round | conns | ops/s | avg ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
        out += " errors |\n"
        out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"
        for record in records {
            let latency = record.latency
            out += "| \(record.system.rawValue) | \(record.scenario) | \(record.round) | \(record.conns) | "
            out += "\(formatOps(record.opsPerSecond)) | \(formatMillis(latency.mean)) | "
            out += "\(formatMillis(Double(latency.p50))) | \(formatMillis(Double(latency.p90))) | "
            out += "\(formatMillis(Double(latency.p99))) | \(formatMillis(Double(latency.p999))) | "
            out += "\(formatMillis(Double(latency.max))) | \(record.errorText.isEmpty ? "0" : record.errorText) |\n"
        }
        return out
    }

    /// `12345.6` -> `12,346`.
    public static func formatOps(_ value: Double) -> String {
        let rounded = Int(value.rounded())
        var digits = String(abs(rounded))
        var grouped = ""
        while digits.count > 3 {
            grouped = "," + digits.suffix(3) + grouped
            digits.removeLast(3)
        }
        return (rounded < 0 ? "-" : "") + digits + grouped
    }

    /// Microseconds to milliseconds with two decimals.
    public static func formatMillis(_ micros: Double) -> String {
        String(format: "%.2f", micros / 1000)
    }
}

extension Array where Element: Hashable {
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
