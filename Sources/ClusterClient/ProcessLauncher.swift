import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one process launcher: `dctl cluster start` / `node start`, the chaos harness and the test clusters start
/// `dnode` (and the tests start dctl and tmux) through it.
///
/// `posix_spawn`, not Foundation's `Process` (whose reaping stalls when the test pool is busy): an empty signal
/// mask and default dispositions (the spawning thread may block SIGTERM, and a child inherits that), optionally its
/// own process group (a terminal's Ctrl-C does not reach a node that must outlive dctl), stdin from a file or
/// /dev/null, stdout and stderr to files (appended, after a banner, or truncated). The parent reaps with `waitpid`.
// @unchecked Sendable: the only mutable state, `ended`, is read and written under `lock`; the rest are `let`s.
public final class ChildProcess: @unchecked Sendable {
    /// How a process ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        /// `WIFEXITED` / `WEXITSTATUS` / `WTERMSIG`, spelled out (Swift does not import the macros).
        init(waitStatus status: Int32) {
            self = status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signaled(status & 0x7f)
        }

        /// A shell's `$?`: the exit code, or 128 + the signal.
        public var shellCode: Int32 {
            switch self {
            case .exited(let code): return code
            case .signaled(let signal): return 128 + signal
            }
        }

        public var description: String {
            switch self {
            case .exited(let code): return "exit code \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    /// Where a standard stream goes.
    public enum Output: Sendable {
        /// Appended to the file (created if missing), after `banner` (one per start).
        case append(String, banner: String? = nil)
        /// The file, truncated.
        case truncate(String)
        /// Wherever stdout goes (stderr only).
        case stdout
    }

    public let pid: Int32
    private let lock = NSLock()
    private var ended: Termination?

    private init(pid: Int32) {
        self.pid = pid
    }

    /// Starts `executable` (a path, or a name looked up in `PATH`) with `arguments` and exactly `environment`.
    public static func launch(
        _ executable: String, arguments: [String], environment: [String: String],
        workingDirectory: String? = nil, stdin: String = "/dev/null", stdout: Output, stderr: Output = .stdout,
        newProcessGroup: Bool = true
    ) throws(LaunchFailure) -> ChildProcess {
        for output in [stdout, stderr] {
            guard case .append(let path, let banner) = output else { continue }
            do {
                try FileManager.default.createDirectory(
                    atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                if !FileManager.default.fileExists(atPath: path) {
                    _ = FileManager.default.createFile(atPath: path, contents: nil)
                }
                guard let handle = FileHandle(forWritingAtPath: path) else {
                    throw LaunchFailure(description: "cannot open \(path) for writing")
                }
                defer { try? handle.close() }
                if let banner {
                    handle.seekToEndOfFile()
                    handle.write(Data(banner.utf8))
                }
            } catch let failure as LaunchFailure {
                throw failure
            } catch {
                throw LaunchFailure(description: "cannot prepare \(path): \(error)")
            }
        }

        #if canImport(Glibc)
        var attributes = posix_spawnattr_t()
        var actions = posix_spawn_file_actions_t()
        #else
        var attributes: posix_spawnattr_t? = nil
        var actions: posix_spawn_file_actions_t? = nil
        #endif
        posix_spawnattr_init(&attributes)
        posix_spawn_file_actions_init(&actions)
        defer {
            posix_spawnattr_destroy(&attributes)
            posix_spawn_file_actions_destroy(&actions)
        }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= POSIX_SPAWN_SETPGROUP
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))
        if let workingDirectory {
            guard let addChdir = spawnAddChdir, addChdir(&actions, workingDirectory) == 0 else {
                throw LaunchFailure(description: "cannot start \(executable) in \(workingDirectory)")
            }
        }
        posix_spawn_file_actions_addopen(&actions, 0, stdin, O_RDONLY, 0)
        for (fd, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .append(let path, _): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
            case .truncate(let path): posix_spawn_file_actions_addopen(&actions, fd, path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            case .stdout: posix_spawn_file_actions_adddup2(&actions, 1, fd)
            }
        }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        // A relative path means the caller's directory, also when the child starts in another one.
        let path =
            executable.contains("/") && !executable.hasPrefix("/")
            ? FileManager.default.currentDirectoryPath + "/" + executable : executable
        var pid: pid_t = 0
        let result =
            path.contains("/")
            ? posix_spawn(&pid, path, &actions, &attributes, argv, envp)
            : posix_spawnp(&pid, path, &actions, &attributes, argv, envp)
        guard result == 0 else {
            throw LaunchFailure(description: "cannot run \(executable): \(String(cString: strerror(result)))")
        }
        return ChildProcess(pid: pid)
    }

    /// How the process ended, reaping it; `nil` while it runs.
    public var termination: Termination? {
        lock.withLock {
            if let ended { return ended }
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid {
                ended = Termination(waitStatus: status)
            } else if result < 0 && errno == ECHILD {
                ended = .exited(-1)  // reaped elsewhere: gone, status unknown
            }
            return ended
        }
    }

    public var isRunning: Bool { termination == nil }

    /// Sends `signal` if the process has not been reaped (a reaped pid may already belong to someone else).
    public func signal(_ signal: Int32) {
        lock.withLock {
            if ended == nil { _ = kill(pid, signal) }
        }
    }

    /// Blocks until the process ends and returns how.
    @discardableResult
    public func waitUntilExit() -> Termination {
        lock.withLock {
            if let ended { return ended }
            var status: Int32 = 0
            var result: Int32
            repeat { result = waitpid(pid, &status, 0) } while result < 0 && errno == EINTR
            let termination = result == pid ? Termination(waitStatus: status) : .exited(-1)
            ended = termination
            return termination
        }
    }

    /// Polls (every 5 ms) until the process ends or `timeout` passes; `nil` on timeout.
    public func waitUntilExit(timeout: Duration) -> Termination? {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let termination { return termination }
            if ContinuousClock.now >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// A process that exists and is not a zombie (for pids that are not our children, such as a pid file's).
    public static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 || errno == EPERM else { return false }
        #if os(Linux)
        if let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
            return state != "Z" && state != "X"
        }
        #endif
        return true
    }
}

#if canImport(Glibc)
private typealias SpawnActions = posix_spawn_file_actions_t
#else
private typealias SpawnActions = posix_spawn_file_actions_t?
#endif

/// `posix_spawn_file_actions_addchdir_np` (glibc 2.29, macOS 10.15), looked up at run time: Swift's Glibc module
/// does not declare it.
private let spawnAddChdir: (@convention(c) (UnsafeMutablePointer<SpawnActions>, UnsafePointer<CChar>) -> Int32)? = {
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addchdir_np") else {
        return nil
    }
    return unsafeBitCast(
        symbol, to: (@convention(c) (UnsafeMutablePointer<SpawnActions>, UnsafePointer<CChar>) -> Int32).self)
}()

/// Why a process could not be started.
public struct LaunchFailure: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}
