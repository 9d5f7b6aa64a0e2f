import ClusterAPI
import NIOCore
import NIOHTTP1

// MARK: - Providers

/// The answer of `GET /health`: `200 {"status":"ok",...}` when healthy, `503 {"status":"unhealthy",...}` otherwise.
public struct HealthReport: Sendable, Hashable {
    public var healthy: Bool
    public var nodeID: UInt64
    public var role: NodeRole
    /// The leader this node knows of.
    public var leaderID: UInt64?
    /// Why the node is unhealthy (e.g. "no leader for 3000 ms"); omitted when `nil`.
    public var reason: String?

    public init(healthy: Bool, nodeID: UInt64, role: NodeRole, leaderID: UInt64?, reason: String? = nil) {
        self.healthy = healthy
        self.nodeID = nodeID
        self.role = role
        self.leaderID = leaderID
        self.reason = reason
    }

    /// `{"status":"ok","node_id":1,"role":"leader","leader_id":1}` (`leader_id` is `null` when unknown).
    func write(into buffer: inout ByteBuffer) {
        buffer.writeStaticString(healthy ? "{\"status\":\"ok\",\"node_id\":" : "{\"status\":\"unhealthy\",\"node_id\":")
        buffer.writeDecimal(nodeID)
        buffer.writeStaticString(",\"role\":")
        buffer.writeJSONString(role.rawValue)
        buffer.writeStaticString(",\"leader_id\":")
        if let leaderID { buffer.writeDecimal(leaderID) } else { buffer.writeStaticString("null") }
        if let reason {
            buffer.writeStaticString(",\"reason\":")
            buffer.writeJSONString(reason)
        }
        buffer.writeStaticString("}")
    }
}

/// Where the metrics port gets its answers. Each closure runs in a `Task` per request (the port is not hot).
public struct MetricsEndpoints: Sendable {
    /// The body of `GET /metrics`, Prometheus text format 0.0.4 (see `PrometheusText`).
    public var metrics: @Sendable () async -> String
    /// `GET /status` (SPEC.md, "Status JSON").
    public var status: @Sendable () async -> NodeStatus
    /// `GET /health`.
    public var health: @Sendable () async -> HealthReport
    /// `GET /events`: the node's events with an id above the argument, oldest first. Called on the connection's
    /// event loop, so it must not block (a locked ring). `nil`: the route answers `404`.
    public var events: (@Sendable (_ after: UInt64) -> NodeEventsResponse)?

    public init(
        metrics: @escaping @Sendable () async -> String,
        status: @escaping @Sendable () async -> NodeStatus,
        health: @escaping @Sendable () async -> HealthReport,
        events: (@Sendable (_ after: UInt64) -> NodeEventsResponse)? = nil
    ) {
        self.metrics = metrics
        self.status = status
        self.health = health
        self.events = events
    }
}

// MARK: - Server

/// The metrics port: `GET /metrics`, `GET /status`, `GET /health`, `GET /events` (`EventStream`). Other paths are `404 not_found` and other
/// methods `405` (code `invalid_request`), in the client API's error envelope.
public enum MetricsHTTPServer {
    /// Adds the HTTP codec and the metrics handler to `channel`.
    /// With an `authenticator` (secure mode), every request needs credentials; any role may read the metrics port.
    public static func configure(
        channel: any Channel, endpoints: MetricsEndpoints, authenticator: (any ClientAuthenticator)? = nil
    ) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            // Closed after two minutes with nothing read or written (a stream that writes is never idle).
            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(allTimeout: .seconds(120)))
            try channel.pipeline.syncOperations.addHandler(CloseOnIdleHandler())
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(
                withPipeliningAssistance: true, withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(
                MetricsHTTPHandler(endpoints: endpoints, authenticator: authenticator))
        }
    }

    /// Binds the metrics port on `host:port` (`0` picks a free port) and returns the listening channel.
    public static func bind(
        host: String, port: Int, group: any EventLoopGroup, endpoints: MetricsEndpoints
    ) async throws -> any Channel {
        try await HTTPServer.bind(host: host, port: port, group: group) { channel in
            configure(channel: channel, endpoints: endpoints)
        }
    }
}

