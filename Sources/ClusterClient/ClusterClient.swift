import ClusterAPI
import Foundation

/// One node's `/status`, or why there is none.
public struct NodeProbe: Sendable {
    public var target: NodeTarget
    public var status: NodeStatus?
    /// `connection refused`, `no answer within 1s`, `HTTP 500`, `no metrics address known`.
    public var error: String?
    /// This machine's wall clock (ms since the epoch) when the probe was sent and when its answer arrived: the node's
    /// `now_ms` lies in between, which bounds its clock offset (`dctl doctor`).
    public var sentAtMs: Double?
    public var receivedAtMs: Double?

    public init(target: NodeTarget, status: NodeStatus?, error: String?, sentAtMs: Double? = nil, receivedAtMs: Double? = nil) {
        self.target = target
        self.status = status
        self.error = error
        self.sentAtMs = sentAtMs
        self.receivedAtMs = receivedAtMs
    }
}

/// The client `dctl` drives the cluster with: parallel status probes with a deadline each, and key-value
/// operations that go to the first endpoint that answers (any node forwards to the leader).
///
/// Retry rule: a request moves on to the next endpoint only when it certainly did nothing: the connection
/// failed before anything was sent, or the node answered `503` (`no_leader`, `unavailable`: not proposed). A
/// write whose request was sent and then timed out is never resent: its outcome is unknown (exit 5). Reads,
/// which change nothing, move on after any transport failure.
///
/// Key-value writes carry an `Idempotency-Key` (a fresh UUID unless the caller gives one). With `retryWrites`, a
/// write whose outcome is unknown (the request was sent, then the connection dropped or timed out, or `504`) is
/// resent with the same key to the next endpoint, round after round until the deadline: the cluster applies it at
/// most once and a retry answers with the first outcome.
public struct ClusterClient: Sendable {
    public var targets: [NodeTarget]
    /// The deadline of the whole operation (all endpoints tried together).
    public var timeout: Duration
    /// The deadline of each `/status` probe.
    public var probeTimeout: Duration
    /// Resend a write whose outcome is unknown, with the same `Idempotency-Key` (`dctl put --retry`).
    public var retryWrites = false

    public init(targets: [NodeTarget], timeout: Duration, probeTimeout: Duration) {
        self.targets = targets
        self.timeout = timeout
        self.probeTimeout = probeTimeout
    }

    // MARK: Status

    /// `GET /status` of every target at once, in target order; each probe has its own deadline.
    public func probeAll() async -> [NodeProbe] {
        await Self.probe(targets, timeout: probeTimeout)
    }

    static func probe(_ targets: [NodeTarget], timeout: Duration) async -> [NodeProbe] {
        await withTaskGroup(of: (Int, NodeProbe).self) { group in
            for (index, target) in targets.enumerated() {
                group.addTask { (index, await probe(target, timeout: timeout)) }
            }
            var probes = [NodeProbe?](repeating: nil, count: targets.count)
            for await (index, probe) in group { probes[index] = probe }
            return probes.compactMap { $0 }
        }
    }

    static func probe(_ target: NodeTarget, timeout: Duration) async -> NodeProbe {
        guard let metrics = target.metrics else {
            return NodeProbe(target: target, status: nil, error: "no metrics address known")
        }
        do {
            let sent = Date().timeIntervalSince1970 * 1000
            let response = try await httpExchange(method: "GET", endpoint: metrics, path: "/status", timeout: timeout)
            let received = Date().timeIntervalSince1970 * 1000
            guard response.status == 200 else {
                return NodeProbe(target: target, status: nil, error: "HTTP \(response.status) from \(metrics)/status")
            }
            let status = try WireJSON.decode(NodeStatus.self, from: response.body)
            var known = target
            known.id = status.nodeID
            return NodeProbe(target: known, status: status, error: nil, sentAtMs: sent, receivedAtMs: received)
        } catch let error as TransportError {
            return NodeProbe(target: target, status: nil, error: error.reason)
        } catch {
            return NodeProbe(target: target, status: nil, error: "unreadable /status: \(error)")
        }
    }

