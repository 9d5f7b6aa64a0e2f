import ClusterAPI
import HTTPAPI
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An in-memory dictionary standing in for the Raft node, only for these tests of the HTTP layer.
///
/// Written with `async` functions, so every request goes through `AsyncClientAPIBackend`'s `Task` bridge.
/// Special inputs: key `"slow"` answers after 2 s (to hit the request timeout); node 9 is never caught up;
/// removing node 1 is refused as the last voter.
final class DictionaryBackend: AsyncClientAPIBackend {
    private struct State {
        var entries: [String: String] = [:]
        var index: UInt64 = 0
    }

    private let state = Mutex(State())
    private let hint: LeaderHint?

    init(leader: LeaderHint? = LeaderHint(id: 1, address: "127.0.0.1:9081")) {
        self.hint = leader
    }

    var leaderHint: LeaderHint? { hint }

    func put(key: String, value: String, ttlSecs: UInt64?, deadline: NIODeadline) async -> Result<PutResponse, APIError>
    {
        state.withLock { state in
            state.index += 1
            state.entries[key] = value
            return .success(PutResponse(key: key, index: state.index))
        }
    }

    func get(key: String, consistency: ReadConsistency?, deadline: NIODeadline) async -> Result<GetResponse, APIError> {
        if key == "slow" {
            try? await Task.sleep(for: .seconds(2))
        }
        if key == "consistency" {
            return .success(GetResponse(key: key, value: consistency?.rawValue ?? "default", index: 0))
        }
        return state.withLock { state in
            guard let value = state.entries[key] else {
                return .failure(APIError(code: .keyNotFound, message: "key not found"))
            }
            return .success(GetResponse(key: key, value: value, index: state.index))
        }
    }

    func delete(key: String, deadline: NIODeadline) async -> Result<DeleteResponse, APIError> {
        state.withLock { state in
            state.index += 1
            let deleted = state.entries.removeValue(forKey: key) != nil
            return .success(DeleteResponse(key: key, index: state.index, deleted: deleted))
        }
    }

    func cas(
        key: String, expected: String?, value: String, deadline: NIODeadline
    ) async -> Result<CasResponse, APIError> {
        state.withLock { state in
            state.index += 1
            guard state.entries[key] == expected else {
                return .success(CasResponse(succeeded: false, index: state.index))
            }
            state.entries[key] = value
            return .success(CasResponse(succeeded: true, index: state.index))
        }
    }

    func scan(_ request: ScanRequest, deadline: NIODeadline) async -> Result<ScanResponse, APIError> {
        state.withLock { state in
            let matching = state.entries.filter { $0.key.hasPrefix(request.prefix) && $0.key > (request.after ?? "") }
                .sorted { $0.key < $1.key }
            let limit = request.limit ?? Int.max
            let entries = matching.prefix(limit).map { KeyValue(key: $0.key, value: $0.value) }
            return .success(
                ScanResponse(
                    entries: Array(entries), index: state.index, next: matching.count > limit ? entries.last?.key : nil))
        }
    }

    func cluster() async -> Result<ClusterResponse, APIError> {
        .success(
            ClusterResponse(
                leaderID: hint?.id, term: 3,
                members: [
                    ClusterMember(id: 1, address: "127.0.0.1:9081", role: .leader, status: .active),
                    ClusterMember(id: 4, address: "127.0.0.1:9084", role: .learner, status: .promotable),
                ]))
    }

