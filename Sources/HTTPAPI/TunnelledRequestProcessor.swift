import ClusterAPI
import NIOCore
import NIOHTTP1

/// Serves a client request that a follower tunnelled to this node over the peer connection: the same decoding,
/// backend calls and encoding as `ClientHTTPHandler`, without a socket. The answer goes back to the follower, which
/// relays it to its client.
public struct TunnelledRequestProcessor: Sendable {
    public let backend: any ClientAPIBackend
    public let limits: ClientHTTPLimits
    /// Secure mode: forwarded requests must name their caller (`Caller.forwardedHeader`), whose role is checked
    /// here, on the leader. The peer link they arrive on is authenticated as a member by mutual TLS.
    public let requiresCaller: Bool

    public init(backend: any ClientAPIBackend, limits: ClientHTTPLimits, requiresCaller: Bool = false) {
        self.backend = backend
        self.limits = limits
        self.requiresCaller = requiresCaller
    }

    /// Returns the status, headers and body to relay.
    /// `headers`: the tunnelled request's headers: the follower forwards `Idempotency-Key` and, in secure mode, the
    /// caller it authenticated (`Caller.forwardedHeader`).
    public func process(
        method: String, uri: String, headers: [(String, String)] = [], body: [UInt8], on eventLoop: any EventLoop
    ) -> EventLoopFuture<(Int, [(String, String)], [UInt8])> {
        var buffer = ByteBuffer()
        buffer.writeBytes(body)
        let target: RoutedTarget
        switch ClientRequestDecoder.route(method: HTTPMethod(rawValue: method), uri: uri) {
        case .success(let routed): target = routed
        case .failure(let rejection): return eventLoop.makeSucceededFuture(errorResponse(rejection.error))
        }
        if requiresCaller {
            let named = headers.first { $0.0.lowercased() == Caller.forwardedHeader }?.1
            guard let caller = named.flatMap(Caller.init(headerValue:)) else {
                let error = APIError(code: .unauthenticated, message: "the forwarded request names no authenticated caller")
                return eventLoop.makeSucceededFuture(errorResponse(error))
            }
            if let refusal = target.route.authorize(caller) {
                return eventLoop.makeSucceededFuture(errorResponse(refusal))
            }
        }
        let decoded: DecodedClientRequest
        switch ClientRequestDecoder.decode(target, headers: headers, body: buffer, limits: limits) {
        case .success(let request): decoded = request
        case .failure(let rejection): return eventLoop.makeSucceededFuture(errorResponse(rejection.error))
        }
        let context = ClientRequestContext(
            eventLoop: eventLoop, deadline: NIODeadline.now() + limits.requestTimeout,
            idempotencyKey: decoded.idempotencyKey)
        return ClientRouter.serve(decoded.command, backend: backend, context: context, into: Relay(processor: self))
    }

    /// The sink `ClientRouter` answers a tunnelled request through: the status, headers and body to relay.
    private struct Relay: ClientAnswerSink {
        let processor: TunnelledRequestProcessor

        func answer<Value: Sendable>(
            _ future: EventLoopFuture<Value>, contentType: String,
            _ encode: @escaping @Sendable (Value, inout ByteBuffer) -> Void
        ) -> EventLoopFuture<(Int, [(String, String)], [UInt8])> {
            // One promise and one callback (not a map and a recover: two of each).
            let promise = future.eventLoop.makePromise(of: (Int, [(String, String)], [UInt8]).self)
            future.whenComplete { result in
                switch result {
                case .success(let value):
                    var body = ByteBuffer()
                    encode(value, &body)
                    promise.succeed((200, [("Content-Type", contentType)], Array(body.readableBytesView)))
                case .failure(let error):
                    promise.succeed(
                        processor.errorResponse(
                            error as? APIError
                                ?? APIError(code: .unavailable, message: "the leader failed to serve: \(error)")))
                }
            }
            return promise.futureResult
        }
    }

    fileprivate func errorResponse(_ error: APIError) -> (Int, [(String, String)], [UInt8]) {
        var buffer = ByteBuffer()
        ClientResponseEncoder.writeError(error, hint: backend.leaderHint, into: &buffer)
        return (error.httpStatus, [("Content-Type", "application/json")], buffer.readBytes(length: buffer.readableBytes) ?? [])
    }
}
