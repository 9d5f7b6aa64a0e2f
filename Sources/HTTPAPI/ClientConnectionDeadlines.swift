import ClusterAPI
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// MARK: - Deadlines no trickle can extend

/// Where one client connection stands, for its deadlines. Shared by ``ClientReadDeadlineHandler`` (which sees the
/// raw bytes) and ``ClientHTTPHandler`` (which sees requests), both on the channel's event loop.
///
/// Each phase has one deadline counted from when the phase began, so bytes arriving one at a time never extend it:
/// a request's head must arrive within `headerTimeout` of its first byte, its body within `bodyTimeout` of its head,
/// and a connection between requests is closed after `idleTimeout` without a new request starting. A request being
/// served (or a response being streamed) has no read deadline; the request timeout answers it.
final class ClientConnectionPhase {
    enum Phase: Equatable {
        /// Between requests since the instant given: the next byte starts a request.
        case idle(since: NIODeadline)
        /// The first bytes of a request arrived at the instant given; its head is not complete.
        case readingHead(since: NIODeadline)
        /// The head arrived at the instant given; the body is not complete.
        case readingBody(since: NIODeadline)
        /// The request is complete and being served, or a response is being written.
        case busy
    }

    var phase: Phase = .idle(since: .now())

    func headReceived() { phase = .readingBody(since: .now()) }
    func requestComplete() { phase = .busy }
    func responseComplete() { phase = .idle(since: .now()) }
}

/// The first HTTP handler of a client connection: it notes when a request's first byte arrives and, once a second
/// (or a tenth of the shortest deadline, if shorter), closes a connection whose current phase is over its deadline.
///
/// A closed connection gets no response: a client that has not sent a whole request in time is a slow or broken
/// client, and there is no request to answer.
final class ClientReadDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    private let phase: ClientConnectionPhase
    private let limits: ClientHTTPLimits
    private var check: Scheduled<Void>?
    private var interval = TimeAmount.seconds(1)
    private var context: ChannelHandlerContext?

    init(phase: ClientConnectionPhase, limits: ClientHTTPLimits) {
        self.phase = phase
        self.limits = limits
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        phase.phase = .idle(since: .now())
        guard let shortest = [limits.idleTimeout, limits.headerTimeout, limits.bodyTimeout].compactMap({ $0 }).min()
        else { return }
        interval = .nanoseconds(min(TimeAmount.seconds(1).nanoseconds, max(shortest.nanoseconds / 10, 1_000_000)))
        scheduleCheck(context: context)
    }

    private func scheduleCheck(context: ChannelHandlerContext) {
        check = context.eventLoop.assumeIsolated().scheduleTask(in: interval) { [weak self] in
            self?.checkDeadlines()
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stop()
        self.context = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        stop()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .idle = phase.phase { phase.phase = .readingHead(since: .now()) }
        context.fireChannelRead(data)
    }

    private func stop() {
        check?.cancel()
        check = nil
    }

    private func checkDeadlines() {
        let now = NIODeadline.now()
        let expired: Bool
        switch phase.phase {
        case .idle(let since): expired = limits.idleTimeout.map { now - since >= $0 } ?? false
        case .readingHead(let since): expired = limits.headerTimeout.map { now - since >= $0 } ?? false
        case .readingBody(let since): expired = limits.bodyTimeout.map { now - since >= $0 } ?? false
        case .busy: expired = false
        }
        guard let context else { return }
        guard expired else { return scheduleCheck(context: context) }
        check = nil
        context.close(promise: nil)
    }
}

@available(*, unavailable)
extension ClientReadDeadlineHandler: Sendable {}

// MARK: - A cap on connections

/// Counts open connections against a cap; shared by every connection of one listening port (or two ports).
public final class ConnectionLimiter: Sendable {
    public let limit: Int
    private let open = NIOLockedValueBox(0)

    public init(limit: Int) { self.limit = max(1, limit) }

    /// Takes a slot if one is free; the caller must `release()` it when the connection closes.
    public func tryAcquire() -> Bool {
        open.withLockedValue { count in
            guard count < limit else { return false }
            count += 1
            return true
        }
    }

    public func release() { open.withLockedValue { $0 = max(0, $0 - 1) } }

    /// Connections open now.
    public var count: Int { open.withLockedValue { $0 } }

    /// Takes a slot for `channel` and gives it back when the channel closes; `false` when the cap is reached.
    public func admit(_ channel: any Channel) -> Bool {
        guard tryAcquire() else { return false }
        channel.closeFuture.whenComplete { _ in self.release() }
        return true
    }
}

/// Answers the first bytes of a connection over the cap with `429 overloaded` (`Retry-After: 1`) and closes it:
/// nothing of the request is read, so nothing was proposed.
public enum ConnectionRefusal {
    /// Writes the refusal on `channel` (raw bytes, no HTTP handlers needed) and closes it.
    public static func refuse(_ channel: any Channel, cap: Int) {
        var body = channel.allocator.buffer(capacity: 160)
        ClientResponseEncoder.writeError(
            APIError(code: .overloaded, message: "too many connections (the cap is \(cap)); retry later"), hint: nil,
            into: &body)
        var buffer = channel.allocator.buffer(capacity: 256 + body.readableBytes)
        buffer.writeString(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: "
                + "\(body.readableBytes)\r\nretry-after: 1\r\nconnection: close\r\n\r\n")
        buffer.writeBuffer(&body)
        channel.writeAndFlush(buffer).whenComplete { _ in channel.close(promise: nil) }
    }
}

// MARK: - Out of descriptors: stop accepting for a while

/// Stops a listening channel from accepting for `pause` once an accept fails for want of descriptors or memory
/// (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`), then accepts again.
///
/// NIO's `AcceptBackoffHandler` only delays `read()` calls, but after a failed accept a server channel keeps its read
/// pending and its interest in the socket, which stays readable while connections wait in the backlog: it calls
/// accept again at once, never `read()`, and the loop spins (measured: about 9000 failing `accept4` a second at 100%
/// CPU), taking every descriptor the moment one is freed, the log's spare one included. Turning `autoRead` off drops
/// the interest until the pause is over; turning it back on reads (accepts) again.
public final class AcceptPauseHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = Channel

    private let pause: TimeAmount
    private var resumption: Scheduled<Void>?
    /// How often accepting was paused (for tests).
    public private(set) var pauses = 0

    public init(pause: TimeAmount = .seconds(1)) { self.pause = pause }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let io = error as? IOError, [EMFILE, ENFILE, ENOBUFS, ENOMEM].contains(io.errnoCode) else {
            return context.fireErrorCaught(error)
        }
        guard resumption == nil, let options = context.channel.syncOptions else { return }
        guard (try? options.setOption(.autoRead, value: false)) != nil else { return }
        pauses += 1
        let channel = context.channel
        resumption = context.eventLoop.assumeIsolated().scheduleTask(in: pause) {
            self.resumption = nil
            try? channel.syncOptions?.setOption(.autoRead, value: true)
        }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        resumption?.cancel()
        resumption = nil
        context.fireChannelInactive()
    }
}

@available(*, unavailable)
extension AcceptPauseHandler: Sendable {}
