import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every node process the tests start, so that none outlives the test process.
///
/// `LocalCluster.stop()` (called explicitly and from `deinit`) is the normal path. This registry is the backstop for
/// the abnormal ones: at `exit` (Swift Testing's process ends normally even when tests fail) and on a fatal or
/// terminating signal (a crash in test code, Ctrl-C, a CI timeout's SIGTERM) it sends SIGKILL to every registered
/// pid. Foundation's `Process` puts each child in its own process group, so a terminal's Ctrl-C would not reach
/// the nodes otherwise.
///
/// The table is a fixed C array so the signal handler can read it without allocating or locking.
enum ChildRegistry {
    private static let capacity = 1024
    private nonisolated(unsafe) static let table: UnsafeMutablePointer<pid_t> = {
        let table = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        table.initialize(repeating: 0, count: capacity)
        return table
    }()
    private static let lock = NSLock()
    private nonisolated(unsafe) static var installed = false
    private nonisolated(unsafe) static let previousActions: UnsafeMutablePointer<sigaction> = {
        let actions = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
        actions.initialize(repeating: sigaction(), count: 65)
        return actions
    }()
    private static let handledSignals: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE]

    /// Records a started child.
    static func register(_ pid: pid_t) {
        lock.lock()
        defer { lock.unlock() }
        installIfNeeded()
        for slot in 0..<capacity where table[slot] == 0 {
            table[slot] = pid
            return
        }
    }

    /// Forgets a child that has been reaped.
    static func unregister(_ pid: pid_t) {
        lock.lock()
        defer { lock.unlock() }
        for slot in 0..<capacity where table[slot] == pid {
            table[slot] = 0
        }
    }

    /// SIGKILLs every registered child. Async-signal-safe: reads the table and calls `kill` only.
    static func killAll() {
        for slot in 0..<capacity {
            let pid = table[slot]
            if pid > 0 { _ = kill(pid, SIGKILL) }
        }
    }

    private static func installIfNeeded() {
        guard !installed else { return }
        installed = true
        _ = previousActions  // allocate before any signal can arrive
        _ = table
        atexit { ChildRegistry.killAll() }
        for signal in handledSignals {
            var action = sigaction()
            #if canImport(Glibc)
            action.__sigaction_handler.sa_sigaction = { signal, _, _ in ChildRegistry.handleSignal(signal) }
            #else
            action.__sigaction_u.__sa_sigaction = { signal, _, _ in ChildRegistry.handleSignal(signal) }
            #endif
            action.sa_flags = SA_SIGINFO
            sigemptyset(&action.sa_mask)
            _ = sigaction(signal, &action, previousActions + Int(signal))
        }
    }

    /// Kills the children, puts the previous disposition back and lets it act: asynchronous signals are raised
    /// again (delivered once this handler returns); a synchronous fault re-executes the faulting instruction and
    /// reaches the previous handler (the Swift runtime's backtracer, or the default action) directly.
    private static func handleSignal(_ signal: Int32) {
        killAll()
        _ = sigaction(signal, previousActions + Int(signal), nil)
        switch signal {
        case SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGABRT:
            _ = raise(signal)
        default:
            break
        }
    }
}