    func join(_ request: JoinRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError> {
        .success(MembershipChangeResponse(nodeID: request.nodeID, index: 10))
    }

    func promote(_ request: PromoteRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError> {
        guard request.nodeID != 9 else {
            return .failure(
                APIError(
                    code: .notCaughtUp, message: "learner 9 is behind",
                    progress: CatchUpProgress(matchIndex: 5, leaderLastIndex: 50)))
        }
        return .success(MembershipChangeResponse(nodeID: request.nodeID, index: 11))
    }

    func remove(_ request: RemoveRequest, deadline: NIODeadline) async -> Result<MembershipChangeResponse, APIError> {
        guard request.nodeID != 1 else {
            return .failure(APIError(code: .conflict, message: "refusing to remove the last voter"))
        }
        return .success(MembershipChangeResponse(nodeID: request.nodeID, index: 12))
    }

    func transferLeader(
        _ request: TransferLeaderRequest, deadline: NIODeadline
    ) async -> Result<MembershipChangeResponse, APIError> {
        .success(MembershipChangeResponse(nodeID: request.nodeID, index: 13))
    }
}

/// A backend answering on the event loop with already-completed futures (the fast path), whose
/// `forward` tunnels every write to a pretend leader.
final class ForwardingBackend: ClientAPIBackend {
    let leaderHint: LeaderHint? = LeaderHint(id: 2, address: "127.0.0.1:9082")

    func forward(_ request: RawClientRequest, context: ClientRequestContext) -> EventLoopFuture<ForwardedResponse>? {
        guard request.route.isWrite else { return nil }
        var body = ByteBuffer()
        body.writeString(
            "{\"forwarded\":\"\(request.method.rawValue) \(request.uri)\",\"bytes\":\(request.body.readableBytes)}")
        let headers: HTTPHeaders = [
            "content-type": "application/json", "connection": "close", "x-extra": "1",
            "x-split": "a\r\ninjected: 1",
        ]
        return context.eventLoop.makeSucceededFuture(ForwardedResponse(status: .created, headers: headers, body: body))
    }

    func put(_ request: PutRequest, context: ClientRequestContext) -> EventLoopFuture<PutResponse> {
        context.eventLoop.makeSucceededFuture(PutResponse(key: request.key, index: 1))
    }

    func get(key: String, consistency: ReadConsistency?, context: ClientRequestContext) -> EventLoopFuture<GetResponse>
    {
        context.eventLoop.makeSucceededFuture(GetResponse(key: key, value: "local", index: 1))
    }

    func delete(_ request: DeleteRequest, context: ClientRequestContext) -> EventLoopFuture<DeleteResponse> {
        context.eventLoop.makeSucceededFuture(DeleteResponse(key: request.key, index: 1, deleted: false))
    }

    func cas(_ request: CasRequest, context: ClientRequestContext) -> EventLoopFuture<CasResponse> {
        context.eventLoop.makeSucceededFuture(CasResponse(succeeded: false, index: 1))
    }

    func scan(_ request: ScanRequest, context: ClientRequestContext) -> EventLoopFuture<ScanResponse> {
        context.eventLoop.makeSucceededFuture(ScanResponse(entries: [], index: 1))
    }

    func cluster(context: ClientRequestContext) -> EventLoopFuture<ClusterResponse> {
        context.eventLoop.makeSucceededFuture(ClusterResponse(leaderID: 2, term: 1, members: []))
    }

    func join(_ request: JoinRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "not used"))
    }

    func promote(_ request: PromoteRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse>
    {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "not used"))
    }

    func remove(_ request: RemoveRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "not used"))
    }

    func transferLeader(
        _ request: TransferLeaderRequest, context: ClientRequestContext
    ) -> EventLoopFuture<MembershipChangeResponse> {
        context.eventLoop.makeFailedFuture(APIError(code: .unavailable, message: "not used"))
    }
}

// MARK: - Server fixture

/// Binds the client API on an ephemeral loopback port, runs `body` with the port, then closes the listener.
func withClientServer<T: Sendable>(
    backend: any ClientAPIBackend = DictionaryBackend(), limits: ClientHTTPLimits = ClientHTTPLimits(),
    authenticator: (any ClientAuthenticator)? = nil, _ body: (Int) async throws -> T
) async throws -> T {
    let channel = try await HTTPServer.bind(host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton) {
        channel in
        configureClientHTTP(channel: channel, backend: backend, limits: limits, authenticator: authenticator)
    }
    let port = channel.localAddress!.port!
    do {
        let result = try await body(port)
        try await channel.close()
        return result
    } catch {
        try? await channel.close()
        throw error
    }
}
