import ClusterAPI
import NIOCore
import NIOHTTP1

// MARK: - Request context

/// The leader a node knows of: sent as `X-Leader-Id` on every response and in error envelopes.
public struct LeaderHint: Sendable, Hashable {
    public var id: UInt64
    /// The leader's client address (`host:port`).
    public var address: String

    public init(id: UInt64, address: String) {
        self.id = id
        self.address = address
    }
}

/// What the HTTP layer hands the backend with every call.
public struct ClientRequestContext: Sendable {
    /// The connection's event loop. A future returned on it is consumed without a thread hop.
    public var eventLoop: any EventLoop
    /// When the HTTP layer gives up and answers `504 timeout` (from `ClientHTTPLimits.requestTimeout`).
    public var deadline: NIODeadline
    /// The request's `Idempotency-Key` header (put, delete, cas), validated by `ClientRequestContext.idempotencyKey(in:)`.
    public var idempotencyKey: String?

    public init(eventLoop: any EventLoop, deadline: NIODeadline, idempotencyKey: String? = nil) {
        self.eventLoop = eventLoop
        self.deadline = deadline
        self.idempotencyKey = idempotencyKey
    }

    /// The header that carries the key (draft-ietf-httpapi-idempotency-key-header).
    public static let idempotencyKeyHeader = "Idempotency-Key"

    /// The `Idempotency-Key` among `headers`, if any: 1 to 255 visible ASCII characters (the draft's quoted form
    /// `"..."` is accepted and unquoted). A malformed or repeated header is a `400 invalid_request`.
    public static func idempotencyKey(in headers: [(String, String)]) -> Result<String?, APIError> {
        let values = headers.filter { $0.0.lowercased() == idempotencyKeyHeader.lowercased() }.map(\.1)
        guard let raw = values.first else { return .success(nil) }
        var key = Substring(raw)
        while key.first == " " || key.first == "\t" { key = key.dropFirst() }
        while key.last == " " || key.last == "\t" { key = key.dropLast() }
        if key.count >= 2, key.first == "\"", key.last == "\"" { key = key.dropFirst().dropLast() }
        guard values.count == 1, (1...255).contains(key.utf8.count), key.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else {
            return .failure(
                APIError(
                    code: .invalidRequest,
                    message: "Idempotency-Key must appear once, with 1 to 255 visible ASCII characters"))
        }
        return .success(String(key))
    }
}

/// A decoded and validated client request: the `ClusterAPI` value each route carries.
public enum ClientCommand: Sendable, Hashable {
    case put(PutRequest)
    /// `consistency` is `nil` when the query did not name one (the node applies its default policy).
    case get(key: String, consistency: ReadConsistency?)
    case delete(DeleteRequest)
    case cas(CasRequest)
    /// `prefix` is `""` when absent (every key); `limit` is `nil` when absent.
    case scan(ScanRequest)
    case cluster
    case join(JoinRequest)
    case promote(PromoteRequest)
    case remove(RemoveRequest)
    case transferLeader(TransferLeaderRequest)
    case alarms
    case disarmAlarms
    /// A validated transaction (`ClientRequestDecoder` checked its keys, values, sizes and compare targets).
    case txn(TxnRequest)
    case snapshot
}

// MARK: - Forwarding

/// A routed request before its query and body are decoded: what a node that does not lead tunnels to the leader,
/// which decodes it (each request is decoded once, by the node that serves it).
public struct RawClientRequest: Sendable {
    public var route: ClientRoute { target.route }
    let target: RoutedTarget
    /// The read consistency a `/get` or `/scan` names, if any and valid (the forwarding decision depends on it). Parsed from the
    /// query when asked: a leader, which never forwards, never parses it twice.
    public var consistency: ReadConsistency? { ClientRequestDecoder.requestedConsistency(target) }
    public var method: HTTPMethod
    /// The request target exactly as received (`/get?key=k&consistency=lease`).
    public var uri: String
    /// The request's headers that the serving node reads (`Idempotency-Key`), as received (not yet validated).
    public var headers: [(String, String)]
    /// The request body exactly as received (empty for `GET`).
    public var body: ByteBuffer
    /// Secure mode: the caller this node authenticated (and authorized for the route). The leader authorizes the
    /// forwarded request against it (`Caller.forwardedHeader`), never against the forwarding node.
    public var caller: Caller?

    init(
        target: RoutedTarget, method: HTTPMethod, uri: String, headers: [(String, String)], body: ByteBuffer,
        caller: Caller?
    ) {
        self.target = target
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
        self.caller = caller
    }
}

/// A response produced by another node (the leader), relayed to the client as is.
///
/// The HTTP layer sets `Content-Length`, `Connection` and `X-Leader-Id` itself; those names and other hop-by-hop
/// headers in `headers` are dropped.
public struct ForwardedResponse: Sendable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, headers: HTTPHeaders = [:], body: ByteBuffer) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

