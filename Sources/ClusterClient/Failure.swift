import ClusterAPI

/// The exit codes of `dctl`, one table (SPEC.md, "dctl"; docs/dctl.md).
public enum ExitStatus: Int32, Sendable, CaseIterable, CustomStringConvertible {
    /// Done; for `status`/`health`: healthy.
    case ok = 0
    /// Failed or rejected by the cluster (400, 409, 413, a refused stop, a node that would not start).
    case failed = 1
    /// Answered, but a node is down or lagging.
    case degraded = 2
    /// The key or the member does not exist.
    case notFound = 3
    /// No endpoint answered, no leader, no quorum, or overloaded: nothing was done; safe to retry later.
    case unavailable = 4
    /// The deadline passed: a write may or may not have been applied.
    case timeout = 5
    /// Bad command line.
    case usage = 64
    /// SIGINT.
    case interrupted = 130

    public var description: String {
        switch self {
        case .ok: return "ok"
        case .failed: return "failed"
        case .degraded: return "degraded"
        case .notFound: return "not found"
        case .unavailable: return "unavailable"
        case .timeout: return "timeout"
        case .usage: return "usage"
        case .interrupted: return "interrupted"
        }
    }

    /// How a client API error maps to an exit code. `429 overloaded` is 4, not 1: the command was not proposed
    /// and the same command will succeed later, which is what 4 tells a script.
    public init(_ code: APIErrorCode) {
        switch code {
        case .keyNotFound, .notFound: self = .notFound
        case .overloaded, .noLeader, .unavailable: self = .unavailable
        case .timeout: self = .timeout
        case .invalidRequest, .unauthenticated, .forbidden, .notCaughtUp, .membershipChangeInProgress, .conflict,
            .tooLarge, .idempotencyKeyReused, .noSpace, .compacted:
            self = .failed
        }
    }
}

/// A command that did not succeed: who answered (or did not), what failed, why, and what to try next.
public struct CommandFailure: Error, Sendable, CustomStringConvertible {
    public var exit: ExitStatus
    /// A stable code for scripts: an `APIErrorCode` raw value, or `unreachable`, `timeout`, `bad_response`,
    /// `usage`, `refused`, `start_failed`, `unhealthy`.
    public var code: String
    /// One sentence naming the node and the operation.
    public var message: String
    /// What to try next; empty when there is nothing useful to say.
    public var hint: String

    public init(_ exit: ExitStatus, code: String, _ message: String, hint: String = "") {
        self.exit = exit
        self.code = code
        self.message = message
        self.hint = hint
    }

    public var description: String { hint.isEmpty ? message : "\(message)\n  hint: \(hint)" }
}
