import ClusterAPI
import Foundation
import HTTPAPI
import NIOCore
import NIOPosix
import Testing

/// Secure mode as the HTTP layer sees it, with a token-only authenticator (the TLS part is the node's): who asks is
/// settled before anything else, what they may ask after decoding, and the caller travels with a forwarded request.
@Suite("Client HTTP API: authentication and roles")
struct AuthenticationTests {
    /// Tokens `r`, `w`, `a` for readonly, readwrite, admin; no certificates.
    struct Tokens: ClientAuthenticator {
        func certificateIdentity(of channel: any Channel) -> CertificateIdentity? { nil }
        func authenticate(authorization: String?, certificate: CertificateIdentity?) -> Result<Caller, APIError> {
            switch authorization {
            case "Bearer r": return .success(Caller(name: "reader", role: .readonly))
            case "Bearer w": return .success(Caller(name: "writer", role: .readwrite))
            case "Bearer a": return .success(Caller(name: "admin", role: .admin))
            default: return .failure(APIError(code: .unauthenticated, message: "no"))
            }
        }
    }

    @Test("401 before validation, 403 by route before decoding, 200 when the role allows")
    func rolesGateRoutes() async throws {
        try await withClientServer(authenticator: Tokens()) { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("POST", "/put", body: "not json"),
                    try client.exchange("POST", "/put", body: #"{"key":"k","value":"v"}"#, headers: ["Authorization: Bearer r"]),
                    try client.exchange("POST", "/put", body: #"{"key":"k","value":"v"}"#, headers: ["Authorization: Bearer w"]),
                    try client.exchange("GET", "/get?key=k", headers: ["Authorization: Bearer r"]),
                    try client.exchange("POST", "/promote", body: #"{"node_id":2}"#, headers: ["Authorization: Bearer w"]),
                    try client.exchange("POST", "/put", body: "not json", headers: ["Authorization: Bearer r"]),
                    try client.exchange("POST", "/put", body: "not json", headers: ["Authorization: Bearer w"]),
                ]
            }
            #expect(responses[0].status == 401 && responses[0].errorCode == "unauthenticated")
            #expect(responses[1].status == 403 && responses[1].errorCode == "forbidden")
            #expect(responses[2].status == 200)
            #expect(responses[3].status == 200)
            #expect(responses[4].status == 403)
            // Authenticated, not allowed, and malformed: the route's role is checked before the body is decoded, so
            // a caller learns nothing about a request it may not send.
            #expect(responses[5].status == 403)
            // Allowed and malformed: the decoder's 400.
            #expect(responses[6].status == 400 && responses[6].errorCode == "invalid_request")
        }
    }

    @Test("a forwarded request carries the caller the follower authenticated")
    func callerTravelsWithForwards() async throws {
        let backend = CallerRecordingBackend()
        try await withClientServer(backend: backend, authenticator: Tokens()) { port in
            let response = try await blocking {
                try RawHTTPClient(port: port).exchange(
                    "POST", "/put", body: #"{"key":"k","value":"v"}"#,
                    headers: ["Authorization: Bearer w", "x-dengine-caller: admin:mallory"])
            }
            #expect(response.status == 200)
        }
        #expect(backend.callers == [Caller(name: "writer", role: .readwrite)])
    }

    @Test("the leader checks the forwarded caller's role")
    func tunnelledRequestsAreAuthorized() async throws {
        let processor = TunnelledRequestProcessor(
            backend: DictionaryBackend(), limits: ClientHTTPLimits(), requiresCaller: true)
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let put = Array(#"{"key":"k","value":"v"}"#.utf8)
        let none = try await processor.process(method: "POST", uri: "/put", body: put, on: loop).get()
        #expect(none.0 == 401)
        let reader = try await processor.process(method: "POST", uri: "/put", headers: [(Caller.forwardedHeader, "readonly:r")], body: put, on: loop).get()
        #expect(reader.0 == 403)
        let garbage = try await processor.process(method: "POST", uri: "/put", headers: [(Caller.forwardedHeader, "root:x")], body: put, on: loop).get()
        #expect(garbage.0 == 401)
        let writer = try await processor.process(method: "POST", uri: "/put", headers: [(Caller.forwardedHeader, "readwrite:w")], body: put, on: loop).get()
        #expect(writer.0 == 200)
    }
}

/// Records the caller of every forwarded write and answers it itself.
final class CallerRecordingBackend: ClientAPIBackend, @unchecked Sendable {
    // @unchecked: `callers` is guarded by `lock`.
    private let lock = NSLock()
    private var recorded: [Caller] = []
    var callers: [Caller] { lock.withLock { recorded } }
    let leaderHint: LeaderHint? = nil

    func forward(_ request: RawClientRequest, context: ClientRequestContext) -> EventLoopFuture<ForwardedResponse>? {
        if let caller = request.caller { lock.withLock { recorded.append(caller) } }
        var body = ByteBuffer()
        body.writeString("{}")
        return context.eventLoop.makeSucceededFuture(ForwardedResponse(status: .ok, headers: [:], body: body))
    }

    func put(_ request: PutRequest, context: ClientRequestContext) -> EventLoopFuture<PutResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func get(key: String, consistency: ReadConsistency?, context: ClientRequestContext) -> EventLoopFuture<GetResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func delete(_ request: DeleteRequest, context: ClientRequestContext) -> EventLoopFuture<DeleteResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func cas(_ request: CasRequest, context: ClientRequestContext) -> EventLoopFuture<CasResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func scan(_ request: ScanRequest, context: ClientRequestContext) -> EventLoopFuture<ScanResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func cluster(context: ClientRequestContext) -> EventLoopFuture<ClusterResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func join(_ request: JoinRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func promote(_ request: PromoteRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func remove(_ request: RemoveRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
    func transferLeader(_ request: TransferLeaderRequest, context: ClientRequestContext)
        -> EventLoopFuture<MembershipChangeResponse>
    {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "forwarded only"))
    }
}
