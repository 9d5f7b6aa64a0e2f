import ArgumentParser
import ClusterClient
import Foundation

/// A duration on the command line: `500ms`, `10s`, `1.5s`, `2m`, or a plain number of seconds.
public struct BenchDuration: ExpressibleByArgument, Sendable, Equatable {
    public var duration: Duration

    public init(_ duration: Duration) {
        self.duration = duration
    }

    public init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        var scale = 1.0
        var number = text
        for (suffix, factor) in [("ms", 0.001), ("s", 1.0), ("m", 60.0)] where text.hasSuffix(suffix) {
            scale = factor
            number = String(text.dropLast(suffix.count))
            break
        }
        guard let value = Double(number), value > 0, value.isFinite else { return nil }
        duration = .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    public var seconds: Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}

extension BenchSystem: ExpressibleByArgument {}
extension BenchConsistency: ExpressibleByArgument {}

/// The default endpoints of each system: the local cluster (9081-9083) and the shared harness's etcd.
public func defaultEndpoints(for system: BenchSystem) -> [BenchEndpoint] {
    switch system {
    case .dengine: [9081, 9082, 9083].map { BenchEndpoint(host: "127.0.0.1", port: $0) }
    case .etcd: [2379, 22379, 32379].map { BenchEndpoint(host: "127.0.0.1", port: $0) }
    case .nginx: [BenchEndpoint(host: "127.0.0.1", port: 39080)]
    }
}

func parseEndpoints(_ text: String) throws -> [BenchEndpoint] {
    let parts = text.split(separator: ",").map { String($0).trimmingSpaces }.filter { !$0.isEmpty }
    guard !parts.isEmpty else { throw ValidationError("--endpoints is empty") }
    return try parts.map { part in
        guard let endpoint = BenchEndpoint(parsing: part) else {
            throw ValidationError("bad endpoint '\(part)' (expected host:port)")
        }
        return endpoint
    }
}

/// Options of every load command (`put`, `get`, `mixed`, `preload`).
public struct LoadOptions: ParsableArguments, Sendable {
    @Option(help: "dengine (our /put, /get) or etcd (v3 JSON gateway).")
    public var system: BenchSystem = .dengine

    @Option(help: "Comma-separated host:port list (default: 127.0.0.1:9081-9083; etcd: 2379,22379,32379).")
    public var endpoints: String?

    @Option(help: "TCP connections, spread round-robin over the endpoints.")
    public var conns: Int = 1

    @Option(help: "Concurrent clients (default: --conns); more than --conns pipelines requests on each connection.")
    public var clients: Int?

    @Option(help: "Generator event-loop threads.")
    public var threads: Int = 2

    @Option(help: "Stop after this many requests (default 10000 unless --duration is given).")
    public var total: Int?

    @Option(help: "Stop sending after this long (e.g. 10s, 500ms, 1m).")
    public var duration: BenchDuration?

    @Option(help: "Key size in bytes: 'k' and a zero-padded number.")
    public var keySize: Int = 8

    @Option(help: "Value size in bytes.")
    public var valueSize: Int = 256

    @Flag(help: "Keys in order (connection i writes i, i+conns, ...) instead of uniformly random.")
    public var sequentialKeys = false

    @Option(help: "Number of distinct keys.")
    public var keySpace: Int = 100_000

    @Flag(help: "Hot-key mode: a key space of 10 keys.")
    public var hotKey = false

    @Option(help: "A request not answered within this counts as a timeout.")
    public var timeout: BenchDuration = BenchDuration(.seconds(5))

    @Option(help: "Secure cluster: the CA certificate; every endpoint is dialled with TLS.")
    public var cacert: String?
    @Option(help: "Client certificate (with --key).")
    public var cert: String?
    @Option(help: "Client certificate's key.")
    public var key: String?
    @Option(help: "Bearer token sent with every request.")
    public var token: String?

