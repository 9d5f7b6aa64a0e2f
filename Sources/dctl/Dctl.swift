import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `dctl`: the operator CLI of the cluster. docs/dctl.md is the manual; SPEC.md ("dctl") the contract.
@main
struct Dctl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dctl",
        abstract: "Start, inspect and use a dengine cluster.",
        discussion: """
            Endpoints: --endpoints (or DCTL_ENDPOINTS) lists client API addresses; each node's metrics address \
            (for status) comes from --metrics-endpoints (or DCTL_METRICS_ENDPOINTS), else from the config file in \
            --config-dir whose listen_address matches. Without --endpoints: the voters of --config-dir, or \
            127.0.0.1:9081-9083 (metrics 8081-8083).

            Data goes to stdout, diagnostics to stderr. dctl never prompts.

            Exit codes:
              0    ok (status, health: healthy)
              1    failed or rejected (bad request, conflict, too large, refused stop, node did not start)
              2    degraded: answered, but a node is down, lagging or without the leader
              3    not found (key or member)
              4    unavailable: no endpoint answered, no leader, no quorum, overloaded; nothing was done
              5    timeout: a write may or may not have been applied (never retried blindly)
              64   usage error
              130  interrupted
            """,
        version: DctlVersion.text,
        subcommands: [
            ClusterCommand.self, NodeCommand.self, Put.self, Get.self, Scan.self, Delete.self, Status.self, Leader.self,
            Health.self, Wait.self, Completion.self, Version.self, Bench.self,
            Join.self, Promote.self, Remove.self, TransferLeader.self, Certs.self, Doctor.self, Alarm.self,
            Watch.self, Txn.self, Snapshot.self, Events.self,
        ]
    )
}

enum DctlVersion {
    static let number = "0.1.0"
    static var text: String { "dctl \(number) (output \(Envelope.apiVersion), status schema \(NodeStatus.currentSchemaVersion))" }
}

// MARK: - Shared options

enum OutputFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case table
    case json
}

/// A duration on the command line: `500ms`, `2s`, `1.5s`, `1m`, or a plain number of seconds.
struct DurationArgument: ExpressibleByArgument, Sendable {
    var duration: Duration

    init(_ duration: Duration) {
        self.duration = duration
    }

    init?(argument: String) {
        let text = argument.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60)]
        var scale = 1.0
        var number = text
        for (suffix, factor) in units where text.hasSuffix(suffix) {
            scale = factor
            number = String(text.dropLast(suffix.count))
            break
        }
        guard let value = Double(number), value > 0, value.isFinite else { return nil }
        duration = .milliseconds(Int64((value * scale * 1000).rounded()))
    }

    static var defaultCompletionKind: CompletionKind { .default }
}

/// Options every command takes.
struct GlobalOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Client API addresses, comma-separated (env DCTL_ENDPOINTS).", valueName: "host:port,..."))
    var endpoints: String?

    @Option(
        help: ArgumentHelp(
            "Metrics addresses, one per endpoint in the same order (env DCTL_METRICS_ENDPOINTS).",
            valueName: "host:port,..."))
    var metricsEndpoints: String?

    @Option(help: ArgumentHelp("Directory of the nodes' nN.toml files (env DCTL_CONFIG_DIR).", valueName: "dir"))
    var configDir: String = "config"

    @Option(name: .shortAndLong, help: "Output format: table or json.")
    var output: OutputFormat = .table

    @Option(help: ArgumentHelp("Deadline of the whole command (default 5s; wait 30s; cluster start 20s).", valueName: "duration"))
    var timeout: DurationArgument?

    @Option(help: ArgumentHelp("Deadline of each node's status probe.", valueName: "duration"))
    var probeTimeout: DurationArgument = DurationArgument(.seconds(1))

    @Option(help: ArgumentHelp("Secure cluster: the CA certificate (env DCTL_CACERT; default from a secure --config-dir).", valueName: "file"))
    var cacert: String?

    @Option(help: ArgumentHelp("Client certificate (env DCTL_CERT; default client.admin.crt beside a secure config's CA).", valueName: "file"))
    var cert: String?

    @Option(help: ArgumentHelp("Client certificate's key (env DCTL_KEY).", valueName: "file"))
    var key: String?

    @Option(help: ArgumentHelp("Bearer token (env DCTL_TOKEN), instead of or beside a client certificate.", valueName: "token"))
    var token: String?
}

// MARK: - Running a command

/// What a command produced: its exit status, its JSON `result`, and its text for `-o table`.
struct Outcome {
    var exit: ExitStatus = .ok
    var result: JSONValue?
    var text: String
    /// The command printed its output as it went (`watch`: one line per event); nothing more is printed.
    var streamed = false
}

/// The environment of one invocation: options, endpoints, terminal, output.
struct Context {
    var options: GlobalOptions
    var environment = ProcessInfo.processInfo.environment
    var command: String

    var json: Bool { options.output == .json }

    /// Colour only on a terminal, never with `NO_COLOR`, never in JSON.
    var palette: Palette {
        Palette(enabled: !json && isatty(STDOUT_FILENO) == 1 && (environment["NO_COLOR"] ?? "").isEmpty)
    }

    var configDirectory: String {
        if let value = environment["DCTL_CONFIG_DIR"], !value.isEmpty, options.configDir == "config" { return value }
        return options.configDir
    }

    func timeout(default value: Duration) -> Duration { options.timeout?.duration ?? value }

    var probeTimeout: Duration { min(options.probeTimeout.duration, timeout(default: .seconds(5))) }

