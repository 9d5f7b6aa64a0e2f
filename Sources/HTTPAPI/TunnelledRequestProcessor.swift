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
        let command: ClientCommand
        switch ClientRequestDecoder.decode(method: HTTPMethod(rawValue: method), uri: uri, body: buffer, limits: limits) {
        case .success(let decoded): command = decoded
        case .failure(let rejection): return eventLoop.makeSucceededFuture(errorResponse(rejection.error))
        }
        if requiresCaller {
            let named = headers.first { $0.0.lowercased() == Caller.forwardedHeader }?.1
            guard let caller = named.flatMap(Caller.init(headerValue:)) else {
                let error = APIError(code: .unauthenticated, message: "the forwarded request names no authenticated caller")
                return eventLoop.makeSucceededFuture(errorResponse(error))
            }
            if let refusal = command.authorize(caller) {
                return eventLoop.makeSucceededFuture(errorResponse(refusal))
            }
        }
        var idempotencyKey: String?
        if command.isKeyValueWrite {
            switch ClientRequestContext.idempotencyKey(in: headers) {
            case .success(let key): idempotencyKey = key
            case .failure(let error): return eventLoop.makeSucceededFuture(errorResponse(error))
            }
        }
        let context = ClientRequestContext(
            eventLoop: eventLoop, deadline: NIODeadline.now() + limits.requestTimeout, idempotencyKey: idempotencyKey)
        let backend = self.backend
        switch command {
        case .put(let r): return respond(backend.put(r, context: context), ClientResponseEncoder.writePut)
        case .get(let key, let c):
            return respond(backend.get(key: key, consistency: c, context: context), ClientResponseEncoder.writeGet)
        case .delete(let r): return respond(backend.delete(r, context: context), ClientResponseEncoder.writeDelete)
        case .cas(let r): return respond(backend.cas(r, context: context), ClientResponseEncoder.writeCas)
        case .scan(let p, let l):
            return respond(backend.scan(prefix: p, limit: l, context: context), ClientResponseEncoder.writeScan)
        case .cluster: return respond(backend.cluster(context: context), Self.writeWire)
        case .join(let r): return respond(backend.join(r, context: context), Self.writeWire)
        case .promote(let r): return respond(backend.promote(r, context: context), Self.writeWire)
        case .remove(let r): return respond(backend.remove(r, context: context), Self.writeWire)
        case .transferLeader(let r): return respond(backend.transferLeader(r, context: context), Self.writeWire)
        }
    }

    private func respond<Value: Sendable>(
        _ future: EventLoopFuture<Value>, _ encode: @escaping @Sendable (Value, inout ByteBuffer) -> Void
    ) -> EventLoopFuture<(Int, [(String, String)], [UInt8])> {
        let hint = backend.leaderHint
        return future.map { value in
            var buffer = ByteBuffer()
            encode(value, &buffer)
            return (200, [("Content-Type", "application/json")], buffer.readBytes(length: buffer.readableBytes) ?? [])
        }.recover { error in
            let apiError = error as? APIError ?? APIError(code: .unavailable, message: "the leader failed to serve: \(error)")
            var buffer = ByteBuffer()
            ClientResponseEncoder.writeError(apiError, hint: hint, into: &buffer)
            return (
                apiError.httpStatus, [("Content-Type", "application/json")],
                buffer.readBytes(length: buffer.readableBytes) ?? []
            )
        }
    }

    private func errorResponse(_ error: APIError) -> (Int, [(String, String)], [UInt8]) {
        var buffer = ByteBuffer()
        ClientResponseEncoder.writeError(error, hint: backend.leaderHint, into: &buffer)
        return (error.httpStatus, [("Content-Type", "application/json")], buffer.readBytes(length: buffer.readableBytes) ?? [])
    }

    private static func writeWire<Value: Encodable>(_ value: Value, into buffer: inout ByteBuffer) {
        if !ClientResponseEncoder.writeWireJSON(value, into: &buffer) { buffer.writeStaticString("{}") }
    }
}
