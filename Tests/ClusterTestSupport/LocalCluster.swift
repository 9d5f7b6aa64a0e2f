import Chaos
import ClusterAPI
import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A cluster of real `dnode` processes on loopback, for process-level tests.
///
/// It builds nothing: it runs the `dnode` that `swift build` / `swift test` left next to the test bundle
/// (`DNODE_BIN` overrides; see `locateBinary()`). Each cluster gets a fresh directory under the temp dir with one
/// folder per node:
///
/// ```
/// <root>/n1/config.toml   generated (ports from PortReservation, short timeouts from Options)
/// <root>/n1/db/           db_root_dir
/// <root>/n1/logs/d.log    the node's log file (log_dir = <root>/n1/logs)
/// <root>/n1/stdout.log    the process's stdout, appended across restarts
/// <root>/n1/stderr.log    the process's stderr, appended across restarts
/// ```
///
/// Nodes listen on 127.0.0.1 only. Processes are always killed: `stop()` (idempotent), `deinit`, and as a last
/// resort `ChildRegistry` at exit or on a fatal signal. The directory is removed by `stop()` unless
/// `keepFiles` is set (`withLocalCluster` sets it when the test body throws) or `KEEP_CLUSTER_DIRS=1`.
final class LocalCluster: @unchecked Sendable {
    // MARK: Options

    struct Options: Sendable {
        /// Node ids that are learners (role 4, status 1) in `initial_cluster`; the others are voters.
        var learners: Set<Int> = []
        /// Node ids that join later: the other nodes' `initial_cluster` does not list them; their own lists the
        /// other nodes and themselves as a learner (role 4), so they ask to join when started.
        var joiners: Set<Int> = []
        /// `cluster.initial_cluster_size` (single-node bootstrap with 1); `nil` leaves it out.
        var initialClusterSize: Int? = nil
        var electionTimeoutMinMs = 300
        var electionTimeoutMaxMs = 600
        var heartbeatMs = 50
        var leaseMs = 150
        /// `cluster.request_timeout_ms`: how long a write waits before `504 timeout`.
        var requestTimeoutMs = 1500
        /// `MemFirst` or `DiskFirst`.
        var strategy = "MemFirst"
        /// A TOML inline value for `flush_policy`.
        var flushPolicy = "{ Batch = { threshold = 100, interval_ms = 20 } }"
        var defaultReadPolicy = "LeaseRead"
        var snapshotEnabled = true
        var maxLogEntriesBeforeSnapshot = 10000
        var retainedLogEntries = 1000
        /// `LOG_LEVEL` for the nodes; `nil` passes the test process's own (or none).
        var logLevel: String? = nil
        /// Extra environment for every node.
        var environment: [String: String] = [:]
        /// Per-request deadline of the HTTP clients.
        var requestTimeout: Duration = .seconds(3)
        /// How long `start()`/`restart()` wait for a node's `/status` to answer.
        var readyTimeout: Duration = .seconds(20)
        /// TOML appended to every node's config; `{id}` is replaced by the node's id (e.g. a `[security]` section
        /// naming `node.{id}.crt`).
        var extraTOML = ""
        /// `RLIMIT_NOFILE` (soft and hard) of these nodes, set by starting them through `prlimit(1)` (which execs
        /// `dnode`, so the pid is the node's). Both limits, because a node raises its soft limit to the hard one.
        var descriptorLimits: [Int: Int] = [:]

        init() {}

        /// Upper bound of the election timeout, as a `Duration`.
        var electionTimeoutMax: Duration { .milliseconds(electionTimeoutMaxMs) }

        /// For a test that asserts that nothing moves (the same leader in the same term) while it loads the cluster.
        /// With the defaults' 300-600 ms a leader whose heartbeats wait that long (its process starved of CPU on a
        /// loaded machine, or a slow fsync holding up the next Ready) rightly loses its term, and the test fails for
        /// what the machine did, not the node; these timeouts tolerate stalls of about a second.
        static var steady: Options {
            var options = Options()
            options.electionTimeoutMinMs = 1000
            options.electionTimeoutMaxMs = 2000
            options.heartbeatMs = 100
            options.leaseMs = 500
            return options
        }
    }

    // MARK: Nodes

