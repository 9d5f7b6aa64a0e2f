import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where local node processes keep their files.
struct LocalOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of the pid files nN.pid.", valueName: "dir")) var runDir = "run"
    @Option(help: ArgumentHelp("Output of node N goes to <log-root>/N/stdout.log.", valueName: "dir")) var logRoot = "logs"
    @Option(help: ArgumentHelp("The dnode binary (env DNODE_BIN; default: next to dctl, then .build/release/dnode).", valueName: "path"))
    var dnode: String?

    var processes: LocalProcesses { LocalProcesses(runDirectory: runDir, logRoot: logRoot) }
}

struct ClusterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Start, stop and inspect the local cluster (config dir, run/, logs/).",
        subcommands: [ClusterStart.self, ClusterStop.self, ClusterStatus.self])
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Start, stop or kill one local node.",
        subcommands: [NodeStart.self, NodeStop.self, NodeKill.self])
}

// MARK: - Start

extension Context {
    /// The config-dir nodes named by `ids` (all voters when empty); unknown ids are a usage error.
    func selectNodes(_ ids: [UInt64], local: [LocalNode]) throws(CommandFailure) -> [LocalNode] {
        guard !local.isEmpty else {
            throw CommandFailure(
                .failed, code: "no_config", "no nN.toml in \(configDirectory)/",
                hint: "run from the repository root, or pass --config-dir")
        }
        if ids.isEmpty { return local.filter(\.isVoter) }
        var selected: [LocalNode] = []
        for id in ids {
            guard let node = local.first(where: { $0.id == id }) else {
                throw CommandFailure(
                    .usage, code: "usage", "no config for node \(id) in \(configDirectory)/ (have \(local.map(\.id)))")
            }
            selected.append(node)
        }
        return selected
    }

    /// Starts `nodes`, then waits (within `--timeout`, default 20 s) until each answers `/status` and, with
    /// `needLeader`, the cluster is healthy (a leader every node follows; a leader alone suffices at the deadline). Fails fast with the log tail if a node exits.
    func start(
        _ nodes: [LocalNode], local: [LocalNode], options: LocalOptions, needLeader: Bool
    ) async throws(CommandFailure) -> ClusterView {
        let processes = options.processes
        for node in nodes {
            if let pid = processes.livePID(node.id) {
                throw CommandFailure(
                    .failed, code: "already_running", "node \(node.id) is already running (pid \(pid))",
                    hint: "`dctl cluster stop` first, or `dctl cluster status` to look at it")
            }
        }
        let binary = try LocalProcesses.locateDnode(explicit: options.dnode)
        var started: [(LocalNode, Int32)] = []
        for node in nodes {
            let pid = try processes.spawn(binary: binary, node: node)
            started.append((node, pid))
            warn("node \(node.id): pid \(pid), client \(node.client), metrics \(node.metrics), output \(processes.stdoutLog(node.id))")
        }
        let targets = local.filter { $0.isVoter || nodes.map(\.id).contains($0.id) }.map(\.target)
        let client = ClusterClient(targets: targets, timeout: .seconds(5), probeTimeout: probeTimeout)
        let limit = timeout(default: .seconds(20))
        let clock = ContinuousClock()
        let deadline = clock.now + limit
        var view = ClusterView(probes: [])
        while true {
            for (node, pid) in started where LocalProcesses.hasExited(pid) {
                try? FileManager.default.removeItem(atPath: processes.pidFile(node.id))
                throw CommandFailure(
                    .failed, code: "start_failed",
                    "node \(node.id) (pid \(pid)) exited during start-up; last lines of \(processes.stdoutLog(node.id)):\n"
                        + LocalProcesses.tail(processes.stdoutLog(node.id)),
                    hint: "fix the cause above; the other nodes keep running (`dctl cluster stop` stops them)")
            }
            view = ClusterView(probes: await client.probeAll())
            let answered = Set(view.rows.filter(\.reachable).compactMap(\.id))
            let allAnswered = nodes.allSatisfy { answered.contains($0.id) }
            if allAnswered && (!needLeader || view.health == .healthy) { return view }
            // A leader was elected but some follower has not heard from it yet at the deadline: good enough.
            if clock.now >= deadline && allAnswered && view.leaderID != nil { return view }
            if clock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(100))
        }
        throw CommandFailure(
            .unavailable, code: "start_timeout",
            "nodes \(nodes.map(\.id)) started but \(needLeader ? "no leader was elected" : "not all answered") within "
                + "\(formatDuration(limit)): \(view.reasons.joined(separator: "; "))",
            hint: "the nodes keep running; look at \(options.logRoot)/N/ and `dctl cluster status`, or `dctl cluster stop`")
    }
}

