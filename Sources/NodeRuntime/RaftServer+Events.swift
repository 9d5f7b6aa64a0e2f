import ClusterAPI
import RaftCore

/// The Raft loop's hooks into the event ring (`GET /events`): each is one call from `RaftServer`, so the loop's code
/// stays about consensus. All run on the loop.
extension RaftServer {
    /// Records one event stamped with the node's wall clock and current term.
    func recordEvent(
        _ kind: NodeEventKind, _ message: String, peer: UInt64? = nil, index: UInt64? = nil, bytes: UInt64? = nil,
        durationMs: UInt64? = nil
    ) {
        events.append(
            atMs: NodeBackend.wallClockMillis(), kind: kind, term: core.term, message: message, peer: peer,
            index: index, bytes: bytes, durationMs: durationMs)
    }

    /// A Ready carried a new soft state.
    func recordSoftState(_ soft: SoftState) {
        eventRecorder.softStateChanged(
            soft, core: core, wallMs: NodeBackend.wallClockMillis(), monoMs: RaftServer.monotonicMillis(), ring: events)
    }

    /// Every tick: a leader notices peers that went silent or came back (throttled inside).
    func recordPeerChanges(now: UInt64) {
        guard core.role == .leader else { return }
        eventRecorder.checkPeers(
            core: core, monoMs: now, wallMs: NodeBackend.wallClockMillis(),
            silentAfterMs: settings.raft.electionTimeoutMin, ring: events)
    }

    /// A log write that ended in an fsync took `ms`: the latency histogram, and an event when it was slow.
    func recordFsync(ms: UInt64) {
        metrics.fsyncMs.record(ms)
        eventRecorder.fsynced(
            ms: ms, monoMs: RaftServer.monotonicMillis(), wallMs: NodeBackend.wallClockMillis(), term: core.term,
            ring: events)
    }
}