// MARK: - Backend

/// The node behind the client HTTP API.
///
/// Every method returns a future; a failed future carries an `APIError` (any other error is answered as
/// `503 unavailable`). Futures completed on `context.eventLoop` are consumed without a thread hop: that is the
/// fast path. A backend written with `async` functions conforms to `AsyncClientAPIBackend` instead, which
/// implements these methods by starting a `Task` per request.
///
/// The HTTP layer has already validated every request (JSON shape, UTF-8, key and value sizes) when it calls
/// these methods. It also enforces `context.deadline`: a future still pending then is answered `504 timeout`
/// and its late result is dropped.
public protocol ClientAPIBackend: Sendable {
    /// The leader this node knows of. Read once per response, on the connection's event loop: keep it cheap
    /// (a lock-protected or atomic copy, not an actor hop).
    var leaderHint: LeaderHint? { get }
    /// The leader's id alone, for the `x-leader-id` header of every response: cheaper than `leaderHint` (no address
    /// to look up and format). The default takes it from `leaderHint`.
    var leaderID: UInt64? { get }

    /// Called for every routed and authorized request before it is decoded: the response to relay instead
    /// (typically the leader's answer to the tunnelled request; a failed future is answered with its `APIError`, or
    /// `503 unavailable` for any other error), or `nil` to decode the request and serve it here. The default serves
    /// everything here.
    func forward(_ request: RawClientRequest, context: ClientRequestContext) -> EventLoopFuture<ForwardedResponse>?

    func put(_ request: PutRequest, context: ClientRequestContext) -> EventLoopFuture<PutResponse>
    /// An absent key fails with `APIErrorCode.keyNotFound` (answered `404`).
    func get(key: String, consistency: ReadConsistency?, context: ClientRequestContext) -> EventLoopFuture<GetResponse>
    func delete(_ request: DeleteRequest, context: ClientRequestContext) -> EventLoopFuture<DeleteResponse>
    func cas(_ request: CasRequest, context: ClientRequestContext) -> EventLoopFuture<CasResponse>
    /// One page: at most `request.limit` rows (clamped to `ClientHTTPLimits.maxScanRows`, default
    /// `defaultScanRows`) and `ClientHTTPLimits.maxScanBytes`, with `next` when more follow.
    func scan(_ request: ScanRequest, context: ClientRequestContext) -> EventLoopFuture<ScanResponse>
    func cluster(context: ClientRequestContext) -> EventLoopFuture<ClusterResponse>
    func join(_ request: JoinRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse>
    func promote(_ request: PromoteRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse>
    func remove(_ request: RemoveRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse>
    /// `200` body: `node_id` is the new leader, `index` the log index the transfer was observed at.
    func transferLeader(
        _ request: TransferLeaderRequest, context: ClientRequestContext
    ) -> EventLoopFuture<MembershipChangeResponse>
    /// This node's alarms (`GET /alarms`). The default reports none.
    func alarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse>
    /// Clears this node's alarms if their cause is gone (`POST /alarm/disarm`), else `409 conflict`.
    func disarmAlarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse>
    /// Applies a transaction atomically (`POST /txn`). The default answers `404 not_found`.
    func txn(_ request: TxnRequest, context: ClientRequestContext) -> EventLoopFuture<TxnResponse>
    /// A consistent snapshot of the leader's state (`GET /snapshot`). The default answers `404 not_found`.
    func snapshot(context: ClientRequestContext) -> EventLoopFuture<SnapshotBackup>
    /// Registers `stream` for the changes `request` selects (`GET /watch`): the future succeeds once the history
    /// from `since` has been offered to it and live changes follow, or fails (`410 compacted`). The default answers
    /// `404 not_found`.
    func watch(_ request: WatchRequest, stream: WatchStream, context: ClientRequestContext) -> EventLoopFuture<Void>
    /// The most bytes a watch stream may hold for a client that does not read (`[watch] buffer_bytes`).
    var watchBufferBytes: Int { get }
}

extension ClientAPIBackend {
    public var leaderID: UInt64? { leaderHint?.id }

    public func forward(_ request: RawClientRequest, context: ClientRequestContext) -> EventLoopFuture<ForwardedResponse>? {
        nil
    }

    public func alarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse> {
        context.eventLoop.makeSucceededFuture(AlarmsResponse(nodeID: 0, alarms: [], backendBytes: 0, quotaBytes: 0))
    }

    public func disarmAlarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse> {
        alarms(context: context)
    }

    public func txn(_ request: TxnRequest, context: ClientRequestContext) -> EventLoopFuture<TxnResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .notFound, message: "this server has no transactions"))
    }

    public func snapshot(context: ClientRequestContext) -> EventLoopFuture<SnapshotBackup> {
        context.eventLoop.makeFailedFuture(APIError(code: .notFound, message: "this server has no snapshots"))
    }

