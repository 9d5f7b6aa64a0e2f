/// The time TTLs are judged by: leader-stamped time carried in the log ("log time"), read the same way by every
/// request that looks at expiry (GET, SCAN, and CAS and DELETE when they apply).
///
/// A node keeps an anchor: the newest log time it has seen (stamped or applied) and the monotonic instant it saw it.
/// Log time "now" on this node is
///
///     max(anchor, min(wall clock, anchor + monotonic time elapsed since the anchor))
///
/// so it never goes backwards, never runs faster than the node's monotonic clock (a leader whose wall clock is
/// ahead cannot expire keys early), and stands still while the node's wall clock is behind the log (a key then
/// expires late, by at most that lag). A fresh cluster's first stamp is the wall clock. A follower anchors when it
/// applies an entry, after the leader stamped it, so its log time never runs ahead of what the leader's monotonic
/// clock allows (it can be ahead of a leader whose wall clock lags, by at most that lag).
public struct LogClock: Sendable, Equatable {
    public private(set) var anchorMs: UInt64 = 0
    public private(set) var anchorMonotonicMs: UInt64 = 0

    public init() {}

    /// Log time now, given this node's wall and monotonic clocks (ms).
    public func now(wallMs: UInt64, monotonicMs: UInt64) -> UInt64 {
        guard anchorMs > 0 else { return wallMs }
        let elapsed = monotonicMs >= anchorMonotonicMs ? monotonicMs - anchorMonotonicMs : 0
        return max(anchorMs, min(wallMs, anchorMs &+ elapsed))
    }

    /// A stamp for a proposal: log time now, which becomes the anchor.
    public mutating func stamp(wallMs: UInt64, monotonicMs: UInt64) -> UInt64 {
        let t = now(wallMs: wallMs, monotonicMs: monotonicMs)
        observe(t, monotonicMs: monotonicMs)
        return t
    }

    /// Records log time `t` seen at `monotonicMs` (an applied entry's stamp, a restored snapshot's clock).
    public mutating func observe(_ t: UInt64, monotonicMs: UInt64) {
        guard t > anchorMs else { return }
        anchorMs = t
        anchorMonotonicMs = monotonicMs
    }
}
