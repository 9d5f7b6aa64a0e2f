import ClusterAPI
import Foundation
import HTTPClient

/// The SPEC API of one node: the client port (`listen_address`) and the metrics port (`metrics_address`).
///
/// Every call is `async`, runs its socket work off the cooperative pool (`offloaded`), and has a per-request
/// deadline (`timeout`, default 3 s). Calls return the `HTTPResponse` whatever its status, and throw only for
/// transport failures (`HTTPClientError`: refused, timed out, closed). The `...OK` variants also throw
/// `UnexpectedResponse` for any non-200, for tests that only care about the happy path.
struct NodeClient: Sendable {
    var nodeID: Int
    var client: RawHTTPClient
    var metrics: RawHTTPClient

    init(nodeID: Int, host: String = "127.0.0.1", clientPort: Int, metricsPort: Int, timeout: Duration = .seconds(3)) {
        self.nodeID = nodeID
        self.client = RawHTTPClient(host: host, port: clientPort, timeout: timeout)
        self.metrics = RawHTTPClient(host: host, port: metricsPort, timeout: timeout)
    }

    /// The same client with another per-request deadline.
    func withTimeout(_ timeout: Duration) -> NodeClient {
        var copy = self
        copy.client.timeout = timeout
        copy.metrics.timeout = timeout
        return copy
    }

    // MARK: Key-value API

    func put(_ key: String, _ value: String, ttlSecs: UInt64? = nil) async throws -> HTTPResponse {
        try await post("/put", PutRequest(key: key, value: value, ttlSecs: ttlSecs))
    }

    func get(_ key: String, consistency: ReadConsistency? = nil) async throws -> HTTPResponse {
        var target = "/get?key=\(Self.percentEncoded(key))"
        if let consistency { target += "&consistency=\(consistency.rawValue)" }
        return try await send("GET", target)
    }

    func delete(_ key: String) async throws -> HTTPResponse {
        try await post("/delete", DeleteRequest(key: key))
    }

    func cas(_ key: String, expected: String?, value: String) async throws -> HTTPResponse {
        try await post("/cas", CasRequest(key: key, expected: expected, value: value))
    }

    func scan(prefix: String, limit: Int? = nil) async throws -> HTTPResponse {
        var target = "/scan?prefix=\(Self.percentEncoded(prefix))"
        if let limit { target += "&limit=\(limit)" }
        return try await send("GET", target)
    }

    func cluster() async throws -> HTTPResponse {
        try await send("GET", "/cluster")
    }

    // MARK: Typed happy paths

    /// `POST /put`, requiring `200`.
    @discardableResult
    func putOK(_ key: String, _ value: String) async throws -> PutResponse {
        try Self.require200(try await put(key, value), "put \(key) via node \(nodeID)").decode(PutResponse.self)
    }

    /// `GET /get`, requiring `200`.
    func getOK(_ key: String, consistency: ReadConsistency? = nil) async throws -> GetResponse {
        try Self.require200(try await get(key, consistency: consistency), "get \(key) via node \(nodeID)")
            .decode(GetResponse.self)
    }

    /// `GET /get`: the value, `nil` for `404`, throws for anything else.
    func value(of key: String, consistency: ReadConsistency? = nil) async throws -> String? {
        let response = try await get(key, consistency: consistency)
        if response.status == 404 { return nil }
        return try Self.require200(response, "get \(key) via node \(nodeID)").decode(GetResponse.self).value
    }

    func clusterOK() async throws -> ClusterResponse {
        try Self.require200(try await cluster(), "cluster via node \(nodeID)").decode(ClusterResponse.self)
    }

    // MARK: Metrics port

    /// `GET /status` on the metrics port, decoded as `ClusterAPI.NodeStatus`.
    func status() async throws -> NodeStatus {
        let response = try await offloaded { [metrics] in try metrics.request("GET", "/status") }
        return try Self.require200(response, "status of node \(nodeID)").decode(NodeStatus.self)
    }

    func health() async throws -> HTTPResponse {
        try await offloaded { [metrics] in try metrics.request("GET", "/health") }
    }

    func metricsText() async throws -> String {
        let response = try await offloaded { [metrics] in try metrics.request("GET", "/metrics") }
        return try Self.require200(response, "metrics of node \(nodeID)").bodyText
    }

    // MARK: Raw access

    /// Any request on the client port.
    func send(
        _ method: String, _ target: String, body: Data? = nil, headers: [(String, String)] = [],
        timeout: Duration? = nil
    ) async throws -> HTTPResponse {
        try await offloaded { [client] in
            try client.request(method, target, body: body, headers: headers, timeout: timeout)
        }
    }

    /// Arbitrary bytes on the client port (see `RawHTTPClient.exchange`).
    func exchange(_ bytes: Data, halfClose: Bool = false, timeout: Duration? = nil) async throws -> ExchangeOutcome {
        try await offloaded { [client] in try client.exchange(bytes, halfClose: halfClose, timeout: timeout) }
    }

    private func post<Body: Encodable>(_ target: String, _ body: Body) async throws -> HTTPResponse {
        try await send("POST", target, body: try WireJSON.encode(body))
    }

    // MARK: Helpers

    struct UnexpectedResponse: Error, CustomStringConvertible {
        var what: String
        var response: HTTPResponse
        var description: String { "\(what): \(response)" }
    }

    static func require200(_ response: HTTPResponse, _ what: @autoclosure () -> String) throws -> HTTPResponse {
        guard response.status == 200 else { throw UnexpectedResponse(what: what(), response: response) }
        return response
    }

    /// Percent-encodes a query value (RFC 3986 unreserved characters stay as they are).
    static func percentEncoded(_ text: String) -> String {
        let allowed = CharacterSet(charactersIn: "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}
