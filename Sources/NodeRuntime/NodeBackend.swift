import ClusterAPI
import Foundation
import HTTPAPI
import KVStore
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NodeConfig
import PeerTransport
import RaftCore

/// The node behind the client HTTP API: validated requests become state-machine operations on `RaftServer`;
/// writes and strong reads that reach a follower are tunnelled to the leader over the peer connection and answered
/// by the node the client called.
// @unchecked Sendable: every stored property is a `let` of a Sendable or thread-safe value (RaftServer confines its state
// to its loop; the leadership box is locked).
final class NodeBackend: ClientAPIBackend, @unchecked Sendable {
    let raft: RaftServer
    /// Tunnels requests to the leader (injected: never read through `raft`).
    let transport: PeerTransport
    let defaultConsistency: ReadConsistency
    let allowClientOverride: Bool
    let requestTimeout: TimeAmount
    /// Set on the backend that serves requests tunnelled from followers: it never forwards again, so two nodes that
    /// disagree about the leader cannot bounce a request between them.
    let forwarding: Bool
    /// `[watch] buffer_bytes`.
    let watchBufferBytes: Int

    init(raft: RaftServer, transport: PeerTransport, defaultConsistency: ReadConsistency, allowClientOverride: Bool,
        requestTimeout: TimeAmount, forwarding: Bool = true, leadership: NIOLockedValueBox<Leadership>? = nil,
        watchBufferBytes: Int = WatchConfig().bufferBytes)
    {
        self.watchBufferBytes = watchBufferBytes
        self.raft = raft
        self.transport = transport
        self.defaultConsistency = defaultConsistency
        self.allowClientOverride = allowClientOverride
        self.requestTimeout = requestTimeout
        self.forwarding = forwarding
        self.leadershipBox = leadership ?? NIOLockedValueBox(Leadership())
    }

    /// What the Raft loop last published about leadership (one lock per request, not a loop hop).
    struct Leadership {
        var isLeader = false
        var leader: NodeID?
        /// This node was removed from the cluster: it forwards nothing and answers every request itself (503).
        var removed = false
    }

    /// The leader as last seen on the Raft loop; read on every response (a lock, not a loop hop).
    private let leadershipBox: NIOLockedValueBox<Leadership>

    /// A backend sharing this one's view of the leader that never forwards (for tunnelled requests).
    func localOnly() -> NodeBackend {
        NodeBackend(
            raft: raft, transport: transport, defaultConsistency: defaultConsistency,
            allowClientOverride: allowClientOverride, requestTimeout: requestTimeout, forwarding: false,
            leadership: leadershipBox, watchBufferBytes: watchBufferBytes)
    }

    func updateLeadership(isLeader: Bool, leader: NodeID?, removed: Bool) {
        leadershipBox.withLockedValue { $0 = Leadership(isLeader: isLeader, leader: leader, removed: removed) }
    }

    public var leaderID: UInt64? { leadershipBox.withLockedValue { $0.leader } }

    public var leaderHint: LeaderHint? {
        let state = leadershipBox.withLockedValue { $0 }
        guard let id = state.leader else { return nil }
        return LeaderHint(id: id, address: raft.address(of: id) ?? "")
    }

    func consistency(_ requested: ReadConsistency?) -> ReadConsistency {
        guard allowClientOverride, let requested else { return defaultConsistency }
        return requested
    }

    // MARK: - Forwarding

    func forward(_ request: RawClientRequest, context: ClientRequestContext) -> EventLoopFuture<ForwardedResponse>? {
        guard forwarding else { return nil }
        let needsLeader: Bool
        switch request.route {
        // With follower reads this node serves them itself, after asking the leader for a read index.
        case .get, .scan: needsLeader = consistency(request.consistency) != .eventual && !raft.followerReads
        default: needsLeader = request.route.isWrite
        }
        guard needsLeader else { return nil }
        // A node with the NOSPACE alarm refuses writes itself, wherever the leader is.
        if request.route.isKeyValueWrite, let refusal = raft.noSpaceRefusal() {
            return context.eventLoop.makeFailedFuture(refusal)
        }
        let state = leadershipBox.withLockedValue { $0 }
        // A removed node forwards nothing: it answers every request itself, with 503.
        guard !state.isLeader, !state.removed, let leader = state.leader else { return nil }
        var body = request.body
        let bytes = body.readBytes(length: body.readableBytes) ?? []
        // Secure mode: the caller this node authenticated travels along; the leader checks its role.
        let headers = request.caller.map { [(Caller.forwardedHeader, $0.headerValue)] } ?? []
        let tunnelled = TunnelledRequest(
            method: request.method.rawValue, uri: request.uri,
            headers: headers + request.headers, body: bytes)
        let isWrite = request.route.isWrite
        // One promise on the connection's loop, completed with the relayed answer or the error (no hop, no chain).
        let promise = context.eventLoop.makePromise(of: ForwardedResponse.self)
        transport.forward(tunnelled, to: leader, timeout: requestTimeout).whenComplete { result in
            switch result {
            case .success(let response):
                var headers = HTTPHeaders()
                for (name, value) in response.headers { headers.add(name: name, value: value) }
                var buffer = ByteBuffer()
                buffer.writeBytes(response.body)
                promise.succeed(
                    ForwardedResponse(
                        status: HTTPResponseStatus(statusCode: response.status), headers: headers, body: buffer))
            case .failure(let error):
                if let forwardError = error as? ForwardError, !forwardError.mayHaveBeenSent {
                    promise.fail(
                        APIError(
                            code: .unavailable,
                            message: "the leader (node \(leader)) is unreachable; the request was not sent",
                            leaderID: leader, leaderAddress: self.raft.address(of: leader)))
                    return
                }
                promise.fail(
                    APIError(
                        code: .timeout,
                        message: isWrite
                            ? "no answer from the leader (node \(leader)); the write may or may not be applied"
                            : "no answer from the leader (node \(leader))",
                        leaderID: leader, leaderAddress: self.raft.address(of: leader)))
            }
        }
        return promise.futureResult
    }