    public func watch(
        _ request: WatchRequest, stream: WatchStream, context: ClientRequestContext
    ) -> EventLoopFuture<Void> {
        context.eventLoop.makeFailedFuture(APIError(code: .notFound, message: "this server has no watches"))
    }

    public var watchBufferBytes: Int { 1 << 20 }
}

// MARK: - Async backend

/// A `ClientAPIBackend` written with `async` functions returning `Result`s.
///
/// Each request starts one `Task.immediate` on the event loop thread: code before the first suspension runs
/// right there (so it must not block), and a backend that answers without suspending costs about 10-20 % more
/// than a future-returning one. A backend that suspends resumes on the global executor and pays two thread hops
/// (measured here at roughly 60 us of CPU per request on one connection); a backend that can answer on the
/// event loop should implement `ClientAPIBackend` directly.
public protocol AsyncClientAPIBackend: ClientAPIBackend {
    func put(key: String, value: String, ttlSecs: UInt64?, deadline: NIODeadline) async -> Result<PutResponse, APIError>
    /// `consistency` is `nil` when the client did not choose one (server default).
    func get(key: String, consistency: ReadConsistency?, deadline: NIODeadline) async -> Result<GetResponse, APIError>
    func delete(key: String, deadline: NIODeadline) async -> Result<DeleteResponse, APIError>
    func cas(
        key: String, expected: String?, value: String, deadline: NIODeadline
    ) async -> Result<CasResponse, APIError>
    func scan(_ request: ScanRequest, deadline: NIODeadline) async -> Result<ScanResponse, APIError>
    func cluster() async -> Result<ClusterResponse, APIError>
    func join(_ request: JoinRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError>
    func promote(_ request: PromoteRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError>
    func remove(_ request: RemoveRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError>
    func transferLeader(
        _ request: TransferLeaderRequest, deadline: NIODeadline
    ) async -> Result<MembershipChangeResponse, APIError>
}

extension AsyncClientAPIBackend {
    public func put(_ request: PutRequest, context: ClientRequestContext) -> EventLoopFuture<PutResponse> {
        bridge(context) { await $0.put(key: request.key, value: request.value, ttlSecs: request.ttlSecs, deadline: $1) }
    }

    public func get(
        key: String, consistency: ReadConsistency?, context: ClientRequestContext
    ) -> EventLoopFuture<GetResponse> {
        bridge(context) { await $0.get(key: key, consistency: consistency, deadline: $1) }
    }

    public func delete(_ request: DeleteRequest, context: ClientRequestContext) -> EventLoopFuture<DeleteResponse> {
        bridge(context) { await $0.delete(key: request.key, deadline: $1) }
    }

    public func cas(_ request: CasRequest, context: ClientRequestContext) -> EventLoopFuture<CasResponse> {
        bridge(context) {
            await $0.cas(key: request.key, expected: request.expected, value: request.value, deadline: $1)
        }
    }

    public func scan(_ request: ScanRequest, context: ClientRequestContext) -> EventLoopFuture<ScanResponse> {
        bridge(context) { await $0.scan(request, deadline: $1) }
    }

    public func cluster(context: ClientRequestContext) -> EventLoopFuture<ClusterResponse> {
        bridge(context) { backend, _ in await backend.cluster() }
    }

    public func join(_ request: JoinRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse>
    {
        bridge(context) { await $0.join(request, deadline: $1) }
    }

    public func promote(
        _ request: PromoteRequest, context: ClientRequestContext
    ) -> EventLoopFuture<MembershipChangeResponse> {
        bridge(context) { await $0.promote(request, deadline: $1) }
    }

    public func remove(
        _ request: RemoveRequest, context: ClientRequestContext
    ) -> EventLoopFuture<MembershipChangeResponse> {
        bridge(context) { await $0.remove(request, deadline: $1) }
    }

    public func transferLeader(
        _ request: TransferLeaderRequest, context: ClientRequestContext
    ) -> EventLoopFuture<MembershipChangeResponse> {
        bridge(context) { await $0.transferLeader(request, deadline: $1) }
    }

    /// Runs `body` in a `Task` and completes a promise on the connection's event loop with its result.
    private func bridge<Value: Sendable>(
        _ context: ClientRequestContext,
        _ body: @escaping @Sendable (Self, NIODeadline) async -> Result<Value, APIError>
    ) -> EventLoopFuture<Value> {
        let promise = context.eventLoop.makePromise(of: Value.self)
        let deadline = context.deadline
        // `Task.immediate` runs `body` on the event loop thread up to its first suspension, so a backend that
        // answers without suspending costs no thread hop at all; one that suspends resumes on the global executor.
        Task.immediate {
            promise.completeWith(await body(self, deadline).mapError { $0 as any Error })
        }
        return promise.futureResult
    }
}