/// Serves one metrics connection. Request bodies are read and dropped.
final class MetricsHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let endpoints: MetricsEndpoints
    private var head: HTTPRequestHead?
    private var context: ChannelHandlerContext?
    private var authentication: ConnectionAuthentication?
    /// The `/events` stream of this connection, once one is open (it then owns the connection until it closes).
    private var stream: EventStream?

    init(endpoints: MetricsEndpoints, authenticator: (any ClientAuthenticator)? = nil) {
        self.endpoints = endpoints
        self.authentication = authenticator.map(ConnectionAuthentication.init)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        stream?.stop()
        stream = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        stream?.stop()
        stream = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            self.head = head
        case .body:
            break
        case .end:
            guard let head = self.head else { return }
            self.head = nil
            route(head, context: context)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // HTTPServerProtocolErrorHandler has already answered parser errors with a bare 400.
        context.close(promise: nil)
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let authorization = authentication == nil ? nil : head.headers.first(name: "authorization")
        if case .failure(let error) = authentication?.authenticate(authorization: authorization, channel: context.channel) {
            respondError(error, status: .unauthorized, head: head, context: context)
            return
        }
        let (path, query) = ClientRequestDecoder.splitTarget(head.uri)
        let endpoints = self.endpoints
        if path == "/events", head.method == .GET, let events = endpoints.events {
            serveEvents(events, query: query, head: head, context: context)
            return
        }
        switch path {
        case "/metrics", "/status", "/health":
            guard head.method == .GET else {
                let message = "method \(head.method.rawValue) is not allowed on \(path); use GET"
                respondError(
                    APIError(code: .invalidRequest, message: message), status: .methodNotAllowed, head: head,
                    context: context)
                return
            }
        default:
            respondError(
                APIError(code: .notFound, message: "no route for \(head.method.rawValue) \(path)"),
                status: .notFound, head: head, context: context)
            return
        }
        let allocator = context.channel.allocator
        let future = context.eventLoop.makeFutureWithTask { () -> (HTTPResponseStatus, String, ByteBuffer) in
            var body = allocator.buffer(capacity: 1024)
            switch path {
            case "/metrics":
                body.writeString(await endpoints.metrics())
                return (.ok, PrometheusText.contentType, body)
            case "/status":
                if !ClientResponseEncoder.writeWireJSON(await endpoints.status(), into: &body) {
                    body.writeStaticString("{}")
                }
                return (.ok, "application/json", body)
            default:
                let report = await endpoints.health()
                report.write(into: &body)
                return (report.healthy ? .ok : .serviceUnavailable, "application/json", body)
            }
        }
        future.assumeIsolated().whenSuccess { status, contentType, body in
            guard let context = self.context else { return }
            self.respond(status: status, contentType: contentType, body: body, head: head, context: context)
        }
    }

    /// `GET /events[?after=ID][&follow=false]`: the history after `after` (or `Last-Event-ID`), then, unless
    /// `follow=false`, every new event as it is recorded (`text/event-stream`). With `follow=false` the answer is
    /// one JSON document (`NodeEventsResponse`).
    private func serveEvents(
        _ events: @escaping @Sendable (UInt64) -> NodeEventsResponse, query: Substring, head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        guard let request = EventStreamRequest(query: query, lastEventID: head.headers.first(name: "last-event-id"))
        else {
            respondError(
                APIError(code: .invalidRequest, message: "after must be an event id and follow true or false"),
                status: .badRequest, head: head, context: context)
            return
        }
        if !request.follow {
            var body = context.channel.allocator.buffer(capacity: 4096)
            if !ClientResponseEncoder.writeWireJSON(events(request.after), into: &body) {
                body.writeStaticString("{}")
            }
            respond(status: .ok, contentType: "application/json", body: body, head: head, context: context)
            return
        }
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: "text/event-stream")
        headers.add(name: "cache-control", value: "no-cache")
        context.writeAndFlush(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))),
            promise: nil)
        let stream = EventStream(after: request.after, source: events) { [weak self] buffer in
            guard let self, let context = self.context else { return }
            context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        }
        self.stream = stream
        stream.start(on: context.eventLoop, allocator: context.channel.allocator)
    }

    private func respondError(
        _ error: APIError, status: HTTPResponseStatus, head: HTTPRequestHead, context: ChannelHandlerContext
    ) {
        var body = context.channel.allocator.buffer(capacity: 128)
        ClientResponseEncoder.writeError(error, hint: nil, into: &body)
        respond(status: status, contentType: "application/json", body: body, head: head, context: context)
    }

    private func respond(
        status: HTTPResponseStatus, contentType: String, body: ByteBuffer, head: HTTPRequestHead,
        context: ChannelHandlerContext
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "content-type", value: contentType)
        headers.add(name: "content-length", value: String(body.readableBytes))
        if status == .methodNotAllowed { headers.add(name: "allow", value: "GET") }
        if !head.isKeepAlive { headers.add(name: "connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))),
            promise: nil)
        context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil)
        guard head.isKeepAlive else {
            context.writeAndFlush(wrapOutboundOut(.end(nil))).assumeIsolated().whenComplete { _ in
                self.context?.close(promise: nil)
            }
            return
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

@available(*, unavailable)
extension MetricsHTTPHandler: Sendable {}

/// Closes the connection when `IdleStateHandler` reports it idle.
final class CloseOnIdleHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