    // MARK: - Writes

    /// Proposes `command`, tagged with the request's `Idempotency-Key` and a fingerprint of `request` (its route and
    /// fields as the client sent them). A replayed outcome answers with the first index and result; a key first
    /// used with another request fails with `422 idempotency_key_reused`.
    ///
    /// `command` is built from the proposal's log-time stamp (a TTL counts from it). The answer is `respond` applied
    /// to the index and result, on `context.eventLoop`. `request` is only evaluated when there is a key.
    private func propose<Response: Sendable>(
        request: () -> [Bytes], context: ClientRequestContext,
        _ command: @escaping @Sendable (_ stampMs: UInt64) -> KVCommand,
        respond: @escaping @Sendable (LogIndex, KVResult) -> Response
    ) -> EventLoopFuture<Response> {
        let tag = context.idempotencyKey.map {
            IdempotencyTag(key: Array($0.utf8), fingerprint: IdempotencyTag.fingerprint(request()))
        }
        let remaining = context.deadline.uptimeNanoseconds > NIODeadline.now().uptimeNanoseconds
            ? Int64((context.deadline.uptimeNanoseconds - NIODeadline.now().uptimeNanoseconds) / 1_000_000) : 1
        // One future on the connection's loop and one transformation: the Raft loop completes the promise there.
        return raft.write(timeoutMs: max(1, remaining - 50), on: context.eventLoop) { stamp in
            KVOperation(timestampMs: stamp, command: command(stamp), idempotency: tag)
        }.flatMapThrowing { index, result in
            switch result {
            case .expiredOnArrival:
                throw APIError(
                    code: .invalidRequest,
                    message: "ttl_secs has already passed by the cluster's log time; the put was not applied")
            case .replayed(let first, let outcome): return respond(first, outcome)
            case .idempotencyKeyReused(let first):
                throw APIError(
                    code: .idempotencyKeyReused,
                    message: "Idempotency-Key '\(context.idempotencyKey ?? "")' was first used at index \(first) "
                        + "with a different request")
            default: return respond(index, result)
            }
        }
    }

    public func put(_ request: PutRequest, context: ClientRequestContext) -> EventLoopFuture<PutResponse> {
        if let ttl = request.ttlSecs, ttl == 0 || ttl >= 100 * 365 * 86_400 {
            return context.eventLoop.makeFailedFuture(
                APIError(code: .invalidRequest, message: "ttl_secs must be between 1 and 3153600000"))
        }
        // The TTL counts from the proposal's log-time stamp (LogClock), the time every expiry check uses.
        let ttlMs = request.ttlSecs.map { $0 * 1000 }
        let key = request.key
        let keyBytes = Array(key.utf8)
        let value = Array(request.value.utf8)
        let ttlSecs = request.ttlSecs
        return propose(
            request: { [Array("put".utf8), keyBytes, value, Array("\(ttlSecs ?? 0)".utf8)] }, context: context
        ) { stamp in
            // Saturating: the stamp follows log time, which a snapshot or an entry from elsewhere can carry near the end
            // of UInt64; a trap here would kill the node on its Raft loop.
            .put(key: keyBytes, value: value, expiresAtMs: ttlMs.map { ttl in
                let (sum, overflow) = stamp.addingReportingOverflow(ttl)
                return overflow ? .max : sum
            })
        } respond: { index, _ in PutResponse(key: key, index: index) }
    }