struct ClusterStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start",
        abstract: "Start the config dir's voters (or the nodes named) in the background; wait for a leader.",
        discussion: """
            Each node runs `dnode --config <config-dir>/nN.toml` from the current directory, with its pid in \
            <run-dir>/nN.pid and its output in <log-root>/N/stdout.log. Waits up to --timeout (default 20s) for \
            every node to answer and a leader to be elected, then prints the status table. A node that is \
            already running is refused (exit 1); a node that exits during start-up fails with its log tail.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Argument(help: "Node ids (default: every voter with a config file).") var nodes: [UInt64] = []

    func run() async throws {
        try await global.execute("cluster start") { context throws(CommandFailure) in
            let all = context.localNodes()
            let selected = try context.selectNodes(nodes, local: all)
            let view = try await context.start(selected, local: all, options: local, needLeader: true)
            let pids = Dictionary(uniqueKeysWithValues: all.compactMap { node in local.processes.livePID(node.id).map { (node.id, $0) } })
            var outcome = context.statusOutcome(view, pids: pids)
            outcome.exit = .ok
            return outcome
        }
    }
}

struct NodeStart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start one node in the background and wait until it answers.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("node start") { context throws(CommandFailure) in
            let all = context.localNodes()
            let selected = try context.selectNodes([node], local: all)
            let view = try await context.start(selected, local: all, options: local, needLeader: false)
            let pid = local.processes.livePID(node)
            return Outcome(
                result: .object([("node", .uint(node)), ("pid", pid.map { .int(Int64($0)) } ?? .null), ("cluster", view.json())]),
                text: "node \(node): running (pid \(pid.map(String.init) ?? "?"))\n")
        }
    }
}

// MARK: - Stop

extension Context {
    /// Stops the named nodes (all with a pid file when empty). Unless `force`, refuses a stop that leaves some
    /// voters running without a quorum; stopping every running voter (a full shutdown) is allowed.
    func stop(
        _ ids: [UInt64], options: LocalOptions, force: Bool, signal: Int32, grace: Duration
    ) async throws(CommandFailure) -> Outcome {
        let processes = options.processes
        let requested = ids.isEmpty ? processes.nodesWithPIDFiles() : ids
        var running: [(UInt64, Int32)] = []
        var lines: [String] = []
        for id in requested {
            if let pid = processes.livePID(id) { running.append((id, pid)) } else { lines.append("node \(id): not running") }
        }
        if !force && signal != SIGKILL && !running.isEmpty {
            let view = try await survey(maxLag: .max)
            let stopping = Set(running.map(\.0))
            let upAfter = view.voterIDs.filter { id in !stopping.contains(id) && view.rows.contains { $0.id == id && $0.reachable } }
            let quorum = view.voterIDs.count / 2 + 1
            if view.leaderID != nil && !upAfter.isEmpty && upAfter.count < quorum {
                throw CommandFailure(
                    .failed, code: "refused",
                    "refusing to stop node\(stopping.count == 1 ? "" : "s") \(stopping.sorted().map(String.init).joined(separator: ", ")): "
                        + "\(upAfter.count) of \(view.voterIDs.count) voters would stay up and a quorum needs \(quorum); "
                        + "the cluster would stop accepting writes",
                    hint: "pass --force to stop anyway, or stop every node with `dctl cluster stop`")
            }
        }
        for (_, pid) in running { kill(pid, signal) }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        var pending = running
        var result: [JSONValue] = []
        while !pending.isEmpty {
            pending.removeAll { id, pid in
                guard LocalProcesses.hasExited(pid) else { return false }
                try? FileManager.default.removeItem(atPath: processes.pidFile(id))
                lines.append("node \(id): \(signal == SIGKILL ? "killed" : "stopped") (pid \(pid))")
                result.append(.object([("node", .uint(id)), ("pid", .int(Int64(pid))), ("outcome", .string(signal == SIGKILL ? "killed" : "stopped"))]))
                return true
            }
            if pending.isEmpty { break }
            if clock.now >= deadline {
                for (id, pid) in pending {
                    kill(pid, SIGKILL)
                    try? FileManager.default.removeItem(atPath: processes.pidFile(id))
                    lines.append("node \(id): killed (no exit within \(formatDuration(grace)) of SIGTERM; pid \(pid))")
                    result.append(.object([("node", .uint(id)), ("pid", .int(Int64(pid))), ("outcome", .string("killed"))]))
                }
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return Outcome(result: .object([("nodes", .array(result))]), text: lines.map { $0 + "\n" }.joined())
    }
}

struct ClusterStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop every node with a pid file (or the nodes named): SIGTERM, then SIGKILL after --grace.",
        discussion: """
            Refuses (exit 1) to stop some nodes when the voters left running would have no quorum; --force \
            overrides. Stopping every running node is always allowed. A node that is not running is reported and \
            is not an error.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Flag(help: "Stop even if the remaining voters lose their quorum.") var force = false
    @Option(help: ArgumentHelp("Time to exit after SIGTERM before SIGKILL.", valueName: "duration"))
    var grace = DurationArgument(.seconds(10))
    @Argument(help: "Node ids (default: every node with a pid file).") var nodes: [UInt64] = []

    func run() async throws {
        try await global.execute("cluster stop") { context throws(CommandFailure) in
            try await context.stop(nodes, options: local, force: force, signal: SIGTERM, grace: grace.duration)
        }
    }
}

struct NodeStop: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop one node (SIGTERM); refused if it breaks the quorum, unless --force.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Flag(help: "Stop even if the remaining voters lose their quorum.") var force = false
    @Option(help: ArgumentHelp("Time to exit after SIGTERM before SIGKILL.", valueName: "duration"))
    var grace = DurationArgument(.seconds(10))
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("node stop") { context throws(CommandFailure) in
            try await context.stop([node], options: local, force: force, signal: SIGTERM, grace: grace.duration)
        }
    }
}

struct NodeKill: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kill", abstract: "kill -9 one node, for drills (no quorum check, no graceful shutdown).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("node kill") { context throws(CommandFailure) in
            try await context.stop([node], options: local, force: true, signal: SIGKILL, grace: .seconds(5))
        }
    }
}

// MARK: - Status

struct ClusterStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "`dctl status` with each local node's pid (exit 0, 2 or 4 as status).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions

    func run() async throws {
        try await global.execute("cluster status") { context throws(CommandFailure) in
            let view = try await context.survey(maxLag: 1000)
            let ids = Set(view.rows.compactMap(\.id) + local.processes.nodesWithPIDFiles())
            let pids = Dictionary(uniqueKeysWithValues: ids.compactMap { id in local.processes.livePID(id).map { (id, $0) } })
            return context.statusOutcome(view, pids: pids)
        }
    }
}