    /// Probes the targets, then any member the cluster reports (voters and learners) that is not among them,
    /// when `extra` knows where it lives (the config dir). Members still unknown appear in `ClusterView`.
    public func survey(extra: [NodeTarget] = []) async -> [NodeProbe] {
        var probes = await probeAll()
        let known = Set(probes.compactMap { $0.target.id })
        let members = Set(probes.compactMap(\.status).flatMap { $0.voters + $0.learners })
        let missing = extra.filter { target in target.id.map { members.contains($0) && !known.contains($0) } ?? false }
        if !missing.isEmpty {
            probes += await Self.probe(missing, timeout: probeTimeout)
        }
        return probes
    }

    // MARK: Key-value

    /// `POST /put`, with `idempotencyKey` (a fresh UUID when `nil`).
    public func put(key: String, value: String, idempotencyKey: String? = nil) async throws(CommandFailure) -> (
        PutResponse, NodeTarget
    ) {
        let body = try encode(PutRequest(key: key, value: value))
        return try await send(
            "put \(key.debugDescription)", method: "POST", path: "/put", body: body, isWrite: true,
            idempotencyKey: idempotencyKey ?? UUID().uuidString)
    }

    /// `GET /get`; a missing key is a `CommandFailure` with exit 3.
    public func get(key: String, consistency: ReadConsistency?) async throws(CommandFailure) -> (GetResponse, NodeTarget) {
        var path = "/get?key=\(Self.queryEscape(key))"
        if let consistency { path += "&consistency=\(consistency.rawValue)" }
        return try await send("get \(key.debugDescription)", method: "GET", path: path, body: nil, isWrite: false)
    }

    /// `GET /scan`: one page of the keys starting with `prefix`, after `after` (exclusive), at most `limit` rows.
    public func scan(prefix: String, limit: Int?, after: String?, consistency: ReadConsistency?)
        async throws(CommandFailure) -> (ScanResponse, NodeTarget)
    {
        var path = "/scan?prefix=\(Self.queryEscape(prefix))"
        if let limit { path += "&limit=\(limit)" }
        if let after { path += "&after=\(Self.queryEscape(after))" }
        if let consistency { path += "&consistency=\(consistency.rawValue)" }
        return try await send("scan \(prefix.debugDescription)", method: "GET", path: path, body: nil, isWrite: false)
    }

    /// `POST /delete`, with `idempotencyKey` (a fresh UUID when `nil`).
    public func delete(key: String, idempotencyKey: String? = nil) async throws(CommandFailure) -> (
        DeleteResponse, NodeTarget
    ) {
        let body = try encode(DeleteRequest(key: key))
        return try await send(
            "delete \(key.debugDescription)", method: "POST", path: "/delete", body: body, isWrite: true,
            idempotencyKey: idempotencyKey ?? UUID().uuidString)
    }

    /// `POST /cas`, with `idempotencyKey` (a fresh UUID when `nil`).
    public func cas(key: String, expected: String?, value: String, idempotencyKey: String? = nil)
        async throws(CommandFailure) -> (CasResponse, NodeTarget)
    {
        let body = try encode(CasRequest(key: key, expected: expected, value: value))
        return try await send(
            "cas \(key.debugDescription)", method: "POST", path: "/cas", body: body, isWrite: true,
            idempotencyKey: idempotencyKey ?? UUID().uuidString)
    }

    /// `POST /txn`, with `idempotencyKey` (a fresh UUID when `nil`).
    public func txn(_ request: TxnRequest, idempotencyKey: String? = nil) async throws(CommandFailure) -> (
        TxnResponse, NodeTarget
    ) {
        let body = try encode(request)
        return try await send(
            "txn", method: "POST", path: "/txn", body: body, isWrite: true,
            idempotencyKey: idempotencyKey ?? UUID().uuidString)
    }

    /// `GET /snapshot` from the leader: the backup's bytes as sent (`SnapshotHeader`'s format). Nodes that do not
    /// lead answer `503` and the next target is tried.
    public func snapshotBackup() async throws(CommandFailure) -> (Data, NodeTarget) {
        var skipped: [String] = []
        for target in targets {
            let response: HTTPResponse
            do {
                response = try await httpExchange(
                    method: "GET", endpoint: target.client, path: "/snapshot", timeout: timeout)
            } catch {
                skipped.append("\(target.label): \(error.reason)")
                continue
            }
            if response.status == 200 { return (response.body, target) }
            let apiError = Self.apiError(response)
            if apiError?.code == .noLeader || apiError?.code == .unavailable {
                skipped.append("\(target.label): \(apiError.map { "\($0)" } ?? "HTTP \(response.status)")")
                continue
            }
            throw Self.failure("snapshot", target: target, response: response, apiError: apiError)
        }
        throw CommandFailure(
            .unavailable, code: "unreachable", "snapshot: no leader served it (\(skipped.joined(separator: "; ")))",
            hint: "check the nodes with `dctl status`")
    }