    public func delete(_ request: DeleteRequest, context: ClientRequestContext) -> EventLoopFuture<DeleteResponse> {
        let key = request.key
        let keyBytes = Array(key.utf8)
        return propose(request: { [Array("delete".utf8), keyBytes] }, context: context) { _ in
            .delete(key: keyBytes)
        } respond: { index, result in
            if case .deleted(let existed) = result { return DeleteResponse(key: key, index: index, deleted: existed) }
            return DeleteResponse(key: key, index: index, deleted: false)
        }
    }

    public func cas(_ request: CasRequest, context: ClientRequestContext) -> EventLoopFuture<CasResponse> {
        let command = KVCommand.cas(
            key: Array(request.key.utf8), expected: request.expected.map { Array($0.utf8) },
            value: Array(request.value.utf8))
        let fields: () -> [Bytes] = {
            [
                Array("cas".utf8), Array(request.key.utf8),
                request.expected.map { [UInt8(1)] + Array($0.utf8) } ?? [UInt8(0)], Array(request.value.utf8),
            ]
        }
        return propose(request: fields, context: context) { _ in command } respond: { index, result in
            if case .cas(let succeeded) = result { return CasResponse(succeeded: succeeded, index: index) }
            return CasResponse(succeeded: false, index: index)
        }
    }

    // MARK: - Transactions

    public func txn(_ request: TxnRequest, context: ClientRequestContext) -> EventLoopFuture<TxnResponse> {
        let txn: KVTransaction
        do {
            txn = try Self.transaction(request)
        } catch {
            return context.eventLoop.makeFailedFuture(error)
        }
        let fields = { [Array("txn".utf8), KVOperation(timestampMs: 0, command: .txn(txn)).encoded] }
        return propose(request: fields, context: context) { _ in .txn(txn) } respond: { index, result in
            guard case .txn(let succeeded, let results) = result else {
                return TxnResponse(succeeded: false, results: [], index: index)
            }
            let ops = succeeded ? request.success : request.failure
            return TxnResponse(
                succeeded: succeeded,
                results: zip(ops, results).map { op, result in
                    switch result {
                    case .put: return TxnOpResult(op: .put, key: op.key)
                    case .delete(let existed): return TxnOpResult(op: .delete, key: op.key, deleted: existed)
                    case .get(let value, let modIndex):
                        return TxnOpResult(
                            op: .get, key: op.key, value: value.map { String(decoding: $0, as: UTF8.self) },
                            modIndex: modIndex)
                    }
                },
                index: index)
        }
    }

    /// The state-machine form of a transaction the decoder validated; a compare whose target does not fit its `op`
    /// (which the decoder refuses) is a `400` here too.
    static func transaction(_ request: TxnRequest) throws -> KVTransaction {
        let compare = try request.compare.map { c -> KVCompare in
            let target: KVCompare.Target
            switch (c.op, c.target) {
            case (.value, .string(let text)): target = .value(Array(text.utf8))
            case (.index, .integer(let index)): target = .index(index)
            case (.exists, .bool(let flag)): target = .exists(flag)
            default:
                throw APIError(code: .invalidRequest, message: "compare on '\(c.key)': the target does not fit op \(c.op)")
            }
            let op: KVCompare.Operator
            switch c.cmp {
            case .equal: op = .equal
            case .notEqual: op = .notEqual
            case .less: op = .less
            case .greater: op = .greater
            }
            return KVCompare(key: Array(c.key.utf8), op: op, target: target)
        }
        func ops(_ list: [TxnOp]) -> [KVTxnOp] {
            list.map { op in
                switch op.op {
                case .put: return .put(key: Array(op.key.utf8), value: Array((op.value ?? "").utf8))
                case .delete: return .delete(key: Array(op.key.utf8))
                case .get: return .get(key: Array(op.key.utf8))
                }
            }
        }
        return KVTransaction(compare: compare, success: ops(request.success), failure: ops(request.failure))
    }

    // MARK: - Watches and backups

    public func watch(
        _ request: WatchRequest, stream: WatchStream, context: ClientRequestContext
    ) -> EventLoopFuture<Void> {
        raft.watch(request, stream: stream).hop(to: context.eventLoop)
    }

    public func snapshot(context: ClientRequestContext) -> EventLoopFuture<SnapshotBackup> {
        let nodeID = raft.settings.raft.id
        return raft.backup().hop(to: context.eventLoop).map { image, meta, keys, stateHash in
            var addresses: [String: String] = [:]
            for (id, address) in meta.membership.addresses { addresses[String(id)] = address }
            let header = SnapshotHeader(
                index: meta.index, term: meta.term, voters: meta.membership.voters.sorted(),
                learners: meta.membership.learners.sorted(), addresses: addresses, keyCount: keys,
                stateHash: StatusReport.hashText(stateHash),
                checksum: KVStateMachine.checksumText(of: image), imageBytes: image.count, nodeID: nodeID)
            return SnapshotBackup(header: header, image: image)
        }
    }

