import Chaos

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every node process the tests start, so that none outlives the test process.
///
/// `LocalCluster.stop()` (called explicitly and from `deinit`) is the normal path. This registry is the backstop for
/// the abnormal ones: at `exit` (Swift Testing's process ends normally even when tests fail) and on a fatal or
/// terminating signal (a crash in test code, Ctrl-C, a CI timeout's SIGTERM) every registered pid gets SIGKILL.
/// Foundation's `Process` puts each child in its own process group, so a terminal's Ctrl-C would not reach the
/// nodes otherwise. The table and the handlers are the chaos harness's (`ChaosCleanup`), shared by both.
enum ChildRegistry {
    /// Records a started child.
    static func register(_ pid: pid_t) { ChaosCleanup.register(pid) }

    /// Forgets a child that has been reaped.
    static func unregister(_ pid: pid_t) { ChaosCleanup.unregister(pid) }
}
