import NIOCore
import RaftCore

/// The outbound link to one peer, as a value: a bounded frame queue, the lazily opened connection with reconnect and
/// backoff, and the forwarded requests waiting for an answer. Every method returns what the shell must do; the
/// struct performs no I/O. ``PeerTransport`` keeps one per peer, confined to its event loop.
///
/// Invariants: `queuedBytes` is the sum of the queued frames' sizes; `queue.count <= limits.maxQueuedFrames` and
/// `queuedBytes <= limits.maxQueuedBytes`; every pending forward whose `written` is false has exactly one frame in
/// the queue, and one whose `written` is true has none.
struct PeerLinkStateMachine {
    /// Bounds and timings of a link.
    struct Limits: Equatable {
        var maxQueuedFrames: Int
        var maxQueuedBytes: Int
        var maxBatchBytes: Int
        var minimumBackoff: TimeAmount
        var maximumBackoff: TimeAmount
    }

    /// Where the connection stands. `attempt` numbers each connection attempt so that callbacks of an abandoned
    /// attempt are recognised and ignored.
    enum Connection {
        /// No connection and none wanted until a frame is queued.
        case idle
        case connecting(attempt: UInt64)
        case connected(Channel, attempt: UInt64)
        /// Waiting for the reconnect timer of `attempt`.
        case backingOff(attempt: UInt64)
        case shutdown
    }

    struct QueuedFrame {
        var buffer: ByteBuffer
        /// Set for forwarded requests, so that a request that times out before it is written can be withdrawn.
        var forwardID: UInt64?
    }

    struct PendingForward {
        var promise: EventLoopPromise<TunnelledResponse>
        /// Handed to the channel: from then on the outcome is unknown if no answer comes.
        var written: Bool
        /// When it times out (`forwardsExpired(now:)`).
        var deadline: NIODeadline
    }

    /// A promise to fail, with the error that tells the caller whether the request may have been sent.
    struct Failure {
        var promise: EventLoopPromise<TunnelledResponse>
        var error: ForwardError
    }

    // MARK: Actions

    enum EnqueueAction {
        /// Queued; nothing more to do (a connection attempt or a drain is already on its way).
        case none
        /// Queued; schedule a drain for the end of this event-loop tick.
        case scheduleDrain
        /// Queued; open a connection.
        case connect(PeerAddress, attempt: UInt64)
        /// Not queued: the queue is full or the link is shut down. Report the peer unreachable when asked to.
        case dropped(reportUnreachable: Bool)
    }

    struct WriteBatch {
        var channel: Channel
        var frames: [ByteBuffer]
        /// Frames are still queued: drain again if the channel stays writable.
        var more: Bool
    }

    enum ConnectedAction {
        /// Write preamble and hello on the channel, then drain.
        case start(Channel)
        /// The attempt was abandoned meanwhile: close this channel.
        case closeStale(Channel)
    }

    struct LinkDown {
        /// Forwarded requests that cannot be answered any more.
        var failures: [Failure] = []
        /// Schedule the reconnect timer for `attempt` after `delay`; `nil` stays idle until the next frame.
        var reconnect: (delay: TimeAmount, attempt: UInt64)?
        var reportUnreachable: Bool = false
        /// A channel to close.
        var close: Channel?
    }

    // MARK: State

    let limits: Limits
    private(set) var address: PeerAddress
    private(set) var connection: Connection = .idle
    private(set) var queue = CircularBuffer<QueuedFrame>()
    private(set) var queuedBytes = 0
    private var forwards: [UInt64: PendingForward] = [:]
    /// Consecutive attempts that did not reach a hello from the peer; drives the backoff.
    private(set) var failures = 0
    private var lastAttempt: UInt64 = 0
    private var lastForwardID: UInt64 = 0
    /// A drain is scheduled for the end of the current tick.
    private var drainScheduled = false
    /// The queue overflowed and `peerUnreachable` was reported; reset once frames flow again.
    private var overflowReported = false

    init(address: PeerAddress, limits: Limits) {
        self.address = address
        self.limits = limits
    }

    var pendingForwardCount: Int { forwards.count }

    var connectedChannel: Channel? {
        if case .connected(let channel, _) = connection { return channel }
        return nil
    }

    var isShutdown: Bool {
        if case .shutdown = connection { return true }
        return false
    }

    // MARK: Queueing

    mutating func allocateForwardID() -> UInt64 {
        lastForwardID &+= 1
        return lastForwardID
    }