    @Option(help: "Seed of the key choice.")
    public var seed: UInt64 = 42

    @Flag(help: "Print the result as one CSV line (with header) instead of text.")
    public var csv = false

    public init() {}

    public mutating func validate() throws {
        if total != nil, duration != nil { throw ValidationError("give --total or --duration, not both") }
        if let total, total < 1 { throw ValidationError("--total must be at least 1") }
        guard conns >= 1 else { throw ValidationError("--conns must be at least 1") }
        if let clients, clients < conns { throw ValidationError("--clients must be at least --conns") }
        guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
        guard keySize >= 2 else { throw ValidationError("--key-size must be at least 2") }
        guard valueSize >= 1 else { throw ValidationError("--value-size must be at least 1") }
        guard keySpace >= 1 else { throw ValidationError("--key-space must be at least 1") }
        if let endpoints { _ = try parseEndpoints(endpoints) }
    }

    public func resolvedEndpoints() throws -> [BenchEndpoint] {
        try endpoints.map(parseEndpoints) ?? defaultEndpoints(for: system)
    }

    public func spec(operation: BenchOperation) throws -> LoadSpec {
        let stop: StopCondition = duration.map { .duration($0.duration) } ?? .total(total ?? 10_000)
        return LoadSpec(
            system: system, endpoints: try resolvedEndpoints(), conns: conns, clients: clients ?? conns,
            threads: threads, stop: stop, operation: operation,
            keys: KeyShape(keySize: keySize, valueSize: valueSize, keySpace: hotKey ? 10 : keySpace,
                           sequential: sequentialKeys),
            timeout: timeout.duration, seed: seed)
            .secured(try benchSecurity(cacert: cacert, cert: cert, key: key, token: token))
    }

    func runAndPrint(operation: BenchOperation) async throws {
        let spec = try spec(operation: operation)
        let result = try await LoadGenerator.run(spec)
        let record = RunRecord(system: system, scenario: operation.description, round: 1, conns: conns, result: result)
        if csv {
            print(ReportWriter.csv([record]), terminator: "")
        } else {
            print(Summary.text(spec: spec, result: result))
        }
        if result.succeeded == 0 { throw ExitCode(4) }
    }
}

/// The text summary of one run.
public enum Summary {
    public static func text(spec: LoadSpec, result: LoadResult) -> String {
        let latency = result.latency.summary
        let ms = ReportWriter.formatMillis
        var lines = [
            "\(spec.system.rawValue) \(spec.operation.description): \(spec.conns) conns, "
                + "\(spec.clients) clients, \(spec.endpoints.map(\.description).joined(separator: ","))",
            "  requests ok: \(result.succeeded) in \(String(format: "%.2f", result.elapsedSeconds)) s = "
                + "\(ReportWriter.formatOps(result.opsPerSecond)) ops/s",
            "  latency ms: avg \(ms(latency.mean)), p50 \(ms(Double(latency.p50))), p90 \(ms(Double(latency.p90))), "
                + "p99 \(ms(Double(latency.p99))), p99.9 \(ms(Double(latency.p999))), max \(ms(Double(latency.max)))",
        ]
        if result.notFound > 0 { lines.append("  reads of absent keys: \(result.notFound)") }
        let errors = result.errors.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
        lines.append("  errors: " + (errors.isEmpty ? "0" : errors.joined(separator: ", ")))
        return lines.joined(separator: "\n")
    }
}

// MARK: - Subcommands

/// `bench put`: every request writes a key.
public struct BenchPut: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(commandName: "put", abstract: "Write load (PUT).")
    @OptionGroup public var load: LoadOptions
    public init() {}
    public func run() async throws { try await load.runAndPrint(operation: .put) }
}

/// `bench get --consistency ...`: every request reads a key.
public struct BenchGet: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "get", abstract: "Read load (GET); etcd reads lease and eventual as serializable.")
    @OptionGroup public var load: LoadOptions
    @Option(help: "linearizable, lease or eventual.")
    public var consistency: BenchConsistency = .linearizable
    public init() {}
    public func run() async throws { try await load.runAndPrint(operation: .get(consistency)) }
}

