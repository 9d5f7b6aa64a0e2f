import ClusterAPI
import NIOCore
import NIOHTTP1

// MARK: - Route table

/// Every route of the client API, once: its path and method, the role it needs, what kind of request it is. Both entry
/// points (a client's connection, `ClientHTTPHandler`; a request a follower tunnelled here, `TunnelledRequestProcessor`)
/// route with it, decode with `ClientRequestDecoder` and serve with `ClientRouter`.
public enum ClientRoute: String, CaseIterable, Sendable, Hashable {
    case put = "/put"
    case get = "/get"
    case delete = "/delete"
    case cas = "/cas"
    case scan = "/scan"
    case cluster = "/cluster"
    case join = "/join"
    case promote = "/promote"
    case remove = "/remove"
    case transferLeader = "/transfer-leader"
    /// This node's alarms (node-local, never forwarded).
    case alarms = "/alarms"
    /// Clears this node's alarms once the cause is gone (node-local, never forwarded).
    case disarmAlarms = "/alarm/disarm"
    /// A stream of changes (`text/event-stream`) served by any node from its applied state, never forwarded; not a
    /// `ClientCommand` (see `WatchStream`).
    case watch = "/watch"
    /// A multi-key transaction (etcd's Txn shape), one log entry.
    case txn = "/txn"
    /// A consistent snapshot backup, served by the leader (`SnapshotBackup`).
    case snapshot = "/snapshot"

    public var path: String { rawValue }

    /// The `Content-Type` of a `200` answer.
    public var contentType: String {
        switch self {
        case .watch: return "text/event-stream"
        case .snapshot: return "application/octet-stream"
        default: return "application/json"
        }
    }

    init?(path: Substring) {
        self.init(rawValue: String(path))
    }

    /// The one method the route accepts (any other is `405` with an `Allow` header).
    public var method: HTTPMethod {
        switch self {
        case .get, .scan, .cluster, .alarms, .watch, .snapshot: return .GET
        case .put, .delete, .cas, .join, .promote, .remove, .transferLeader, .disarmAlarms, .txn: return .POST
        }
    }

    /// The least role allowed to use the route (secure mode).
    public var requiredRole: ClientRole {
        switch self {
        case .get, .scan, .cluster, .alarms, .watch: return .readonly
        case .put, .delete, .cas, .txn: return .readwrite
        case .join, .promote, .remove, .transferLeader, .disarmAlarms, .snapshot: return .admin
        }
    }

    /// Changes the replicated state (a node that does not lead forwards it to the leader).
    public var isWrite: Bool {
        switch self {
        case .put, .delete, .cas, .txn, .join, .promote, .remove, .transferLeader: return true
        case .get, .scan, .cluster, .alarms, .disarmAlarms, .watch, .snapshot: return false
        }
    }

    /// A key-value write: the routes that honour `Idempotency-Key`.
    public var isKeyValueWrite: Bool {
        switch self {
        case .put, .delete, .cas, .txn: return true
        default: return false
        }
    }

    /// `nil` when `caller` may use this route, else the `403 forbidden` to answer.
    public func authorize(_ caller: Caller) -> APIError? {
        guard caller.role < requiredRole else { return nil }
        return APIError(
            code: .forbidden,
            message: "\(caller.name) has role \(caller.role); this request needs \(requiredRole)")
    }
}

/// A request whose route is known and whose query and body are not decoded yet.
public struct RoutedTarget: Sendable {
    public var route: ClientRoute
    /// The query string, without `?`.
    var query: Substring
}

/// A decoded and validated request: its command and its `Idempotency-Key`.
struct DecodedClientRequest: Sendable {
    var command: ClientCommand
    var idempotencyKey: String?
}

extension ClientCommand {
    /// The route this command came from.
    public var route: ClientRoute {
        switch self {
        case .put: return .put
        case .get: return .get
        case .delete: return .delete
        case .cas: return .cas
        case .scan: return .scan
        case .cluster: return .cluster
        case .join: return .join
        case .promote: return .promote
        case .remove: return .remove
        case .transferLeader: return .transferLeader
        case .alarms: return .alarms
        case .disarmAlarms: return .disarmAlarms
        case .txn: return .txn
        case .snapshot: return .snapshot
        }
    }

    public var isWrite: Bool { route.isWrite }
    public var isKeyValueWrite: Bool { route.isKeyValueWrite }
    public var requiredRole: ClientRole { route.requiredRole }
    public func authorize(_ caller: Caller) -> APIError? { route.authorize(caller) }
}

// MARK: - Serving

/// Where `ClientRouter` delivers a command's answer: the backend's future and the encoder of its value, so that the
/// entry point encodes the body when it writes it (no extra future per request).
protocol ClientAnswerSink {
    associatedtype Output
    /// `contentType` is the `Content-Type` of a `200` answer (errors are always JSON).
    func answer<Value: Sendable>(
        _ future: EventLoopFuture<Value>, contentType: String,
        _ encode: @escaping @Sendable (Value, inout ByteBuffer) -> Void
    ) -> Output
}

extension ClientAnswerSink {
    func answer<Value: Sendable>(
        _ future: EventLoopFuture<Value>, _ encode: @escaping @Sendable (Value, inout ByteBuffer) -> Void
    ) -> Output {
        answer(future, contentType: "application/json", encode)
    }
}

/// Serves a decoded command: the one place where a route meets its backend method and its response encoder.
enum ClientRouter {
    static func serve<Sink: ClientAnswerSink>(
        _ command: ClientCommand, backend: any ClientAPIBackend, context: ClientRequestContext, into sink: Sink
    ) -> Sink.Output {
        switch command {
        case .put(let request):
            return sink.answer(backend.put(request, context: context), ClientResponseEncoder.writePut)
        case .get(let key, let consistency):
            return sink.answer(
                backend.get(key: key, consistency: consistency, context: context), ClientResponseEncoder.writeGet)
        case .delete(let request):
            return sink.answer(backend.delete(request, context: context), ClientResponseEncoder.writeDelete)
        case .cas(let request):
            return sink.answer(backend.cas(request, context: context), ClientResponseEncoder.writeCas)
        case .scan(let request):
            return sink.answer(
                backend.scan(request, context: context), ClientResponseEncoder.writeScan)
        case .cluster:
            return sink.answer(backend.cluster(context: context), writeWire)
        case .join(let request):
            return sink.answer(backend.join(request, context: context), writeWire)
        case .promote(let request):
            return sink.answer(backend.promote(request, context: context), writeWire)
        case .remove(let request):
            return sink.answer(backend.remove(request, context: context), writeWire)
        case .transferLeader(let request):
            return sink.answer(backend.transferLeader(request, context: context), writeWire)
        case .alarms:
            return sink.answer(backend.alarms(context: context), writeWire)
        case .disarmAlarms:
            return sink.answer(backend.disarmAlarms(context: context), writeWire)
        case .txn(let request):
            return sink.answer(backend.txn(request, context: context), writeWire)
        case .snapshot:
            return sink.answer(
                backend.snapshot(context: context), contentType: ClientRoute.snapshot.contentType,
                SnapshotBackup.write)
        }
    }

    private static func writeWire<Value: Encodable>(_ value: Value, into buffer: inout ByteBuffer) {
        if !ClientResponseEncoder.writeWireJSON(value, into: &buffer) { buffer.writeStaticString("{}") }
    }
}
