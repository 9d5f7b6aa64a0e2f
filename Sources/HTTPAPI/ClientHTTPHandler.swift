import ClusterAPI
import NIOCore
import NIOHTTP1

// MARK: - Pipeline

/// Adds the client API's HTTP/1.1 server handlers to `channel`: the read deadlines (`limits.idleTimeout`,
/// `headerTimeout`, `bodyTimeout`, which no trickle of bytes extends), the NIOHTTP1 codec with pipelining assistance
/// and `ClientHTTPHandler`.
///
/// Call it on any thread, once the node's port-sharing detector has decided a connection speaks HTTP. For
/// correct answers to clients that half-close after their request, enable `ChannelOptions.allowRemoteHalfClosure`
/// on the channel (`HTTPServer.bind` does).
public func configureClientHTTP(
    channel: any Channel, backend: any ClientAPIBackend, limits: ClientHTTPLimits = ClientHTTPLimits(),
    authenticator: (any ClientAuthenticator)? = nil
) -> EventLoopFuture<Void> {
    channel.eventLoop.makeCompletedFuture {
        try channel.pipeline.syncOperations.addClientHTTPHandlers(
            backend: backend, limits: limits, authenticator: authenticator)
    }
}

extension ChannelPipeline.SynchronousOperations {
    /// The synchronous form of `configureClientHTTP(channel:backend:limits:)`, for use on the channel's event loop.
    public func addClientHTTPHandlers(
        backend: any ClientAPIBackend, limits: ClientHTTPLimits = ClientHTTPLimits(),
        authenticator: (any ClientAuthenticator)? = nil
    ) throws {
        // Outbound header validation is off: the handler writes only its own header names and values, and screens
        // the headers of forwarded responses itself (`isRelayableHeader`). That saves a handler per response.
        let phase = ClientConnectionPhase()
        try addHandler(ClientReadDeadlineHandler(phase: phase, limits: limits))
        try configureHTTPServerPipeline(
            withPipeliningAssistance: true, withErrorHandling: false, withOutboundHeaderValidation: false)
        try addHandler(
            ClientHTTPHandler(backend: backend, limits: limits, authenticator: authenticator, phase: phase))
    }
}

// MARK: - Handler