    /// Where one node lives. Immutable for the cluster's lifetime (a restart reuses everything).
    struct Node: Sendable {
        var id: Int
        var clientPort: Int
        var metricsPort: Int
        var directory: URL
        var configPath: String { directory.appendingPathComponent("config.toml").path }
        var dataDirectory: String { directory.appendingPathComponent("db").path }
        var logDirectory: String { directory.appendingPathComponent("logs").path }
        /// `<log_dir>/d.log`.
        var logFilePath: String { directory.appendingPathComponent("logs/d.log").path }
        var stdoutPath: String { directory.appendingPathComponent("stdout.log").path }
        var stderrPath: String { directory.appendingPathComponent("stderr.log").path }
        var clientAddress: String { "127.0.0.1:\(clientPort)" }
        var metricsAddress: String { "127.0.0.1:\(metricsPort)" }
    }

    /// How a node process ended.
    typealias ExitStatus = ChildProcess.Termination

    struct NodeExited: StopsWaiting, CustomStringConvertible {
        var id: Int
        var status: ExitStatus
        var stderrTail: String
        var description: String { "node \(id) exited (\(status)) before it was ready; stderr:\n\(stderrTail)" }
    }

    struct BinaryNotFound: Error, CustomStringConvertible {
        var name = "dnode"
        var searched: [String]
        var description: String {
            "\(name) binary not found; build it (`swift build --product \(name)`) or set its *_BIN. Looked at:\n  "
                + searched.joined(separator: "\n  ")
        }
    }

    let name: String
    let root: URL
    let options: Options
    let binary: URL
    /// Node ids in order (1...count).
    let ids: [Int]
    private let nodeTable: [Int: Node]

    private let lock = NSLock()
    private var processes: [Int: ChildProcess] = [:]
    /// The kernel-assigned ports of the nodes, held (bound, not listening) for the cluster's lifetime.
    private let reservation: PortReservation
    private var paused: Set<Int> = []
    private var stopped = false
    private var _keepFiles = ProcessInfo.processInfo.environment["KEEP_CLUSTER_DIRS"].map { $0 != "0" && !$0.isEmpty } ?? false

    /// Keep the cluster directory after `stop()` (for post-mortems). Set automatically when a test body throws.
    var keepFiles: Bool {
        get { lock.withLock { _keepFiles } }
        set { lock.withLock { _keepFiles = newValue } }
    }

    private static let counter = Counter()