    /// Queues one encoded frame (for a forwarded request, with its id and promise).
    mutating func enqueue(
        _ buffer: ByteBuffer,
        forward: (id: UInt64, promise: EventLoopPromise<TunnelledResponse>, deadline: NIODeadline)? = nil
    ) -> EnqueueAction {
        if isShutdown { return .dropped(reportUnreachable: false) }
        guard queue.count < limits.maxQueuedFrames, queuedBytes + buffer.readableBytes <= limits.maxQueuedBytes
        else {
            defer { overflowReported = true }
            return .dropped(reportUnreachable: !overflowReported)
        }
        queue.append(QueuedFrame(buffer: buffer, forwardID: forward?.id))
        queuedBytes += buffer.readableBytes
        if let forward {
            forwards[forward.id] = PendingForward(promise: forward.promise, written: false, deadline: forward.deadline)
        }
        switch connection {
        case .idle:
            return .connect(address, attempt: startAttempt())
        case .connected:
            if drainScheduled { return .none }
            drainScheduled = true
            return .scheduleDrain
        case .connecting, .backingOff, .shutdown:
            return .none
        }
    }

    /// Takes the next batch of frames to write: nothing unless connected and `writable`; otherwise frames up to
    /// `maxBatchBytes` (at least one), marking forwarded requests among them as written.
    mutating func drain(writable: Bool) -> WriteBatch? {
        drainScheduled = false
        guard case .connected(let channel, _) = connection, writable, !queue.isEmpty else { return nil }
        var frames: [ByteBuffer] = []
        var bytes = 0
        while let next = queue.first, frames.isEmpty || bytes + next.buffer.readableBytes <= limits.maxBatchBytes {
            queue.removeFirst()
            queuedBytes -= next.buffer.readableBytes
            bytes += next.buffer.readableBytes
            frames.append(next.buffer)
            if let id = next.forwardID { forwards[id]?.written = true }
        }
        overflowReported = false
        return WriteBatch(channel: channel, frames: frames, more: !queue.isEmpty)
    }

    /// The shell scheduled another drain itself (a batch left frames queued and the channel is still writable).
    mutating func drainRescheduled() {
        drainScheduled = true
    }

    // MARK: Connection lifecycle

    /// The connection attempt `attempt` succeeded.
    mutating func connected(attempt: UInt64, channel: Channel) -> ConnectedAction {
        guard case .connecting(attempt) = connection else { return .closeStale(channel) }
        connection = .connected(channel, attempt: attempt)
        return .start(channel)
    }

    /// The peer answered with the right hello: the link is healthy, so the backoff starts over.
    mutating func helloConfirmed(attempt: UInt64) {
        guard case .connected(_, attempt) = connection else { return }
        failures = 0
    }

    /// The connection attempt `attempt` failed. Forwarded requests still queued were certainly not sent: they fail
    /// as unreachable at once rather than wait for their timeout. Raft frames stay queued for the next attempt.
    mutating func connectFailed(attempt: UInt64, jitter: Double) -> LinkDown {
        guard case .connecting(attempt) = connection else { return LinkDown() }
        var down = LinkDown(reportUnreachable: true)
        down.failures = withdrawUnwrittenForwards()
        failures += 1
        connection = .backingOff(attempt: attempt)
        down.reconnect = (backoffDelay(jitter: jitter), attempt)
        return down
    }

    /// The connected channel of `attempt` closed. Forwarded requests already written fail as `connectionLost`;
    /// queued frames wait for a reconnect after a backoff.
    mutating func connectionClosed(attempt: UInt64, jitter: Double) -> LinkDown {
        guard case .connected(_, attempt) = connection else { return LinkDown() }
        var down = LinkDown(reportUnreachable: true)
        down.failures = failWrittenForwards()
        failures += 1
        if queue.isEmpty {
            connection = .idle
        } else {
            connection = .backingOff(attempt: attempt)
            down.reconnect = (backoffDelay(jitter: jitter), attempt)
        }
        return down
    }

    /// The reconnect timer of `attempt` fired. Returns the attempt to start, if frames are waiting.
    mutating func reconnectTimerFired(attempt: UInt64) -> (PeerAddress, attempt: UInt64)? {
        guard case .backingOff(attempt) = connection else { return nil }
        guard !queue.isEmpty else {
            connection = .idle
            return nil
        }
        return (address, startAttempt())
    }

    /// The peer's address changed (membership or configuration). An open connection is closed; queued frames go to
    /// the new address.
    mutating func updateAddress(_ newAddress: PeerAddress) -> (down: LinkDown, connect: (PeerAddress, UInt64)?) {
        guard newAddress != address, !isShutdown else { return (LinkDown(), nil) }
        address = newAddress
        var down = LinkDown()
        switch connection {
        case .connected(let channel, _):
            down.close = channel
            down.failures = failWrittenForwards()
        case .idle, .connecting, .backingOff, .shutdown:
            break
        }
        failures = 0
        connection = .idle
        guard !queue.isEmpty else { return (down, nil) }
        return (down, (address, startAttempt()))
    }

    /// The link is removed or the transport shuts down: everything pending fails, nothing reconnects.
    mutating func shutdown() -> LinkDown {
        var down = LinkDown()
        down.close = connectedChannel
        down.failures = failWrittenForwards() + withdrawUnwrittenForwards()
        queue.removeAll()
        queuedBytes = 0
        connection = .shutdown
        return down
    }

    // MARK: Forwarded requests

