import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What must be undone however the harness ends: node processes to kill and a shell script that removes the
/// network namespaces it created.
///
/// The normal path is `ChaosCluster.shutdown()` / `ChaosNetwork.teardown()`. This registry is the backstop: at
/// `exit` and on a terminating or fatal signal it SIGKILLs every registered pid, then runs the registered cleanup
/// script with `fork` + `execve` + `waitpid` (all async-signal-safe) before the signal's previous disposition acts.
/// The pid table and the script are fixed C storage, read by the handler without locks or allocation.
public enum ChaosCleanup {
    private static let capacity = 1024
    private nonisolated(unsafe) static let pids: UnsafeMutablePointer<pid_t> = {
        let table = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        table.initialize(repeating: 0, count: capacity)
        return table
    }()
    /// `argv` for `/bin/sh -c SCRIPT`, or nil; replaced whole under `lock`, read by the handler.
    private nonisolated(unsafe) static var scriptArgv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
    private nonisolated(unsafe) static let shellPath: UnsafeMutablePointer<CChar> = strdup("/bin/sh")!
    private static let lock = NSLock()
    private nonisolated(unsafe) static var installed = false
    private nonisolated(unsafe) static let previousActions: UnsafeMutablePointer<sigaction> = {
        let actions = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
        actions.initialize(repeating: sigaction(), count: 65)
        return actions
    }()
    private static let handledSignals: [Int32] = [
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE,
    ]

    /// Records a started node process.
    public static func register(_ pid: pid_t) {
        lock.withLock {
            installIfNeeded()
            for slot in 0..<capacity where pids[slot] == 0 {
                pids[slot] = pid
                return
            }
        }
    }

    /// Forgets a reaped process.
    public static func unregister(_ pid: pid_t) {
        lock.withLock {
            for slot in 0..<capacity where pids[slot] == pid { pids[slot] = 0 }
        }
    }

    /// Sets (or clears, with nil) the shell script run at exit or on a signal. The old one is leaked on purpose:
    /// a handler may be reading it.
    public static func setScript(_ script: String?) {
        lock.withLock {
            installIfNeeded()
            guard let script else {
                scriptArgv = nil
                return
            }
            let argv = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 4)
            argv[0] = strdup("sh")
            argv[1] = strdup("-c")
            argv[2] = strdup(script)
            argv[3] = nil
            scriptArgv = argv
        }
    }

    /// Kills every registered pid and runs the cleanup script. Async-signal-safe.
    static func runBackstop() {
        for slot in 0..<capacity {
            let pid = pids[slot]
            if pid > 0 { _ = kill(pid, SIGKILL) }
        }
        guard let argv = scriptArgv else { return }
        let child = fork()
        if child == 0 {
            execve(shellPath, argv, environ)
            _exit(127)
        } else if child > 0 {
            var status: Int32 = 0
            _ = waitpid(child, &status, 0)
        }
    }

    private static func installIfNeeded() {
        guard !installed else { return }
        installed = true
        _ = previousActions
        _ = pids
        _ = shellPath
        atexit { ChaosCleanup.runBackstop() }
        for signal in handledSignals {
            var action = sigaction()
            #if canImport(Glibc)
                action.__sigaction_handler.sa_sigaction = { signal, _, _ in ChaosCleanup.handleSignal(signal) }
            #else
                action.__sigaction_u.__sa_sigaction = { signal, _, _ in ChaosCleanup.handleSignal(signal) }
            #endif
            action.sa_flags = SA_SIGINFO
            sigemptyset(&action.sa_mask)
            _ = sigaction(signal, &action, previousActions + Int(signal))
        }
    }

    private static func handleSignal(_ signal: Int32) {
        runBackstop()
        _ = sigaction(signal, previousActions + Int(signal), nil)
        switch signal {
        case SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT: _ = raise(signal)
        default: break
        }
    }
}

// MARK: - Running commands

/// Runs short helper commands (`ip`, `iptables-restore`) with an empty signal mask (long-lived children are started
/// by `ChildProcess`).
public enum Command {
    public struct Failure: Error, CustomStringConvertible {
        public var command: [String]
        public var status: Int32
        public var output: String
        public var description: String { "`\(command.joined(separator: " "))` exited \(status): \(output)" }
    }

    /// Runs `arguments` to completion (stdin from `input`), returns stdout+stderr; throws on a non-zero exit.
    @discardableResult
    public static func run(_ arguments: [String], input: String? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: resolve(arguments[0]))
        process.arguments = Array(arguments.dropFirst())
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let inputPipe = Pipe()
        process.standardInput = input == nil ? FileHandle.nullDevice : inputPipe
        try spawn(process)
        if let input {
            inputPipe.fileHandleForWriting.write(Data(input.utf8))
            try? inputPipe.fileHandleForWriting.close()
        }
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw Failure(command: arguments, status: process.terminationStatus, output: text)
        }
        return text
    }

    /// The absolute path of a command found on PATH (plus the sbin directories), or the name itself.
    public static func resolve(_ name: String) -> String {
        if name.hasPrefix("/") { return name }
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for directory in path.split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return name
    }

    /// Whether `name` is an executable on PATH or in the sbin directories.
    public static func exists(_ name: String) -> Bool { resolve(name).hasPrefix("/") }

    /// Runs `process` from a fresh thread whose signal mask is empty (Dispatch's threads block SIGTERM and friends,
    /// and a child inherits the mask of the thread that spawns it).
    public static func spawn(_ process: Process) throws {
        // @unchecked Sendable: written by the spawning thread before it signals, read after the wait.
        final class Outcome: @unchecked Sendable { var error: (any Error)? }
        let done = DispatchSemaphore(value: 0)
        let outcome = Outcome()
        let thread = Thread {
            var empty = sigset_t()
            sigemptyset(&empty)
            _ = pthread_sigmask(SIG_SETMASK, &empty, nil)
            do { try process.run() } catch { outcome.error = error }
            done.signal()
        }
        thread.start()
        done.wait()
        if let error = outcome.error { throw error }
    }
}