    /// Writes the configs of `count` nodes (ids 1...count) into a fresh directory. Starts nothing.
    init(name: String = #function, nodes count: Int = 3, options: Options = Options()) throws {
        precondition(count >= 1)
        self.name = name
        self.options = options
        self.binary = try Self.locateBinary()
        let slug = name.map { $0.isLetter || $0.isNumber ? $0 : "-" }.prefix(40)
        let base = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("dengine-cluster-tests")
        self.root = base.appendingPathComponent("\(getpid())-\(Self.counter.next())-\(String(slug))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        Self.removeStaleDirectories(in: base)

        reservation = try PortReservation(count: 2 * count)
        let ports = reservation.ports
        var table: [Int: Node] = [:]
        for index in 0..<count {
            let id = index + 1
            let directory = root.appendingPathComponent("n\(id)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            table[id] = Node(
                id: id, clientPort: ports[2 * index], metricsPort: ports[2 * index + 1], directory: directory)
        }
        self.ids = Array(1...count)
        self.nodeTable = table
        for id in ids {
            try writeConfig(id, generatedConfig(for: id))
        }
    }

    deinit {
        stop()
    }

    func node(_ id: Int) -> Node {
        guard let node = nodeTable[id] else { preconditionFailure("no node \(id) in cluster \(name)") }
        return node
    }

    var nodes: [Node] { ids.map { node($0) } }

    // MARK: Configs

    /// The TOML this cluster writes for node `id` (before any `writeConfig` override).
    func generatedConfig(for id: Int) -> String {
        let me = node(id)
        let listed = nodes.filter { !options.joiners.contains($0.id) || $0.id == id }
        let members = listed.map { member in
            let learner = options.learners.contains(member.id) || options.joiners.contains(member.id)
            return "  { id = \(member.id), address = \"\(member.clientAddress)\", role = \(learner ? 4 : 1), "
                + "status = \(learner ? 1 : 2) },"
        }
        return """
            # Generated by LocalCluster for test \(name).
            [cluster]
            node_id = \(id)
            listen_address = "\(me.clientAddress)"
            initial_cluster = [
            \(members.joined(separator: "\n"))
            ]
            db_root_dir = "\(me.dataDirectory)"
            log_dir = "\(me.logDirectory)"
            request_timeout_ms = \(options.requestTimeoutMs)
            \(options.initialClusterSize.map { "initial_cluster_size = \($0)" } ?? "")

            [monitoring]
            metrics_address = "\(me.metricsAddress)"

            [raft.election]
            election_timeout_min = \(options.electionTimeoutMinMs)
            election_timeout_max = \(options.electionTimeoutMaxMs)

            [raft.replication]
            rpc_append_entries_clock_in_ms = \(options.heartbeatMs)
            append_entries_max_entries_per_replication = 5000

            [raft.read_consistency]
            default_policy = "\(options.defaultReadPolicy)"
            lease_duration_ms = \(options.leaseMs)
            allow_client_override = true

            [raft.persistence]
            strategy = "\(options.strategy)"
            flush_policy = \(options.flushPolicy)

            [raft.snapshot]
            enable = \(options.snapshotEnabled)
            max_log_entries_before_snapshot = \(options.maxLogEntriesBeforeSnapshot)
            retained_log_entries = \(options.retainedLogEntries)

            \(options.extraTOML.replacingOccurrences(of: "{id}", with: "\(id)"))
            """
    }

    /// Replaces node `id`'s config file (takes effect at its next start).
    func writeConfig(_ id: Int, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: node(id).configPath))
    }

    // MARK: Starting

    /// Starts the given nodes (default: all) and, with `waitReady`, waits until each answers `/status`.
    func start(_ which: [Int]? = nil, waitReady: Bool = true) async throws {
        let targets = which ?? ids
        for id in targets {
            try launch(id)
        }
        if waitReady {
            for id in targets {
                try await self.waitReady(id)
            }
        }
    }

    /// Starts node `id` with its config (`dnode --config <config.toml>`), returns at once.
    ///
    /// - Parameters:
    ///   - arguments: replaces the default `["--config", configPath]`.
    ///   - environment: added to the node's environment (after the cluster's own).
    func launch(_ id: Int, arguments: [String]? = nil, environment: [String: String] = [:]) throws {
        let node = node(id)
        try lock.withLock {
            precondition(!stopped, "cluster \(name) is stopped")
            if let running = processes[id], running.isRunning {
                throw LaunchError(description: "node \(id) is already running (pid \(running.pid))")
            }
        }
        var executable = binary.path
        var argv = arguments ?? ["--config", node.configPath]
        if let limit = options.descriptorLimits[id] {
            guard let prlimit = Self.prlimitPath else {
                throw LaunchError(description: "node \(id): a descriptor limit needs prlimit(1), not found")
            }
            argv = ["--nofile=\(limit):\(limit)", "--", executable] + argv
            executable = prlimit
        }
        let process: ChildProcess
        do {
            process = try ChildProcess.launch(
                executable, arguments: argv,
                environment: childEnvironment(extra: environment), workingDirectory: node.directory.path,
                stdout: .append(node.stdoutPath, banner: "--- start \(Date()) ---\n"),
                stderr: .append(node.stderrPath, banner: "--- start \(Date()) ---\n"))
        } catch {
            throw LaunchError(description: "node \(id): \(error)")
        }
        ChildRegistry.register(process.pid)
        lock.withLock {
            processes[id] = process
            paused.remove(id)
        }
    }

    struct LaunchError: Error, CustomStringConvertible {
        var description: String
    }

    /// Waits until node `id` answers `GET /status` with a decodable `NodeStatus`; fails fast if it exits.
    @discardableResult
    func waitReady(_ id: Int, timeout: Duration? = nil) async throws -> NodeStatus {
        let client = self.client(id).withTimeout(.milliseconds(500))
        return try await waitFor("node \(id) to answer /status", timeout: timeout ?? options.readyTimeout) {
            if let status = self.exitStatus(id) {
                throw NodeExited(id: id, status: status, stderrTail: self.tail(of: self.node(id).stderrPath, lines: 20))
            }
            return try await client.status()
        }
    }

    /// Restarts node `id` with the same config and data directory; kills it first if it still runs.
    func restart(_ id: Int, waitReady: Bool = true) async throws {
        if isRunning(id) {
            signal(id, SIGKILL)
            try await waitForExit(id, timeout: .seconds(5))
        }
        try launch(id)
        if waitReady { try await self.waitReady(id) }
    }

    // MARK: Signals

    /// Sends `signal` to node `id` if it runs. SIGCONT is sent first for anything but SIGSTOP/SIGCONT to a
    /// paused node, so a stopped process can act on SIGTERM.
    func signal(_ id: Int, _ signal: Int32) {
        guard let process = lock.withLock({ processes[id] }), process.isRunning else { return }
        if signal == SIGSTOP {
            lock.withLock { _ = paused.insert(id) }
        } else {
            if signal != SIGKILL && lock.withLock({ paused.contains(id) }) { process.signal(SIGCONT) }
            lock.withLock { _ = paused.remove(id) }
        }
        process.signal(signal)
    }

    /// `kill -9`.
    func sigkill(_ id: Int) { signal(id, SIGKILL) }
    /// Graceful stop request.
    func terminate(_ id: Int) { signal(id, SIGTERM) }
    /// `SIGSTOP`: the process freezes (its sockets stay open, nothing answers).
    func pause(_ id: Int) { signal(id, SIGSTOP) }
    /// `SIGCONT`.
    func resume(_ id: Int) { signal(id, SIGCONT) }

    /// `kill -9` node `id` and wait until it is reaped.
    func crash(_ id: Int) async throws {
        sigkill(id)
        try await waitForExit(id, timeout: .seconds(5))
    }

    func isRunning(_ id: Int) -> Bool {
        lock.withLock { processes[id]?.isRunning ?? false }
    }

    func isPaused(_ id: Int) -> Bool {
        lock.withLock { paused.contains(id) }
    }

    func pid(_ id: Int) -> Int32? {
        lock.withLock { processes[id].flatMap { $0.isRunning ? $0.pid : nil } }
    }

    /// How node `id`'s last process ended; `nil` while it runs or if it never started.
    func exitStatus(_ id: Int) -> ExitStatus? {
        lock.withLock({ processes[id] })?.termination
    }

    /// Waits until node `id`'s process has ended and returns how.
    @discardableResult
    func waitForExit(_ id: Int, timeout: Duration) async throws -> ExitStatus {
        guard lock.withLock({ processes[id] }) != nil else {
            throw LaunchError(description: "node \(id) was never started")
        }
        let status = try await waitFor("node \(id) to exit", timeout: timeout, interval: .milliseconds(10)) {
            self.exitStatus(id)
        }
        if let pid = lock.withLock({ processes[id]?.pid }) { ChildRegistry.unregister(pid) }
        return status
    }

    // MARK: Clients and status

    /// The HTTP client of node `id` (client port and metrics port).
    func client(_ id: Int) -> NodeClient {
        let node = node(id)
        return NodeClient(
            nodeID: id, clientPort: node.clientPort, metricsPort: node.metricsPort, timeout: options.requestTimeout)
    }

    /// `GET /status` of node `id`.
    func status(_ id: Int, timeout: Duration = .seconds(1)) async throws -> NodeStatus {
        try await client(id).withTimeout(timeout).status()
    }

    /// The statuses of the running, unpaused nodes among `among` (default: all) that answered, polled in parallel.
    func statuses(among: [Int]? = nil, timeout: Duration = .milliseconds(500)) async -> [Int: NodeStatus] {
        let targets = (among ?? ids).filter { isRunning($0) && !isPaused($0) }
        return await withTaskGroup(of: (Int, NodeStatus?).self) { group in
            for id in targets {
                let client = self.client(id).withTimeout(timeout)
                group.addTask { (id, try? await client.status()) }
            }
            var result: [Int: NodeStatus] = [:]
            for await (id, status) in group {
                if let status { result[id] = status }
            }
            return result
        }
    }

    /// The node that reports `role == leader` with the highest term among the responding nodes, or `nil`.
    ///
    /// With `requireMajority`, the leader counts only once a majority of the voters (itself included) report it
    /// as `leader_id` at its term, i.e. it has been heard from, not merely elected.
    func leader(among: [Int]? = nil, requireMajority: Bool = false) async -> NodeStatus? {
        let all = await statuses(among: among)
        guard let leader = all.values.filter({ $0.role == .leader }).max(by: { $0.term < $1.term }) else {
            return nil
        }
        if requireMajority {
            let supporters = all.values.filter { $0.nodeID == leader.nodeID || ($0.leaderID == leader.nodeID && $0.term == leader.term) }
            guard supporters.count * 2 > leader.voters.count else { return nil }
        }
        return leader
    }

    /// Polls `leader(among:)` until there is one; returns its status.
    @discardableResult
    func waitForLeader(
        timeout: Duration = .seconds(10), among: [Int]? = nil, excluding: Set<Int> = [], requireMajority: Bool = false
    ) async throws -> NodeStatus {
        let candidates = (among ?? ids).filter { !excluding.contains($0) }
        return try await waitFor("a leader among nodes \(candidates)", timeout: timeout) {
            await self.leader(among: candidates, requireMajority: requireMajority)
        }
    }

    // MARK: Stopping

    /// SIGKILLs every node still running, waits until each is reaped (at most 5 s), and removes the directory
    /// unless `keepFiles`. Idempotent; safe to call from `deinit`.
    func stop() {
        let (running, keep): ([ChildProcess], Bool) = lock.withLock {
            if stopped { return ([], true) }
            stopped = true
            return (Array(processes.values), _keepFiles)
        }
        for process in running where process.isRunning {
            process.signal(SIGKILL)
        }
        let deadline = ContinuousClock.now + .seconds(5)
        for process in running {
            _ = process.waitUntilExit(timeout: ContinuousClock.now.duration(to: deadline))
            ChildRegistry.unregister(process.pid)
        }
        reservation.release()
        if !keep {
            try? FileManager.default.removeItem(at: root)
        }
    }

    /// SIGTERM to every running node, wait up to `timeout` for them to exit, then `stop()`.
    func stopGracefully(timeout: Duration = .seconds(10)) async {
        for id in ids where isRunning(id) { terminate(id) }
        for id in ids where isRunning(id) {
            _ = try? await waitForExit(id, timeout: timeout)
        }
        stop()
    }

    // MARK: Logs

    /// The node's log file (`<log_dir>/d.log`), or "" if it does not exist.
    func logText(_ id: Int) -> String { Self.read(node(id).logFilePath) }
    func stdoutText(_ id: Int) -> String { Self.read(node(id).stdoutPath) }
    func stderrText(_ id: Int) -> String { Self.read(node(id).stderrPath) }

    /// The last lines of every node's stderr, stdout and d.log, with pids and ports: for failure messages.
    func diagnostics(lines: Int = 25) -> String {
        var text = "cluster \(name) at \(root.path) (binary \(binary.path))\n"
        for node in nodes {
            let state: String
            if let pid = pid(node.id) {
                state = "running pid \(pid)\(isPaused(node.id) ? " (paused)" : "")"
            } else if let exit = exitStatus(node.id) {
                state = "\(exit)"
            } else {
                state = "never started"
            }
            text += "== node \(node.id): \(state), client \(node.clientAddress), metrics \(node.metricsAddress)\n"
            for (label, path) in [("stderr", node.stderrPath), ("stdout", node.stdoutPath), ("d.log", node.logFilePath)] {
                let tail = tail(of: path, lines: lines)
                if !tail.isEmpty { text += "-- \(label):\n\(tail)\n" }
            }
        }
        return text
    }

    func tail(of path: String, lines: Int) -> String {
        Self.read(path).split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    // MARK: Internals

    private func childEnvironment(extra: [String: String]) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { key, _ in
            !key.uppercased().hasPrefix("RAFT__") && key != "CONFIG_PATH" && key != "METRICS_PORT"
        }
        if let level = options.logLevel { environment["LOG_LEVEL"] = level }
        environment["NO_COLOR"] = "1"
        for (key, value) in options.environment { environment[key] = value }
        for (key, value) in extra { environment[key] = value }
        return environment
    }

    private static func read(_ path: String) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Removes directories left by earlier test processes that are no longer alive (named `<pid>-...`).
    private static func removeStaleDirectories(in base: URL) {
        guard Counter.firstUse.claim() else { return }
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: base.path) else { return }
        for entry in entries {
            guard let pid = entry.split(separator: "-").first.flatMap({ Int32($0) }), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                try? FileManager.default.removeItem(at: base.appendingPathComponent(entry))
            }
        }
    }

    /// `prlimit(1)` (util-linux), which `Options.descriptorLimits` starts nodes through; `nil` when absent.
    static let prlimitPath: String? = ["/usr/bin/prlimit", "/bin/prlimit"].first {
        FileManager.default.isExecutableFile(atPath: $0)
    }

    // MARK: Finding dnode

    /// Finds the `dnode` executable, in this order:
    /// 1. `DNODE_BIN` (must exist and be executable);
    /// 2. the directory of the running test executable (`/proc/self/exe`; `swift test` runs
    ///    `<scratch>/<triple>/<config>/<Package>PackageTests.xctest`, next to which it built `dnode`), and, on
    ///    macOS, the directory holding the `.xctest` bundle;
    /// 3. `.build*/debug/dnode`, `.build*/<triple>/debug/dnode` (then `release`) under the package root found
    ///    from this file's path; the most recently modified wins.
    static func locateBinary(named name: String = "dnode", variable: String = "DNODE_BIN") throws -> URL {
        let fileManager = FileManager.default
        var searched: [String] = []
        if let explicit = ProcessInfo.processInfo.environment[variable], !explicit.isEmpty {
            guard fileManager.isExecutableFile(atPath: explicit) else {
                throw BinaryNotFound(name: name, searched: ["\(variable)=\(explicit) (not an executable file)"])
            }
            return URL(fileURLWithPath: explicit)
        }
        var directories: [URL] = []
        if let executable = try? fileManager.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            directories.append(URL(fileURLWithPath: executable).deletingLastPathComponent())
        }
        if let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            directories.append(executable.deletingLastPathComponent())
        }
        for bundle in Bundle.allBundles where bundle.bundlePath.hasSuffix(".xctest") {
            directories.append(URL(fileURLWithPath: bundle.bundlePath).deletingLastPathComponent())
        }
        for directory in directories {
            let candidate = directory.appendingPathComponent(name).path
            searched.append(candidate)
            if fileManager.isExecutableFile(atPath: candidate) { return URL(fileURLWithPath: candidate) }
        }
        // Tests/DtopTests/Support/LocalCluster.swift -> package root.
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        var found: [(path: String, modified: Date)] = []
        let scratchDirectories = ((try? fileManager.contentsOfDirectory(atPath: packageRoot.path)) ?? [])
            .filter { $0.hasPrefix(".build") }
        for scratch in scratchDirectories {
            let scratchURL = packageRoot.appendingPathComponent(scratch)
            var configurations = ["debug", "release"].map { scratchURL.appendingPathComponent($0) }
            for triple in (try? fileManager.contentsOfDirectory(atPath: scratchURL.path)) ?? [] where triple.contains("-") {
                configurations += ["debug", "release"].map {
                    scratchURL.appendingPathComponent(triple).appendingPathComponent($0)
                }
            }
            for configuration in configurations {
                let candidate = configuration.appendingPathComponent(name).path
                searched.append(candidate)
                if fileManager.isExecutableFile(atPath: candidate),
                    let attributes = try? fileManager.attributesOfItem(atPath: candidate),
                    let modified = attributes[.modificationDate] as? Date
                {
                    found.append((candidate, modified))
                }
            }
        }
        if let newest = found.max(by: { $0.modified < $1.modified }) {
            return URL(fileURLWithPath: newest.path)
        }
        throw BinaryNotFound(name: name, searched: searched)
    }
}

