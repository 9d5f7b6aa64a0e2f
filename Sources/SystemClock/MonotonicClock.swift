#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one monotonic clock of the shell (storage, node runtime, benches, the linearizability recorder).
///
/// `CLOCK_MONOTONIC`: never steps back, stops while the machine sleeps. RaftCore never reads it (time is an
/// argument there); the shell reads it and passes the value in.
public enum MonotonicClock {
    /// Nanoseconds since an arbitrary fixed point.
    public static func nanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Milliseconds since an arbitrary fixed point, for the core's `now` arguments.
    public static func milliseconds() -> UInt64 { nanoseconds() / 1_000_000 }
}