    func localNodes() -> [LocalNode] {
        let (nodes, problems) = Discovery.localNodes(in: configDirectory)
        for problem in problems { warn("skipping a config file: \(problem)") }
        return nodes
    }

    func targets(_ local: [LocalNode]? = nil) throws(CommandFailure) -> [NodeTarget] {
        func list(_ flag: String?, _ variable: String) -> [String]? {
            if let flag { return [flag] }
            if let value = environment[variable], !value.isEmpty { return [value] }
            return nil
        }
        do {
            return try Discovery.resolve(
                endpoints: list(options.endpoints, "DCTL_ENDPOINTS"),
                metricsEndpoints: list(options.metricsEndpoints, "DCTL_METRICS_ENDPOINTS"),
                localNodes: local ?? localNodes())
        } catch {
            throw CommandFailure(.usage, code: "usage", error.description, hint: "see `dctl --help`")
        }
    }

    func client(timeout value: Duration = .seconds(5)) throws(CommandFailure) -> ClusterClient {
        ClusterClient(targets: try targets(), timeout: timeout(default: value), probeTimeout: probeTimeout)
    }

    /// Status commands need a metrics address for every endpoint.
    func statusClient() throws(CommandFailure) -> (ClusterClient, [NodeTarget]) {
        let local = localNodes()
        let client = ClusterClient(targets: try targets(local), timeout: timeout(default: .seconds(5)), probeTimeout: probeTimeout)
        if let missing = client.targets.first(where: { $0.metrics == nil }) {
            throw CommandFailure(
                .usage, code: "usage", "no metrics address known for endpoint \(missing.client)",
                hint: "pass --metrics-endpoints (one per endpoint, same order) or --config-dir with its nN.toml")
        }
        return (client, local.map(\.target))
    }

    func warn(_ message: String) {
        FileHandle.standardError.write(Data("dctl: \(message)\n".utf8))
    }

    /// `cluster start` with a secure config dir whose CA does not exist yet makes `certs/` first (the
    /// `make start-secure-cluster` promise: one command).
    func prepareSecureConfig() throws(CommandFailure) {
        guard command == "cluster start" else { return }
        let local = localNodes()
        guard let caFile = local.first(where: { $0.security.tlsEnabled })?.security.caFile,
            !FileManager.default.fileExists(atPath: caFile)
        else { return }
        let directory = (caFile as NSString).deletingLastPathComponent
        let rows = try CertificateDirectory.initialize(
            directory.isEmpty ? "." : directory, nodes: local.map { ($0.id, $0.listenHost) }, days: 825)
        warn("created \(rows.filter(\.created).count) certificate files in \(directory)/ (dctl certs init)")
    }

    /// Secure cluster settings: flags, else `DCTL_*`, else a secure config dir (its CA, and the `client.admin`
    /// certificate beside it). Returns `nil` for a plaintext cluster.
    func clientSecurity() throws(CommandFailure) -> ClientSecurity? {
        do {
            return try ClientSecurity.resolve(
                cacert: options.cacert, cert: options.cert, key: options.key, token: options.token,
                configDir: configDirectory, environment: environment)
        } catch {
            throw CommandFailure(.usage, code: "usage", "TLS settings: \(error)", hint: "`dctl certs init` makes certs/")
        }
    }

    /// Prints an outcome: the envelope in JSON, else the text.
    func emit(_ outcome: Outcome) {
        guard !outcome.streamed else { return }
        let text = json
            ? Envelope.render(command: command, exit: outcome.exit, result: outcome.result ?? .null, error: nil) + "\n"
            : outcome.text
        FileHandle.standardOutput.write(Data(text.utf8))
    }

    func emit(_ failure: CommandFailure) {
        if json {
            let line = Envelope.render(command: command, exit: failure.exit, result: nil, error: failure) + "\n"
            FileHandle.standardOutput.write(Data(line.utf8))
        }
        warn(failure.description)
    }
}

extension GlobalOptions {
    /// Runs `body`, prints its outcome or failure, and exits with the right code.
    func execute(_ command: String, _ body: (Context) async throws(CommandFailure) -> Outcome) async throws {
        installInterruptHandler()
        let context = Context(options: self, command: command)
        let outcome: Outcome
        do {
            if !command.hasPrefix("certs") {
                try context.prepareSecureConfig()
                if let security = try context.clientSecurity() { ClientSecurity.current = security }
            }
            outcome = try await body(context)
        } catch {
            context.emit(error)
            throw ExitCode(error.exit.rawValue)
        }
        context.emit(outcome)
        if outcome.exit != .ok { throw ExitCode(outcome.exit.rawValue) }
    }
}

/// SIGINT ends `dctl` with 130 at once (a watch, a wait, a start waiting for its leader). Nodes started by
/// `cluster start` are in their own process group and do not see the terminal's Ctrl-C.
func installInterruptHandler() {
    signal(SIGINT) { _ in _exit(130) }
}

// MARK: - Small commands

struct Completion: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a shell completion script (bash, zsh or fish).")

    @Argument(help: "bash, zsh or fish.")
    var shell: String

    func validate() throws {
        guard CompletionShell(rawValue: shell) != nil else {
            throw ValidationError("unknown shell '\(shell)': use bash, zsh or fish")
        }
    }

    func run() async throws {
        guard let kind = CompletionShell(rawValue: shell) else { throw ExitCode.validationFailure }
        print(Dctl.completionScript(for: kind))
    }
}

struct Version: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print dctl's version.")

    func run() async throws {
        print(DctlVersion.text)
    }
}
