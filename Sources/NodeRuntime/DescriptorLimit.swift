import Glibc

/// The process's file descriptor limit, and how the node divides it.
///
/// Connections are capped so that they never take the descriptors the log, snapshots and peer links need: when
/// every client slot is taken, one more client gets `429 overloaded`, and the node keeps its cluster role.
enum DescriptorLimit {
    /// Kept for the WAL and its next segment, snapshots, outbound peer links, listening sockets and the rest.
    static let reservedForPeersAndStorage = 192
    /// Metrics-port connections open at once (dtop, dctl status, Prometheus).
    static let metricsConnections = 256
    /// Connections on the shared port beyond the client cap: inbound peers and connections that have not yet said
    /// what they speak (closed after the 10 s detection deadline).
    static let undecidedAndPeerConnections = 128

    /// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft limit now in force.
    static func raiseToHardLimit() -> Int {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return 1024 }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur > rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}