// MARK: - Scoped use

/// A test failure with the cluster's logs attached.
struct ClusterFailure: Error, CustomStringConvertible {
    var underlying: any Error
    var diagnostics: String
    var description: String { "\(underlying)\n\(diagnostics)" }
}

/// Creates a cluster, starts it (unless `start: false`), runs `body`, and always stops it. If `body` throws, the
/// error is rethrown with the nodes' log tails attached and the cluster directory is kept.
func withLocalCluster<T>(
    _ name: String = #function, nodes: Int = 3, options: LocalCluster.Options = .init(), start: Bool = true,
    _ body: (LocalCluster) async throws -> T
) async throws -> T {
    let cluster = try LocalCluster(name: name, nodes: nodes, options: options)
    do {
        if start { try await cluster.start() }
        let result = try await body(cluster)
        cluster.stop()
        return result
    } catch {
        cluster.keepFiles = true
        let diagnostics = cluster.diagnostics()
        cluster.stop()
        throw ClusterFailure(underlying: error, diagnostics: diagnostics)
    }
}

/// A process-wide counter (cluster directory names) and a one-shot flag.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var value = 0

    static let firstUse = Counter()

    func next() -> Int {
        lock.withLock {
            value += 1
            return value
        }
    }

    /// `true` exactly once.
    func claim() -> Bool { next() == 1 }
}