/// Decodes each client request into a `ClientCommand`, calls the backend and encodes its answer (SPEC.md,
/// "Client HTTP API"). Every error is the one envelope; every response carries `X-Leader-Id` when a leader is
/// known. Protocol state lives in `ClientConnectionStateMachine`; this class only performs its actions.
public final class ClientHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPServerRequestPart
    public typealias OutboundOut = HTTPServerResponsePart

    private let backend: any ClientAPIBackend
    private let limits: ClientHTTPLimits
    private var machine: ClientConnectionStateMachine
    private var context: ChannelHandlerContext?
    /// The one request-timeout timer of this connection, and when it fires. It is not cancelled when a request is
    /// answered: a later request's deadline is later, so the timer, when it fires, re-arms for the request then
    /// awaited (if any). A busy keep-alive connection thus schedules one timer per `requestTimeout`, not per request.
    private var timeout: Scheduled<Void>?
    private var timeoutAt: NIODeadline?
    /// The request awaiting its answer, and when it is answered `504`.
    private var awaiting: (sequence: UInt64, deadline: NIODeadline)?
    private var linger: Scheduled<Void>?
    /// The client half-closed its side: close once the current response is written.
    private var inputClosed = false
    /// `close(mode: .output)` succeeded after an early rejection.
    private var outputClosed = false
    /// Secure mode: who may do what. `nil` serves every request without credentials (plaintext mode).
    private var authentication: ConnectionAuthentication?
    /// What the read deadlines see of this connection (shared with `ClientReadDeadlineHandler`).
    private let phase: ClientConnectionPhase
    /// The watch this connection streams, once `GET /watch` was accepted (the connection serves nothing else after).
    /// A connection with one is long-lived by design: idle timeouts skip it (`isStreaming`).
    private var watch: WatchStream?

    /// `true` while the connection streams a watch: no request is pending, yet it must stay open.
    var isStreaming: Bool { watch != nil }

    public convenience init(
        backend: any ClientAPIBackend, limits: ClientHTTPLimits = ClientHTTPLimits(),
        authenticator: (any ClientAuthenticator)? = nil
    ) {
        self.init(backend: backend, limits: limits, authenticator: authenticator, phase: ClientConnectionPhase())
    }

    init(
        backend: any ClientAPIBackend, limits: ClientHTTPLimits, authenticator: (any ClientAuthenticator)?,
        phase: ClientConnectionPhase
    ) {
        self.phase = phase
        self.backend = backend
        self.limits = limits
        self.machine = ClientConnectionStateMachine(maxBodyBytes: limits.maxBodyBytes)
        self.authentication = authenticator.map(ConnectionAuthentication.init)
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        watch?.channelClosed()
        cancelTimers()
        machine.connectionClosed()
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        watch?.channelClosed()
        cancelTimers()
        machine.connectionClosed()
        context.fireChannelInactive()
    }

    // MARK: Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            phase.headReceived()
            switch machine.receivedHead(head) {
            case .proceed, .ignore:
                break
            case .sendContinue:
                let interim = HTTPResponseHead(version: head.version, status: .continue)
                context.writeAndFlush(wrapOutboundOut(.head(interim)), promise: nil)
            case .rejectEarly(let rejection, let head):
                rejectAndDrain(rejection, head: head, context: context)
            }
        case .body(let part):
            if case .rejectEarly(let rejection, let head) = machine.receivedBody(part) {
                rejectAndDrain(rejection, head: head, context: context)
            }
        case .end:
            phase.requestComplete()
            switch machine.receivedEnd() {
            case .dispatch(let head, let body, let sequence):
                dispatch(head: head, body: body, sequence: sequence, context: context)
            case .closeAfterDrain:
                if outputClosed { context.close(promise: nil) }
            case .ignore:
                break
            }
        }
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            inputClosed = true
            if machine.isBetweenRequests && !isStreaming { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError else {
            // I/O errors (reset by peer and the like): nothing can be answered.
            machine.connectionClosed()
            context.close(promise: nil)
            return
        }
        switch machine.protocolError() {
        case .respondAndClose:
            let rejection = ClientRequestRejection(.invalidRequest, "malformed HTTP request: \(error)")
            writeError(rejection, version: .http1_1, keepAlive: false, context: context)
        case .close:
            context.close(promise: nil)
        }
    }

    // MARK: Dispatch

    private func dispatch(head: HTTPRequestHead, body: ByteBuffer?, sequence: UInt64, context: ChannelHandlerContext) {
        // Secure mode: who is asking comes first (401 before any other answer), what they may ask after decoding.
        var caller: Caller?
        let authorization = authentication == nil ? nil : head.headers.first(name: "authorization")
        if let result = authentication?.authenticate(authorization: authorization, channel: context.channel) {
            switch result {
            case .success(let authenticated):
                caller = authenticated
            case .failure(let error):
                rejectRequest(error, sequence: sequence, context: context)
                return
            }
        }
        let target: RoutedTarget
        switch ClientRequestDecoder.route(method: head.method, uri: head.uri) {
        case .success(let routed):
            target = routed
        case .failure(let rejection):
            guard let head = machine.completeRequest(sequence: sequence) else { return }
            writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
            return
        }
        if let caller, let refusal = target.route.authorize(caller) {
            rejectRequest(refusal, sequence: sequence, context: context)
            return
        }
        if target.route == .watch {
            startWatch(target, head: head, sequence: sequence, context: context)
            return
        }
        let deadline = NIODeadline.now() + limits.requestTimeout
        var requestContext = ClientRequestContext(eventLoop: context.eventLoop, deadline: deadline)
        let body = body ?? context.channel.allocator.buffer(capacity: 0)
        let headers = target.route.isKeyValueWrite
            ? head.headers[ClientRequestContext.idempotencyKeyHeader].map { (ClientRequestContext.idempotencyKeyHeader, $0) }
            : []
        // Forwarded as received: the leader decodes it. Each request is decoded once, where it is served.
        let raw = RawClientRequest(
            target: target, method: head.method, uri: head.uri, headers: headers, body: body, caller: caller)
        if let forwarded = backend.forward(raw, context: requestContext) {
            awaitForwarded(forwarded, sequence: sequence, deadline: deadline, context: context)
            return
        }
        switch ClientRequestDecoder.decode(target, headers: headers, body: body, limits: limits) {
        case .success(let decoded):
            requestContext.idempotencyKey = decoded.idempotencyKey
            ClientRouter.serve(
                decoded.command, backend: backend, context: requestContext,
                into: Reply(handler: self, sequence: sequence, deadline: deadline, context: context))
        case .failure(let rejection):
            guard let head = machine.completeRequest(sequence: sequence) else { return }
            writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
        }
    }

    /// `GET /watch`: registers a `WatchStream` with the backend, then answers `200 text/event-stream` and lets the
    /// stream write the events (or answers the error: `400`, `410 compacted`). The connection then serves nothing else.
    private func startWatch(
        _ target: RoutedTarget, head: HTTPRequestHead, sequence: UInt64, context: ChannelHandlerContext
    ) {
        let request: WatchRequest
        switch ClientRequestDecoder.decodeWatch(target, lastEventID: head.headers.first(name: "last-event-id")) {
        case .success(let decoded): request = decoded
        case .failure(let rejection):
            guard let head = machine.completeRequest(sequence: sequence) else { return }
            writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
            return
        }
        let stream = WatchStream(channel: context.channel, bufferBytes: backend.watchBufferBytes)
        watch = stream
        let deadline = NIODeadline.now() + limits.requestTimeout
        let requestContext = ClientRequestContext(eventLoop: context.eventLoop, deadline: deadline)
        backend.watch(request, stream: stream, context: requestContext).hop(to: context.eventLoop).assumeIsolated()
            .whenComplete { result in
                guard let context = self.context, let head = self.machine.completeRequest(sequence: sequence) else {
                    stream.channelClosed()
                    return
                }
                switch result {
                case .success:
                    var headers = HTTPHeaders()
                    headers.add(name: "content-type", value: ClientRoute.watch.contentType)
                    headers.add(name: "cache-control", value: "no-cache")
                    if let leader = self.backend.leaderID { headers.add(name: "x-leader-id", value: String(leader)) }
                    let response = HTTPResponseHead(version: head.version, status: .ok, headers: headers)
                    context.writeAndFlush(self.wrapOutboundOut(.head(response)), promise: nil)
                    stream.start()
                case .failure(let error):
                    self.watch = nil
                    stream.channelClosed()
                    self.writeBackendError(error, head: head, context: context)
                }
            }
    }

    /// Answers request `sequence` with `error` at once (401, 403).
    private func rejectRequest(_ error: APIError, sequence: UInt64, context: ChannelHandlerContext) {
        guard let head = machine.completeRequest(sequence: sequence) else { return }
        var rejection = ClientRequestRejection(error.code, error.message)
        rejection.error = error
        writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
    }

    /// The sink `ClientRouter` answers one request of this connection through.
    private struct Reply: ClientAnswerSink {
        let handler: ClientHTTPHandler
        let sequence: UInt64
        let deadline: NIODeadline
        let context: ChannelHandlerContext

        func answer<Value: Sendable>(
            _ future: EventLoopFuture<Value>, contentType: String,
            _ encode: @escaping @Sendable (Value, inout ByteBuffer) -> Void
        ) {
            handler.answer(future, sequence, deadline, context, contentType, encode)
        }
    }

    /// Answers request `sequence` with `future`'s value (encoded by `encode`) or error, or with `504` at `deadline`.
    private func answer<Value: Sendable>(
        _ future: EventLoopFuture<Value>, _ sequence: UInt64, _ deadline: NIODeadline, _ context: ChannelHandlerContext,
        _ contentType: String, _ encode: @escaping (Value, inout ByteBuffer) -> Void
    ) {
        future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            guard let context = self.context, let head = self.machine.completeRequest(sequence: sequence) else {
                return
            }
            self.cancelTimeout(sequence: sequence)
            switch result {
            case .success(let value):
                // Room for a get of a 256-byte value with its JSON (no regrowth for the common case).
                var body = context.channel.allocator.buffer(capacity: 512)
                encode(value, &body)
                var extra = HTTPHeaders()
                if contentType != "application/json" { extra.add(name: "content-type", value: contentType) }
                self.writeResponse(
                    status: .ok, body: body, version: head.version, keepAlive: head.isKeepAlive, extraHeaders: extra,
                    context: context)
            case .failure(let error):
                self.writeBackendError(error, head: head, context: context)
            }
        }
        armTimeout(sequence: sequence, deadline: deadline, context: context)
    }

    private func awaitForwarded(
        _ future: EventLoopFuture<ForwardedResponse>, sequence: UInt64, deadline: NIODeadline,
        context: ChannelHandlerContext
    ) {
        future.hop(to: context.eventLoop).assumeIsolated().whenComplete { result in
            guard let context = self.context, let head = self.machine.completeRequest(sequence: sequence) else {
                return
            }
            self.cancelTimeout(sequence: sequence)
            switch result {
            case .success(let forwarded):
                var extra = HTTPHeaders()
                for (name, value) in forwarded.headers where Self.isRelayableHeader(name: name, value: value) {
                    extra.add(name: name, value: value)
                }
                self.writeResponse(
                    status: forwarded.status, body: forwarded.body, version: head.version,
                    keepAlive: head.isKeepAlive, extraHeaders: extra, context: context)
            case .failure(let error):
                self.writeBackendError(error, head: head, context: context)
            }
        }
        armTimeout(sequence: sequence, deadline: deadline, context: context)
    }

    /// `false` for headers the handler sets itself, for those that only mean something on the leader's own
    /// connection, and for any name or value that could split the response (CR, LF, NUL, or an empty name).
    private static func isRelayableHeader(name: String, value: String) -> Bool {
        switch name.lowercased() {
        case "content-length", "connection", "keep-alive", "transfer-encoding", "x-leader-id", "upgrade", "te",
            "trailer", "proxy-connection":
            return false
        default:
            let unsafe: (UInt8) -> Bool = { $0 == 0x0D || $0 == 0x0A || $0 == 0x00 }
            return !name.isEmpty && !name.utf8.contains(where: unsafe) && !name.utf8.contains(UInt8(ascii: ":"))
                && !value.utf8.contains(where: unsafe)
        }
    }

    private func writeBackendError(_ error: any Error, head: HTTPRequestHead, context: ChannelHandlerContext) {
        let apiError = error as? APIError ?? APIError(code: .unavailable, message: "the node failed to serve: \(error)")
        var rejection = ClientRequestRejection(apiError.code, apiError.message)
        rejection.error = apiError
        writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
    }

    // MARK: Timers

    /// Schedules the `504` for request `sequence` unless it was answered synchronously.
    private func armTimeout(sequence: UInt64, deadline: NIODeadline, context: ChannelHandlerContext) {
        guard machine.isAwaiting(sequence: sequence) else { return }
        awaiting = (sequence, deadline)
        // A timer already armed for no later than this deadline fires first and re-arms for this request.
        if let armed = timeoutAt, armed <= deadline { return }
        timeout?.cancel()
        scheduleTimeout(at: deadline, context: context)
    }

    private func scheduleTimeout(at deadline: NIODeadline, context: ChannelHandlerContext) {
        timeoutAt = deadline
        timeout = context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            self.timeoutFired()
        }
    }

    private func timeoutFired() {
        timeout = nil
        timeoutAt = nil
        guard let context, let (sequence, deadline) = awaiting else { return }
        guard deadline <= .now() else {
            scheduleTimeout(at: deadline, context: context)
            return
        }
        awaiting = nil
        guard let head = machine.completeRequest(sequence: sequence) else { return }
        let rejection = ClientRequestRejection(
            .timeout,
            "no answer within \(limits.requestTimeout.nanoseconds / 1_000_000) ms; a write may or may not "
                + "have been applied")
        writeError(rejection, version: head.version, keepAlive: head.isKeepAlive, context: context)
    }

    /// Request `sequence` was answered: its `504` is off (the timer stays armed for the next request).
    private func cancelTimeout(sequence: UInt64) {
        if awaiting?.sequence == sequence { awaiting = nil }
    }

    private func cancelTimers() {
        awaiting = nil
        timeout?.cancel()
        timeout = nil
        timeoutAt = nil
        linger?.cancel()
        linger = nil
    }

    // MARK: Writing

    /// Sends `rejection` with `Connection: close`, half-closes the output and drops the rest of the upload for at
    /// most `limits.rejectLinger`, so the client reads the answer instead of a reset.
    private func rejectAndDrain(
        _ rejection: ClientRequestRejection, head: HTTPRequestHead, context: ChannelHandlerContext
    ) {
        var body = context.channel.allocator.buffer(capacity: 160)
        ClientResponseEncoder.writeError(rejection.error, hint: backend.leaderHint, into: &body)
        let written = context.eventLoop.makePromise(of: Void.self)
        writeResponse(
            status: rejection.status, body: body, version: head.version, keepAlive: false, closeAfter: false,
            context: context, promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            guard let context = self.context else { return }
            let outputClosed = context.eventLoop.makePromise(of: Void.self)
            context.close(mode: .output, promise: outputClosed)
            outputClosed.futureResult.assumeIsolated().whenComplete { result in
                guard let context = self.context else { return }
                switch result {
                case .success: self.outputClosed = true
                case .failure: context.close(promise: nil)
                }
            }
        }
        linger = context.eventLoop.assumeIsolated().scheduleTask(in: limits.rejectLinger) {
            self.linger = nil
            self.context?.close(promise: nil)
        }
    }

    private func writeError(
        _ rejection: ClientRequestRejection, version: HTTPVersion, keepAlive: Bool, context: ChannelHandlerContext
    ) {
        var body = context.channel.allocator.buffer(capacity: 160)
        ClientResponseEncoder.writeError(rejection.error, hint: backend.leaderHint, into: &body)
        var extra = HTTPHeaders()
        if let allow = rejection.allow { extra.add(name: "allow", value: allow) }
        // Refused before anything was proposed: the client may send it again, after a pause.
        if rejection.status == .tooManyRequests || rejection.status == .serviceUnavailable {
            extra.add(name: "retry-after", value: "1")
        }
        writeResponse(
            status: rejection.status, body: body, version: version, keepAlive: keepAlive, extraHeaders: extra,
            context: context)
    }

    /// Writes one complete response. When the connection is not kept alive it is closed once the response is out.
    private func writeResponse(
        status: HTTPResponseStatus, body: ByteBuffer, version: HTTPVersion, keepAlive: Bool,
        extraHeaders: HTTPHeaders = HTTPHeaders(), closeAfter: Bool = true, context: ChannelHandlerContext,
        promise: EventLoopPromise<Void>? = nil
    ) {
        let keepAlive = keepAlive && !inputClosed
        var headers = HTTPHeaders()
        headers.reserveCapacity(5 + extraHeaders.count)
        if !extraHeaders.contains(name: "content-type") {
            headers.add(name: "content-type", value: "application/json")
        }
        headers.add(name: "content-length", value: String(body.readableBytes))
        if let leader = backend.leaderID {
            headers.add(name: "x-leader-id", value: String(leader))
        }
        if !keepAlive {
            headers.add(name: "connection", value: "close")
        } else if version.minor == 0 {
            headers.add(name: "connection", value: "keep-alive")
        }
        if !extraHeaders.isEmpty { headers.add(contentsOf: extraHeaders) }
        let responseVersion: HTTPVersion = version.major == 1 && version.minor == 0 ? .http1_0 : .http1_1
        let head = HTTPResponseHead(version: responseVersion, status: status, headers: headers)
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        guard !keepAlive && closeAfter else {
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: promise)
            if machine.isBetweenRequests { phase.responseComplete() }
            return
        }
        let written = promise ?? context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            self.context?.close(promise: nil)
        }
    }
}

@available(*, unavailable)
extension ClientHTTPHandler: Sendable {}