    /// The answer to forwarded request `id` arrived. Returns the promise to succeed, if the request is still pending.
    mutating func responseReceived(id: UInt64) -> EventLoopPromise<TunnelledResponse>? {
        forwards.removeValue(forKey: id)?.promise
    }

    /// Forwarded request `id` timed out. A request never handed to the channel is withdrawn from the queue and fails
    /// as `.unreachable`; one already written fails as `.timeout`.
    mutating func forwardTimedOut(id: UInt64) -> Failure? {
        guard let pending = forwards.removeValue(forKey: id) else { return nil }
        if pending.written { return Failure(promise: pending.promise, error: .timeout) }
        removeQueued { $0.forwardID == id }
        return Failure(promise: pending.promise, error: .unreachable)
    }

    /// The forwarded requests whose deadline is past at `now`, failed as `forwardTimedOut(id:)` fails them, and the
    /// earliest deadline of those still pending (when the shell's timer should next look), if any.
    mutating func forwardsExpired(now: NIODeadline) -> (failures: [Failure], next: NIODeadline?) {
        var expired: [UInt64] = []
        var next: NIODeadline?
        for (id, pending) in forwards {
            if pending.deadline <= now {
                expired.append(id)
            } else if next.map({ pending.deadline < $0 }) ?? true {
                next = pending.deadline
            }
        }
        return (expired.compactMap { forwardTimedOut(id: $0) }, next)
    }

    // MARK: Private

    private mutating func startAttempt() -> UInt64 {
        lastAttempt &+= 1
        connection = .connecting(attempt: lastAttempt)
        return lastAttempt
    }

    /// Exponential backoff with equal jitter: half the step is fixed, half is random (`jitter` in 0..<1).
    private func backoffDelay(jitter: Double) -> TimeAmount {
        PeerLinkStateMachine.backoffDelay(
            failures: failures, minimum: limits.minimumBackoff, maximum: limits.maximumBackoff, jitter: jitter
        )
    }

    static func backoffDelay(failures: Int, minimum: TimeAmount, maximum: TimeAmount, jitter: Double) -> TimeAmount {
        let exponent = min(max(failures - 1, 0), 30)
        let (scaled, overflow) = minimum.nanoseconds.multipliedReportingOverflow(by: Int64(1) << exponent)
        let step = overflow ? maximum.nanoseconds : min(scaled, maximum.nanoseconds)
        let half = step / 2
        return .nanoseconds(half + Int64(Double(half) * min(max(jitter, 0), 1)))
    }

    private mutating func withdrawUnwrittenForwards() -> [Failure] {
        var failed: [Failure] = []
        for (id, pending) in forwards where !pending.written {
            forwards.removeValue(forKey: id)
            failed.append(Failure(promise: pending.promise, error: .unreachable))
        }
        if !failed.isEmpty { removeQueued { $0.forwardID != nil } }
        return failed
    }

    private mutating func failWrittenForwards() -> [Failure] {
        var failed: [Failure] = []
        for (id, pending) in forwards where pending.written {
            forwards.removeValue(forKey: id)
            failed.append(Failure(promise: pending.promise, error: .connectionLost))
        }
        return failed
    }

    private mutating func removeQueued(where shouldRemove: (QueuedFrame) -> Bool) {
        var kept = CircularBuffer<QueuedFrame>(initialCapacity: queue.count)
        var bytes = 0
        for frame in queue where !shouldRemove(frame) {
            kept.append(frame)
            bytes += frame.buffer.readableBytes
        }
        queue = kept
        queuedBytes = bytes
    }
}

// MARK: - Addresses and errors

/// A peer's dial address. Wildcard listen addresses (`0.0.0.0`, `::`) are dialled on the loopback interface, so the
/// seed configuration's `0.0.0.0:908N` peers work as written.
public struct PeerAddress: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// The host to connect to.
    public var dialHost: String {
        switch host {
        case "", "0.0.0.0", "*": return "127.0.0.1"
        case "::", "[::]": return "::1"
        default:
            if host.hasPrefix("["), host.hasSuffix("]") { return String(host.dropFirst().dropLast()) }
            return host
        }
    }

    public var description: String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }
}

/// Why a forwarded request got no answer. Callers answer 503 for ``unreachable`` (the leader never saw the request:
/// safe to retry) and 504 for ``timeout`` and ``connectionLost`` (the outcome is unknown).
public enum ForwardError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request was certainly not sent: unknown peer, queue full, connection could not be opened, or the timeout
    /// expired while it was still queued.
    case unreachable
    /// The request was written but no answer came in time.
    case timeout
    /// The request was written but the connection closed before the answer arrived.
    case connectionLost

    /// Whether the leader may have received (and applied) the request.
    public var mayHaveBeenSent: Bool { self != .unreachable }

    public var description: String {
        switch self {
        case .unreachable: return "unreachable: the request was not sent"
        case .timeout: return "timeout: the request was sent but not answered in time"
        case .connectionLost: return "connection lost: the request was sent but the connection closed"
        }
    }
}
