import Chaos
import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

struct SpawnError: Error {
    var code: Int32
    var reason: String = ""
}

/// What one `dctl` run produced.
struct RunResult: CustomStringConvertible {
    var code: Int32
    var stdout: String
    var stderr: String
    var elapsed: Duration
    var description: String { "exit \(code) after \(elapsed)\n--- stdout\n\(stdout)--- stderr\n\(stderr)" }
}

/// Runs the built `dctl` binaries: the one `swift test` put next to the test executable, or `DCTL_BIN`.
enum Dctl {
    static let binary: String = {
        if let explicit = ProcessInfo.processInfo.environment["DCTL_BIN"], !explicit.isEmpty { return explicit }
        let me = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? Bundle.main.executablePath ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: me).deletingLastPathComponent().appendingPathComponent("dctl").path
    }()

    /// Runs `dctl arguments` in `directory` with a clean environment (no DCTL_*, NO_COLOR set) plus `environment`.
    static func run(
        _ arguments: [String], in directory: String? = nil, environment: [String: String] = [:], stdin: String? = nil,
        interruptAfter: Bool? = nil, executable: String = binary
    ) throws -> RunResult {
        var env = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DCTL_") && $0.key != "DNODE_BIN" }
        env["NO_COLOR"] = "1"
        env["COLUMNS"] = "120"
        for (key, value) in environment { env[key] = value }
        let base = NSTemporaryDirectory() + "dctl-run-\(UUID().uuidString)"
        try Data((stdin ?? "").utf8).write(to: URL(fileURLWithPath: base + ".in"))
        defer {
            for suffix in [".in", ".out", ".err"] { try? FileManager.default.removeItem(atPath: base + suffix) }
        }
        // The shared launcher (posix_spawn and waitpid, not Foundation's Process: its reaping stalls when the test
        // pool is busy), in the caller's process group.
        let clock = ContinuousClock()
        let start = clock.now
        let child: ChildProcess
        do {
            child = try ChildProcess.launch(
                executable, arguments: arguments, environment: env, workingDirectory: directory,
                stdin: base + ".in", stdout: .truncate(base + ".out"), stderr: .truncate(base + ".err"),
                newProcessGroup: false)
        } catch {
            throw SpawnError(code: -1, reason: error.description)
        }
        if interruptAfter != nil {
            // Interrupt once the watch has drawn its first frame.
            let deadline = clock.now + .seconds(5)
            while clock.now < deadline && (FileManager.default.contents(atPath: base + ".out")?.isEmpty ?? true) {
                usleep(10_000)
            }
            child.signal(SIGINT)
        }
        let code = child.waitUntilExit().shellCode
        let stdoutData = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let stderrData = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return RunResult(
            code: code, stdout: String(decoding: stdoutData, as: UTF8.self),
            stderr: String(decoding: stderrData, as: UTF8.self), elapsed: start.duration(to: clock.now))
    }
}

/// A directory laid out like the repository root for `dctl cluster start`: `config/nN.toml` on free ports with short
/// timers; `run/`, `logs/`, `db/` appear when nodes start. Every pid in `run/` is SIGKILLed by `cleanup()`.
final class ClusterDirectory: @unchecked Sendable {
    let root: String
    let clientPorts: [Int]
    let metricsPorts: [Int]
    /// The ports, chosen by the kernel and held until `cleanup()` (dnode binds them with SO_REUSEADDR).
    let reservation: PortReservation

    /// `nodes` voters; `joiners` more nodes (ids after the voters) whose own config lists them as learners (role 4)
    /// and which the voters' configs do not list: they join when started (`dctl join N`).
    /// With `secure`, every node has a `[security]` section naming `certs/` (made by `dctl certs init` or by
    /// `cluster start`), tokens reloaded every 200 ms.
    init(nodes: Int = 3, joiners: Int = 0, secure: Bool = false) throws {
        root = NSTemporaryDirectory() + "dctl-tests/\(getpid())-\(UUID().uuidString.prefix(8))"
        let total = nodes + joiners
        reservation = try PortReservation(count: 2 * total)
        let ports = reservation.ports
        clientPorts = Array(ports[0..<total])
        metricsPorts = Array(ports[total...])
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
        let voters = (1...nodes).map { "  { id = \($0), address = \"127.0.0.1:\(clientPorts[$0 - 1])\", role = 1, status = 2 }," }
        for id in 1...total {
            let members = id <= nodes
                ? voters : voters + ["  { id = \(id), address = \"127.0.0.1:\(clientPorts[id - 1])\", role = 4, status = 1 },"]
            let text = """
                [cluster]
                node_id = \(id)
                listen_address = "127.0.0.1:\(clientPorts[id - 1])"
                initial_cluster = [
                \(members.joined(separator: "\n"))
                ]
                db_root_dir = "./db/\(id)"
                log_dir = "./logs/\(id)"
                request_timeout_ms = 1500

                [monitoring]
                metrics_address = "127.0.0.1:\(metricsPorts[id - 1])"

                [raft.election]
                election_timeout_min = 300
                election_timeout_max = 600

                [raft.replication]
                rpc_append_entries_clock_in_ms = 50

                [raft.read_consistency]
                lease_duration_ms = 150

                """ + (secure ? """
                [security]
                ca_file = "certs/ca.crt"
                cert_file = "certs/node.\(id).crt"
                key_file = "certs/node.\(id).key"
                tokens_file = "certs/tokens"
                reload_interval_ms = 200

                """ : "")
            try text.write(toFile: "\(root)/config/n\(id).toml", atomically: true, encoding: .utf8)
        }
    }

    func endpoint(_ id: Int) -> String { "127.0.0.1:\(clientPorts[id - 1])" }

    func pid(_ id: Int) -> Int32? {
        (try? String(contentsOfFile: "\(root)/run/n\(id).pid", encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func isRunning(_ id: Int) -> Bool { pid(id).map { kill($0, 0) == 0 } ?? false }

    func dctl(_ arguments: [String], environment: [String: String] = [:]) throws -> RunResult {
        try Dctl.run(arguments, in: root, environment: environment)
    }

    /// SIGKILLs every node with a pid file and removes the directory (kept with KEEP_CLUSTER_DIRS=1).
    func cleanup() {
        for id in 1...clientPorts.count {
            if let pid = pid(id) { kill(pid, SIGKILL) }
        }
        if ProcessInfo.processInfo.environment["KEEP_CLUSTER_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: root)
        }
        reservation.release()
    }
}

// MARK: - Golden files

/// Compares `actual` with `testdata/<name>`; `UPDATE_GOLDEN=1` rewrites the file instead.
func matchesGolden(_ actual: String, _ name: String) throws -> Bool {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata/\(name)").path
    if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
        try actual.write(toFile: path, atomically: true, encoding: .utf8)
        return true
    }
    let expected = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<missing \(path); run with UPDATE_GOLDEN=1>"
    return expected == actual
}