    // MARK: Membership

    /// `POST /join`: adds node `id`, reachable at `address`, as a learner.
    public func join(id: UInt64, address: String) async throws(CommandFailure) -> (MembershipChangeResponse, NodeTarget) {
        let body = try encode(JoinRequest(nodeID: id, address: address))
        return try await send("join node \(id)", method: "POST", path: "/join", body: body, isWrite: true)
    }

    /// `POST /promote`: learner to voter; `not_caught_up` (exit 1) while it lags.
    public func promote(id: UInt64) async throws(CommandFailure) -> (MembershipChangeResponse, NodeTarget) {
        let body = try encode(PromoteRequest(nodeID: id))
        return try await send("promote node \(id)", method: "POST", path: "/promote", body: body, isWrite: true)
    }

    /// `POST /remove`.
    public func remove(id: UInt64) async throws(CommandFailure) -> (MembershipChangeResponse, NodeTarget) {
        let body = try encode(RemoveRequest(nodeID: id))
        return try await send("remove node \(id)", method: "POST", path: "/remove", body: body, isWrite: true)
    }

    /// `POST /transfer-leader`.
    public func transferLeader(to id: UInt64) async throws(CommandFailure) -> (MembershipChangeResponse, NodeTarget) {
        let body = try encode(TransferLeaderRequest(nodeID: id))
        return try await send(
            "transfer leadership to node \(id)", method: "POST", path: "/transfer-leader", body: body, isWrite: true)
    }

    /// `GET /cluster` from the first node that answers.
    public func cluster() async throws(CommandFailure) -> (ClusterResponse, NodeTarget) {
        try await send("cluster", method: "GET", path: "/cluster", body: nil, isWrite: false)
    }

    /// `GET /alarms` (or `POST /alarm/disarm` with `disarm`) on one node: its alarms, or why it could not say.
    public func alarms(of target: NodeTarget, disarm: Bool = false) async -> Result<AlarmsResponse, CommandFailure> {
        let what = disarm ? "disarm the alarms of \(target.label)" : "alarms of \(target.label)"
        let response: HTTPResponse
        do {
            response = try await httpExchange(
                method: disarm ? "POST" : "GET", endpoint: target.client, path: disarm ? "/alarm/disarm" : "/alarms",
                body: disarm ? Data("{}".utf8) : nil, headers: [], timeout: timeout)
        } catch {
            return .failure(CommandFailure(.unavailable, code: "unreachable", "\(what): \(error.reason)"))
        }
        guard response.status == 200 else {
            return .failure(Self.failure(what, target: target, response: response, apiError: Self.apiError(response)))
        }
        do {
            return .success(try WireJSON.decode(AlarmsResponse.self, from: response.body))
        } catch {
            return .failure(
                CommandFailure(.failed, code: "bad_response", "\(what): \(target.label) answered a body dctl cannot read"))
        }
    }

    static func queryEscape(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }

    private func encode<T: Encodable>(_ value: T) throws(CommandFailure) -> Data {
        do {
            return try WireJSON.encode(value)
        } catch {
            throw CommandFailure(.failed, code: "invalid_request", "cannot encode the request: \(error)")
        }
    }

