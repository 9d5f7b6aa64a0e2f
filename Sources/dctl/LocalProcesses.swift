import ClusterClient
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The local processes behind `cluster start|stop` and `node start|stop|kill`: `dnode` runs in the background
/// with `--config <config-dir>/nN.toml`, its pid in `<run-dir>/nN.pid`, stdout and stderr appended to
/// `<log-root>/N/stdout.log`, all relative to the current directory (the repository root for `make`).
struct LocalProcesses {
    var runDirectory: String
    var logRoot: String

    func pidFile(_ id: UInt64) -> String { "\(runDirectory)/n\(id).pid" }
    func stdoutLog(_ id: UInt64) -> String { "\(logRoot)/\(id)/stdout.log" }

    /// The pid of node `id` if its pid file names a live `dnode`; a stale pid file is removed.
    func livePID(_ id: UInt64) -> Int32? {
        guard let text = try? String(contentsOfFile: pidFile(id), encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0
        else { return nil }
        if Self.isAlive(pid) && Self.looksLikeDnode(pid) { return pid }
        try? FileManager.default.removeItem(atPath: pidFile(id))
        return nil
    }

    /// Node ids with a pid file.
    func nodesWithPIDFiles() -> [UInt64] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: runDirectory)) ?? []
        return names.compactMap { name in
            guard name.hasPrefix("n"), name.hasSuffix(".pid") else { return nil }
            return UInt64(name.dropFirst().dropLast(4))
        }.sorted()
    }

    /// A process that exists and is not a zombie.
    static func isAlive(_ pid: Int32) -> Bool { ChildProcess.isAlive(pid) }

    /// Guards against a recycled pid: on Linux the command line must mention `dnode`.
    static func looksLikeDnode(_ pid: Int32) -> Bool {
        #if os(Linux)
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return false }
        return String(decoding: data, as: UTF8.self).contains("dnode")
        #else
        return true
        #endif
    }

    /// Starts `dnode --config <config>` in the background (`ChildProcess`), in its own process group, with default
    /// signal handling, stdin from /dev/null and output appended to the node's stdout.log; writes the pid file.
    func spawn(binary: String, node: LocalNode) throws(CommandFailure) -> Int32 {
        let log = stdoutLog(node.id)
        do {
            try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
        } catch {
            throw CommandFailure(.failed, code: "start_failed", "node \(node.id): cannot prepare \(runDirectory)/: \(error)")
        }
        let banner = "--- start \(ISO8601DateFormatter().string(from: Date())) by dctl: \(binary) --config \(node.configPath)\n"
        let environment = ProcessInfo.processInfo.environment.filter { $0.key != "CONFIG_PATH" }
        let pid: Int32
        do {
            pid = try ChildProcess.launch(
                binary, arguments: ["--config", node.configPath], environment: environment,
                stdout: .append(log, banner: banner)
            ).pid
        } catch {
            throw CommandFailure(.failed, code: "start_failed", "node \(node.id): \(error)")
        }
        do {
            try "\(pid)\n".write(toFile: pidFile(node.id), atomically: true, encoding: .utf8)
        } catch {
            throw CommandFailure(.failed, code: "start_failed", "node \(node.id): started as pid \(pid) but cannot write \(pidFile(node.id)): \(error)")
        }
        return pid
    }

    /// `true` once a child we spawned has exited (reaping it); for processes that are not our children, whether
    /// the process is gone.
    static func hasExited(_ pid: Int32) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, WNOHANG)
        if result == pid { return true }
        if result == 0 { return false }
        return !isAlive(pid)
    }

    /// The last `count` lines of a file, for failure messages.
    static func tail(_ path: String, lines count: Int = 15) -> String {
        guard let data = FileManager.default.contents(atPath: path) else { return "" }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        return lines.suffix(count).joined(separator: "\n")
    }

    /// The `dnode` to run: `--dnode`, `DNODE_BIN`, the `dnode` next to this `dctl`, `.build/release/dnode`.
    static func locateDnode(explicit: String?) throws(CommandFailure) -> String {
        let files = FileManager.default
        if let explicit = explicit ?? ProcessInfo.processInfo.environment["DNODE_BIN"], !explicit.isEmpty {
            guard files.isExecutableFile(atPath: explicit) else {
                throw CommandFailure(.failed, code: "start_failed", "dnode binary \(explicit) is not an executable file",
                                     hint: "build it with `make build` or point --dnode / DNODE_BIN at it")
            }
            return explicit
        }
        var candidates: [String] = []
        if let me = Bundle.main.executableURL?.resolvingSymlinksInPath() {
            candidates.append(me.deletingLastPathComponent().appendingPathComponent("dnode").path)
        }
        candidates.append(".build/release/dnode")
        if let found = candidates.first(where: { files.isExecutableFile(atPath: $0) }) { return found }
        throw CommandFailure(
            .failed, code: "start_failed", "no dnode binary found (looked at \(candidates.joined(separator: ", ")))",
            hint: "run `make build`, or set DNODE_BIN / --dnode")
    }
}
