import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Context {
    /// Probes every node (and every member the cluster reports that the config dir knows) and judges the cluster.
    func survey(maxLag: UInt64) async throws(CommandFailure) -> ClusterView {
        let (client, local) = try statusClient()
        return ClusterView(probes: await client.survey(extra: local), maxLag: maxLag)
    }

    func statusOutcome(_ view: ClusterView, pids: [UInt64: Int32]? = nil) -> Outcome {
        Outcome(exit: view.health.exitStatus, result: view.json(pids: pids), text: view.table(palette: palette, pids: pids))
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One row per node; exit 0 healthy, 2 degraded, 4 unavailable.",
        discussion: """
            Every node appears, an unreachable one with its reason. LAG and LAST SEEN are the leader's view. \
            Nodes are probed in parallel, each within --probe-timeout.
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Redraw every --interval until interrupted (JSON: one envelope per line).") var watch = false
    @Option(help: ArgumentHelp("Time between redraws with --watch.", valueName: "duration"))
    var interval = DurationArgument(.seconds(2))
    @Option(help: "A node more entries behind the leader than this is lagging (degraded).") var maxLag: UInt64 = 1000

    func run() async throws {
        guard watch else {
            try await global.execute("status") { context throws(CommandFailure) in
                context.statusOutcome(try await context.survey(maxLag: maxLag))
            }
            return
        }
        installInterruptHandler()
        let context = Context(options: global, command: "status")
        let clear = !context.json && isatty(STDOUT_FILENO) == 1
        while true {
            do {
                let view = try await context.survey(maxLag: maxLag)
                var outcome = context.statusOutcome(view)
                if clear { outcome.text = "\u{1B}[H\u{1B}[2J" + outcome.text }
                else if !context.json { outcome.text += "\n" }
                context.emit(outcome)
            } catch {
                context.emit(error)
                throw ExitCode(error.exit.rawValue)
            }
            try await Task.sleep(for: interval.duration)
        }
    }
}

struct Leader: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the leader (exit 4 if there is none).")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.execute("leader") { context throws(CommandFailure) in
            let view = try await context.survey(maxLag: .max)
            guard let id = view.leaderID, let term = view.term else {
                throw CommandFailure(
                    .unavailable, code: "no_leader", "no leader: \(view.reasons.joined(separator: "; "))",
                    hint: "`dctl status` shows each node; `dctl wait --for leader` waits for one")
            }
            let address = view.rows.first { $0.id == id }?.address ?? view.leaderAddress ?? "?"
            return Outcome(
                result: .object([("leader_id", .uint(id)), ("address", .string(address)), ("term", .uint(term))]),
                text: "node \(id) at \(address) (term \(term))\n")
        }
    }
}

struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "One line of cluster health; exit 0 healthy, 2 degraded, 4 unavailable.")

    @OptionGroup var global: GlobalOptions
    @Option(help: "A node more entries behind the leader than this is lagging (degraded).") var maxLag: UInt64 = 1000

    func run() async throws {
        try await global.execute("health") { context throws(CommandFailure) in
            let view = try await context.survey(maxLag: maxLag)
            let text = view.summaryLine(palette: context.palette) + "\n"
                + view.reasons.map { "  \($0)\n" }.joined()
            return Outcome(exit: view.health.exitStatus, result: view.json(pids: nil), text: text)
        }
    }
}

/// What `dctl wait --for` waits for.
enum WaitCondition: ExpressibleByArgument, CustomStringConvertible {
    case leader
    case healthy
    /// Every listed node has applied at least this index.
    case applied(UInt64)
    /// The leader reports node ID with no lag (or node ID is the leader).
    case caughtUp(UInt64)

    init?(argument: String) {
        if argument == "leader" {
            self = .leader
        } else if argument == "healthy" {
            self = .healthy
        } else if argument.hasPrefix("applied>="), let index = UInt64(argument.dropFirst("applied>=".count)) {
            self = .applied(index)
        } else if argument.hasPrefix("caught-up="), let id = UInt64(argument.dropFirst("caught-up=".count)) {
            self = .caughtUp(id)
        } else {
            return nil
        }
    }

    var description: String {
        switch self {
        case .leader: return "leader"
        case .healthy: return "healthy"
        case .applied(let index): return "applied>=\(index)"
        case .caughtUp(let id): return "caught-up=\(id)"
        }
    }

    func holds(in view: ClusterView) -> Bool {
        switch self {
        case .leader: return view.leaderID != nil
        case .healthy: return view.health == .healthy
        case .applied(let index): return view.rows.allSatisfy { ($0.status?.appliedIndex ?? 0) >= index }
        case .caughtUp(let id):
            return view.leaderID == id || view.rows.contains { $0.id == id && $0.reachable && $0.lagEntries == 0 }
        }
    }
}

struct Wait: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Wait until the cluster has a leader, is healthy, or has applied an index (exit 5 on timeout).",
        discussion: """
            --for leader | healthy | applied>=N (every node listed has applied index N) | caught-up=ID (the leader \
            sees node ID with no lag). Polls every --interval; --timeout (default 30s) bounds the wait.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(name: .customLong("for"), help: "leader, healthy, applied>=N or caught-up=ID.") var condition: WaitCondition
    @Option(help: ArgumentHelp("Time between polls.", valueName: "duration")) var interval = DurationArgument(.milliseconds(100))

    func run() async throws {
        try await global.execute("wait") { context throws(CommandFailure) in
            let limit = context.timeout(default: .seconds(30))
            let clock = ContinuousClock()
            let start = clock.now
            while true {
                let view = try await context.survey(maxLag: 1000)
                let elapsed = start.duration(to: clock.now)
                if condition.holds(in: view) {
                    return Outcome(
                        result: .object([
                            ("condition", .string(condition.description)), ("satisfied", .bool(true)),
                            ("elapsed_ms", .int(milliseconds(elapsed))), ("cluster", view.json(pids: nil)),
                        ]),
                        text: "\(condition): satisfied after \(formatDuration(elapsed)); \(view.summaryLine())\n")
                }
                if elapsed >= limit {
                    let why = view.reasons.isEmpty ? "" : " (\(view.reasons.joined(separator: "; ")))"
                    throw CommandFailure(
                        .timeout, code: "timeout",
                        "\(condition) not reached within \(formatDuration(limit)); last seen: \(view.summaryLine())\(why)",
                        hint: "`dctl status` shows each node; a longer --timeout waits longer")
                }
                try? await Task.sleep(for: min(interval.duration, elapsed.duration(to: limit)))
            }
        }
    }
}

private extension Duration {
    func duration(to other: Duration) -> Duration { other - self }
}

struct Doctor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the cluster and explain: quorum and lag, clocks, settings, security, disk, WAL fsync, versions.",
        discussion: """
            One line per check with its verdict (ok, warn, fail, skip). Exit 0 when every check is ok, 2 with a \
            warning, 1 with a failure (nodes disagree on settings, an expired certificate), 4 without a quorum.
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: "A node more entries behind the leader than this is lagging.") var maxLag: UInt64 = 1000

    func run() async throws {
        try await global.execute("doctor") { context throws(CommandFailure) in
            let (client, local) = try context.statusClient()
            let probes = await client.survey(extra: local)
            let view = ClusterView(probes: probes, maxLag: maxLag)
            let checks = DoctorChecks.checks(view: view, probes: probes)
            let width = checks.map(\.name.count).max() ?? 0
            let text = checks.map { check in
                "\(check.verdict.rawValue.padding(toLength: 4, withPad: " ", startingAt: 0))  "
                    + "\(check.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(check.detail)"
            }.joined(separator: "\n") + "\n"
            let json = JSONValue.object([
                ("health", .string(view.health.rawValue)),
                (
                    "checks",
                    .array(checks.map { .object([("name", .string($0.name)), ("verdict", .string($0.verdict.rawValue)), ("detail", .string($0.detail))]) })
                ),
            ])
            return Outcome(exit: DoctorChecks.exitStatus(checks, view: view), result: json, text: text)
        }
    }
}