/// `bench mixed`: puts and gets (the hot-key scenario is `mixed --hot-key`).
public struct BenchMixed: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mixed", abstract: "Mixed load: --write-percent puts, the rest gets.")
    @OptionGroup public var load: LoadOptions
    @Option(help: "Percentage of puts (0-100).")
    public var writePercent: Int = 50
    @Option(help: "Consistency of the gets.")
    public var consistency: BenchConsistency = .linearizable
    public init() {}
    public func validate() throws {
        guard (0...100).contains(writePercent) else { throw ValidationError("--write-percent must be 0...100") }
    }
    public func run() async throws {
        try await load.runAndPrint(operation: .mixed(writePercent: writePercent, readConsistency: consistency))
    }
}

/// `bench suite`: the standard scenarios, optionally side by side with etcd, and the report.
public struct BenchSuite: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "suite",
        abstract: "Run the standard scenarios (alternating with etcd when --etcd-endpoints is given); write a report.",
        discussion: """
            Scenarios: write-1 (1 connection to the first endpoint), write-hc, read-linearizable, read-lease, \
            read-eventual (--hc-conns connections over all endpoints), hotkey (10 keys, 50/50 put and linearizable \
            get). Before the reads, --preload keys are written sequentially to every system. With two systems each \
            round runs every scenario on both, alternating which goes first, and the report has the ratio table \
            (medians over rounds). Put the leader first in each endpoint list to send write-1 to the leader.
            """)

    @Option(help: "Our endpoints (default 127.0.0.1:9081-9083).")
    public var endpoints: String?
    @Option(help: "etcd endpoints: when given, etcd runs beside us.")
    public var etcdEndpoints: String?
    @Flag(help: "Run only etcd (with --etcd-endpoints).")
    public var etcdOnly = false
    @Option(help: "A static HTTP server (nginx 'return 200'): read-lease's shape is also run against it, for the ceiling.")
    public var ceilingEndpoint: String?
    @Option(help: "Secure clusters: the CA that signed both systems' server certificates; every run but the ceiling's is TLS.")
    public var cacert: String?
    @Option(help: "Client certificate presented to both systems (with --key).")
    public var cert: String?
    @Option(help: "Client certificate's key.")
    public var key: String?
    @Option(help: "Bearer token sent to our nodes (etcd gets the client certificate only).")
    public var token: String?
    @Option(help: "Rounds (the report shows medians).")
    public var rounds: Int = 2
    @Option(help: "Length of each run.")
    public var duration: BenchDuration = BenchDuration(.seconds(10))
    @Option(help: "Connections (and clients) of the high-concurrency scenarios.")
    public var hcConns: Int = 120
    @Option(help: "Generator threads.")
    public var threads: Int = 2
    @Option(help: "Comma-separated scenario names (default: all).")
    public var scenarios: String?
    @Option(help: "Keys written before the reads (0 to skip).")
    public var preload: Int = 100_000
    @Option(help: "Directory for the report files NAME.md and NAME.csv (default: print only).")
    public var out: String?
    @Option(help: "Base name of the report files.")
    public var name: String = "report"
    @Option(help: "Report title.")
    public var title: String = "dbench report"
    @Option(name: .customLong("meta"), help: "key=value lines for the report header (repeatable).")
    public var meta: [String] = []
    @Option(help: "SYSTEM=PID,PID,...: the servers' processes, whose CPU time per run goes in the report (repeatable).")
    public var pids: [String] = []

    public init() {}

    public func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard hcConns >= 1 else { throw ValidationError("--hc-conns must be at least 1") }
        if let endpoints { _ = try parseEndpoints(endpoints) }
        if let etcdEndpoints { _ = try parseEndpoints(etcdEndpoints) }
        if let ceilingEndpoint { _ = try parseEndpoints(ceilingEndpoint) }
        if etcdOnly, etcdEndpoints == nil { throw ValidationError("--etcd-only needs --etcd-endpoints") }
        for pair in meta where !pair.contains("=") { throw ValidationError("--meta wants key=value, got '\(pair)'") }
        for entry in pids {
            guard let (system, _) = ProcessCPU.parse(entry), BenchSystem(rawValue: system) != nil else {
                throw ValidationError("--pids wants SYSTEM=PID,PID,... with SYSTEM dengine, etcd or nginx, got '\(entry)'")
            }
        }
        _ = try selectedScenarios()
    }

    func selectedScenarios() throws -> [Scenario] {
        let all = Scenario.standard(conns: hcConns)
        guard let scenarios else { return all }
        let names = scenarios.split(separator: ",").map { String($0).trimmingSpaces }
        return try names.map { name in
            guard let scenario = all.first(where: { $0.name == name }) else {
                throw ValidationError(
                    "unknown scenario '\(name)' (known: \(all.map(\.name).joined(separator: ", ")))")
            }
            return scenario
        }
    }

    public func run() async throws {
        let security = try benchSecurity(cacert: cacert, cert: cert, key: key, token: token)
        /// The same TLS for both systems; the bearer token is ours only.
        func secured(_ spec: LoadSpec) -> LoadSpec {
            switch spec.system {
            case .dengine: return spec.secured(security)
            case .etcd: return spec.secured(security.map { ClientSecurity(tls: $0.tls, token: nil) })
            case .nginx: return spec
            }
        }
        var systems: [(BenchSystem, [BenchEndpoint])] = []
        if !etcdOnly { systems.append((.dengine, try endpoints.map(parseEndpoints) ?? defaultEndpoints(for: .dengine))) }
        if let etcdEndpoints { systems.append((.etcd, try parseEndpoints(etcdEndpoints))) }
        let scenarios = try selectedScenarios()
        let needsKeys = scenarios.contains { if case .get = $0.operation { true } else { false } }
        if preload > 0, needsKeys {
            for (system, endpoints) in systems {
                let spec = LoadSpec(
                    system: system, endpoints: endpoints, conns: 48, clients: 48, threads: threads,
                    stop: .total(preload), operation: .put,
                    keys: KeyShape(keySpace: preload, sequential: true), timeout: .seconds(10))
                let result = try await LoadGenerator.run(secured(spec))
                log("preload \(system.rawValue): \(result.succeeded) keys, \(result.errorCount) errors, "
                    + "\(ReportWriter.formatOps(result.opsPerSecond)) puts/s")
                if result.errorCount > 0 { throw ExitCode(4) }
            }
        }
        var processes: [BenchSystem: ProcessCPU] = [:]
        for entry in pids {
            if let (name, list) = ProcessCPU.parse(entry), let system = BenchSystem(rawValue: name) {
                processes[system] = ProcessCPU(pids: list)
            }
        }
        var records: [RunRecord] = []
        for round in 1...rounds {
            for scenario in scenarios {
                var order = round % 2 == 1 ? systems : systems.reversed()
                if let ceilingEndpoint, scenario.operation == .get(.lease) {
                    order.append((.nginx, try parseEndpoints(ceilingEndpoint)))
                }
                for (system, endpoints) in order {
                    let spec = LoadSpec(
                        system: system, endpoints: scenario.firstEndpointOnly ? [endpoints[0]] : endpoints,
                        conns: scenario.conns, clients: scenario.conns, threads: threads,
                        stop: .duration(duration.duration), operation: scenario.operation,
                        keys: KeyShape(keySpace: scenario.keySpace), seed: UInt64(round))
                    let cpuBefore = processes[system]?.seconds()
                    let result = try await LoadGenerator.run(secured(spec))
                    let cpuAfter = processes[system]?.seconds()
                    let cpu = cpuBefore.flatMap { before in cpuAfter.map { $0 - before } }
                    let record = RunRecord(
                        system: system, scenario: scenario.name, round: round, conns: scenario.conns, result: result,
                        cpuSeconds: cpu)
                    records.append(record)
                    let latency = record.latency
                    log("round \(round) \(scenario.name) \(system.rawValue): "
                        + "\(ReportWriter.formatOps(record.opsPerSecond)) ops/s, p50 "
                        + "\(ReportWriter.formatMillis(Double(latency.p50))) ms, p99 "
                        + "\(ReportWriter.formatMillis(Double(latency.p99))) ms, errors \(record.errorCount)")
                    // Let the last run's tail (fsyncs, snapshots) drain before the next one starts.
                    try await Task.sleep(for: .seconds(1))
                }
            }
        }
        var header: [(String, String)] = [
            ("date", ISO8601DateFormatter().string(from: Date())),
            ("machine", MachineInfo.current().description),
        ]
        for pair in meta {
            let parts = pair.split(separator: "=", maxSplits: 1)
            header.append((String(parts[0]), parts.count > 1 ? String(parts[1]) : ""))
        }
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        if !load.isEmpty {
            header.append(("load average at the end (1, 5, 15 min; other work on the machine included)", load))
        }
        header.append(
            ("runs", "\(rounds) round(s) of \(String(format: "%g", duration.seconds)) s per scenario and system; "
                + "high-concurrency scenarios \(hcConns) connections; generator threads \(threads)"))
        for (system, endpoints) in systems {
            header.append(("\(system.rawValue) endpoints", endpoints.map(\.description).joined(separator: ",")))
        }
        if let ceilingEndpoint { header.append(("nginx (HTTP ceiling) endpoint", ceilingEndpoint)) }
        let markdown = ReportWriter.markdown(title: title, meta: header, records: records)
        print(markdown)
        if let out {
            try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            try markdown.write(toFile: "\(out)/\(name).md", atomically: true, encoding: .utf8)
            try ReportWriter.csv(records).write(toFile: "\(out)/\(name).csv", atomically: true, encoding: .utf8)
            log("wrote \(out)/\(name).md and \(out)/\(name).csv")
        }
    }

    private func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