    /// Sends one request to the first target that takes it (see the retry rule above).
    func send<Response: Decodable>(
        _ what: String, method: String, path: String, body: Data?, isWrite: Bool, idempotencyKey: String? = nil
    ) async throws(CommandFailure) -> (Response, NodeTarget) {
        let deadline = ContinuousClock.now + timeout
        var skipped: [String] = []
        let headers = idempotencyKey.map { [("Idempotency-Key", $0)] } ?? []
        let resend = isWrite && idempotencyKey != nil && retryWrites
        // Without resending, one pass over the targets; with it, passes until the deadline (each attempt gets at
        // most a third of the total, so that a node that swallows the request leaves time for the others).
        var unknownOutcome: String?
        var pass = 0
        while pass == 0 || (resend && ContinuousClock.now < deadline) {
            pass += 1
            if pass > 1 { try? await Task.sleep(for: .milliseconds(100)) }  // back off between passes, not a sync
            for target in targets {
                let remaining = ContinuousClock.now.duration(to: deadline)
                guard remaining > .zero else { break }
                let attempt = resend ? min(remaining, max(timeout / 3, .milliseconds(500))) : remaining
                let response: HTTPResponse
                do {
                    response = try await httpExchange(
                        method: method, endpoint: target.client, path: path, body: body, headers: headers,
                        timeout: attempt)
                } catch {
                    if resend && error.requestSent {
                        unknownOutcome = "\(target.label): \(error.reason)"
                        skipped.append("\(target.label): \(error.reason) (resent with the same Idempotency-Key)")
                        continue
                    }
                    if isWrite && error.requestSent {
                        throw CommandFailure(
                            .timeout, code: "timeout",
                            "\(what) sent to \(target.label): \(error.reason); the write may or may not have been applied",
                            hint: "check with `dctl get` before retrying; it was not resent to another node")
                    }
                    skipped.append("\(target.label): \(error.reason)")
                    continue
                }
                if response.status == 200 {
                    do {
                        return (try WireJSON.decode(Response.self, from: response.body), target)
                    } catch {
                        throw CommandFailure(
                            .failed, code: "bad_response", "\(what): \(target.label) answered 200 with a body dctl cannot read",
                            hint: "is \(target.client) a dnode client port? (metrics ports are different)")
                    }
                }
                let apiError = Self.apiError(response)
                if apiError?.code == .noLeader || apiError?.code == .unavailable {
                    skipped.append("\(target.label): \(apiError.map { "\($0)" } ?? "HTTP \(response.status)")")
                    continue
                }
                if resend && apiError?.code == .timeout {
                    unknownOutcome = "\(target.label): \(apiError.map { "\($0)" } ?? "HTTP 504")"
                    skipped.append("\(unknownOutcome ?? "") (resent with the same Idempotency-Key)")
                    continue
                }
                throw Self.failure(what, target: target, response: response, apiError: apiError)
            }
        }
        if let unknownOutcome {
            throw CommandFailure(
                .timeout, code: "timeout",
                "\(what): resent with the same Idempotency-Key until the deadline, last \(unknownOutcome); "
                    + "the write may or may not have been applied, and never twice",
                hint: "run it again with the same key, or check with `dctl get`")
        }
        // After several passes (--retry) only the last attempts are worth printing.
        let reasons = skipped.isEmpty ? "no time left" : skipped.suffix(2 * targets.count).joined(separator: "; ")
        let timedOut = ContinuousClock.now >= deadline
        throw CommandFailure(
            timedOut && !isWrite ? .timeout : .unavailable, code: timedOut && !isWrite ? "timeout" : "unreachable",
            "\(what): no node could serve it (\(reasons))\(isWrite ? "; nothing was applied" : "")",
            hint: "check the nodes with `dctl status`; the endpoints were \(targets.map(\.client.description).joined(separator: ","))")
    }

    static func apiError(_ response: HTTPResponse) -> APIError? {
        try? WireJSON.decode(APIErrorEnvelope.self, from: response.body).error
    }

    /// The failure for a non-200 answer other than `503`.
    static func failure(_ what: String, target: NodeTarget, response: HTTPResponse, apiError: APIError?) -> CommandFailure {
        guard let apiError else {
            return CommandFailure(
                .failed, code: "bad_response", "\(what): \(target.label) answered HTTP \(response.status) without an error envelope",
                hint: "is \(target.client) a dnode client port?")
        }
        let exit = ExitStatus(apiError.code)
        let hint: String
        switch apiError.code {
        case .keyNotFound: hint = ""
        case .timeout: hint = "the write may or may not have been applied: check with `dctl get` before retrying"
        case .overloaded: hint = "the cluster is shedding load; nothing was proposed: retry later"
        case .tooLarge: hint = "keys are limited to 4 KiB and values to max_value_bytes (1 MiB by default)"
        case .noSpace: hint = "the NOSPACE alarm is raised: free space or raise quota_backend_bytes, then `dctl alarm disarm`"
        default: hint = ""
        }
        let message = apiError.code == .keyNotFound
            ? "\(what): key not found (answered by \(target.label))"
            : "\(what) rejected by \(target.label): \(apiError)"
        return CommandFailure(exit, code: apiError.code.rawValue, message, hint: hint)
    }
}