    // MARK: - Reads

    public func get(key: String, consistency requested: ReadConsistency?, context: ClientRequestContext)
        -> EventLoopFuture<GetResponse>
    {
        let keyBytes = Array(key.utf8)
        return raft.read(consistency(requested), on: context.eventLoop) { sm, logTime -> (Bytes?, LogIndex) in
            (sm.get(keyBytes, nowMs: logTime), sm.appliedIndex)
        }
            .flatMapThrowing { value, index in
                guard let value else { throw APIError(code: .keyNotFound, message: "key '\(key)' not found") }
                return GetResponse(key: key, value: String(decoding: value, as: UTF8.self), index: index)
            }
    }

    /// The Raft loop only finds the page (O(log n + rows)) and takes references to its rows, capped by count and
    /// bytes; converting and encoding them, the costly part, happens on the connection's event loop.
    public func scan(_ request: ScanRequest, context: ClientRequestContext) -> EventLoopFuture<ScanResponse> {
        let prefix = Array(request.prefix.utf8)
        let after = request.after.map { Array($0.utf8) }
        let limit = min(request.limit ?? ClientHTTPLimits.defaultScanRows, ClientHTTPLimits.maxScanRows)
        return raft.read(consistency(request.consistency), on: context.eventLoop) { sm, logTime in
            let page = sm.scanPage(
                prefix: prefix, after: after, limit: limit, maxBytes: ClientHTTPLimits.maxScanBytes, nowMs: logTime)
            return ScanPage(rows: page.rows, more: page.more, index: sm.appliedIndex)
        }.map { page in
            let entries = page.rows.map {
                KeyValue(key: String(decoding: $0.key, as: UTF8.self), value: String(decoding: $0.value, as: UTF8.self))
            }
            return ScanResponse(entries: entries, index: page.index, next: page.more ? entries.last?.key : nil)
        }
    }

    public func cluster(context: ClientRequestContext) -> EventLoopFuture<ClusterResponse> {
        raft.cluster().hop(to: context.eventLoop)
    }

    // MARK: - Membership

    public func join(_ request: JoinRequest, context: ClientRequestContext) -> EventLoopFuture<MembershipChangeResponse> {
        guard request.nodeID != 0 else {
            return context.eventLoop.makeFailedFuture(APIError(code: .invalidRequest, message: "node_id must not be 0"))
        }
        guard let address = HostPort(request.address) else {
            return context.eventLoop.makeFailedFuture(
                APIError(
                    code: .invalidRequest,
                    message: "address \"\(request.address)\" is not host:port (e.g. 127.0.0.1:9084 or [::1]:9084)"))
        }
        return raft.join(request.nodeID, address: address.description, timeoutMs: membershipTimeoutMs(context))
            .hop(to: context.eventLoop)
    }

    public func promote(_ request: PromoteRequest, context: ClientRequestContext)
        -> EventLoopFuture<MembershipChangeResponse>
    {
        raft.promote(request.nodeID, timeoutMs: membershipTimeoutMs(context)).hop(to: context.eventLoop)
    }

    public func remove(_ request: RemoveRequest, context: ClientRequestContext)
        -> EventLoopFuture<MembershipChangeResponse>
    {
        raft.remove(request.nodeID, timeoutMs: membershipTimeoutMs(context)).hop(to: context.eventLoop)
    }

    public func transferLeader(_ request: TransferLeaderRequest, context: ClientRequestContext)
        -> EventLoopFuture<MembershipChangeResponse>
    {
        raft.transferLeadership(to: request.nodeID, timeoutMs: requestTimeout.nanoseconds / 1_000_000)
            .hop(to: context.eventLoop)
    }

    func alarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse> {
        raft.alarms().hop(to: context.eventLoop)
    }

    func disarmAlarms(context: ClientRequestContext) -> EventLoopFuture<AlarmsResponse> {
        raft.disarm().hop(to: context.eventLoop)
    }

    /// The time left before the client's deadline, less a margin to answer in.
    private func membershipTimeoutMs(_ context: ClientRequestContext) -> Int64 {
        let now = NIODeadline.now().uptimeNanoseconds
        let end = context.deadline.uptimeNanoseconds
        return end > now ? max(1, Int64((end - now) / 1_000_000) - 50) : 1
    }

    static func wallClockMillis() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) * 1000 + UInt64(ts.tv_nsec) / 1_000_000
    }
}

/// A scan page as the Raft loop hands it over: rows that share the state machine's storage.
private struct ScanPage: Sendable {
    var rows: [(key: Bytes, value: Bytes)]
    var more: Bool
    var index: LogIndex
}