/// The `bench` command tree, shared by `dbench` and `dctl bench`.
public struct BenchCommand: AsyncParsableCommand {
    public static let subcommandTypes: [any ParsableCommand.Type] = [
        BenchPut.self, BenchGet.self, BenchMixed.self, BenchSuite.self,
    ]

    public static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Load generator for dengine or etcd: put, get, mixed, and the standard scenarios (suite).",
        discussion: """
            Examples:
              bench put --conns 120 --duration 10s
              bench get --consistency lease --conns 120 --duration 10s
              bench mixed --hot-key --conns 120 --duration 10s
              bench put --system etcd --endpoints 127.0.0.1:2379 --total 10000
              bench suite --etcd-endpoints 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379 --out benches/reports/x
            Exit codes: 0 ok, 4 no request succeeded, 64 usage.
            """,
        subcommands: subcommandTypes)

    public init() {}
}

// MARK: - Secure clusters

/// `--cacert/--cert/--key/--token` as client settings; `nil` without `--cacert`.
func benchSecurity(cacert: String?, cert: String?, key: String?, token: String?) throws -> ClientSecurity? {
    do {
        // Flags only (a benchmark names its cluster explicitly): no config dir, no DCTL_* variables.
        return try ClientSecurity.resolve(
            cacert: cacert, cert: cert, key: key, token: token, configDir: nil, environment: [:])
    } catch {
        throw ValidationError("TLS settings: \(error)")
    }
}

extension LoadSpec {
    /// This spec with `security`.
    func secured(_ security: ClientSecurity?) -> LoadSpec {
        var copy = self
        copy.security = security
        return copy
    }
}
