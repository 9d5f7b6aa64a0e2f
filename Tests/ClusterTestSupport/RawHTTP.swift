import Foundation
import HTTPClient

/// The process-level tests' HTTP client: the tools' one blocking client (`HTTPClient`: sockets, deadline, parser)
/// bound to one `host:port`, plus what the bad-input tests need: sending arbitrary bytes (`exchange(_:)`) and telling
/// a server that answers garbage with a response, closes the connection, or hangs apart precisely.
///
/// Everything here blocks the calling thread; async callers go through `offloaded(_:)` so they never block the
/// cooperative pool.

// MARK: - Results

/// Test conveniences on the shared response type.
extension HTTPResponse {
    /// Decodes the body as `T` with plain `JSONDecoder` (ClusterAPI types carry their own snake_case keys).
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: body)
        } catch {
            throw HTTPClientError.badBody("HTTP \(status): cannot decode \(T.self): \(error); body: \(bodyText.prefix(300))")
        }
    }

    /// The SPEC error envelope, read loosely (any `code` string), or `nil` when the body is not one.
    var errorEnvelope: LooseErrorEnvelope? { try? JSONDecoder().decode(LooseErrorEnvelope.self, from: body) }
}

/// The SPEC error envelope, decoded without insisting that `code` is one of `APIErrorCode`'s cases, so a test can
/// report an unexpected code instead of failing to decode.
struct LooseErrorEnvelope: Decodable, Sendable, Hashable {
    struct Inner: Decodable, Sendable, Hashable {
        var code: String
        var message: String
        var leaderID: UInt64?
        var leaderAddress: String?

        enum CodingKeys: String, CodingKey {
            case code, message
            case leaderID = "leader_id"
            case leaderAddress = "leader_address"
        }
    }

    var error: Inner
}

/// What happened to one raw exchange.
enum ExchangeOutcome: Sendable, CustomStringConvertible {
    /// A complete response arrived.
    case response(HTTPResponse)
    /// The server closed (or reset) the connection before a complete response; `partial` holds what did arrive.
    case closed(partial: Data)
    /// The deadline passed with the connection still open and no complete response.
    case timedOut(partial: Data)

    var response: HTTPResponse? {
        if case .response(let response) = self { return response }
        return nil
    }

    var description: String {
        switch self {
        case .response(let response): return response.description
        case .closed(let partial): return "connection closed after \(partial.count) bytes"
        case .timedOut(let partial): return "timed out after \(partial.count) bytes"
        }
    }
}

enum HTTPClientError: Error, CustomStringConvertible {
    /// connect() failed: refused (node down), unreachable, or it did not complete before the deadline.
    case connectFailed(host: String, port: Int, reason: String)
    /// The deadline passed before a complete response.
    case timedOut(host: String, port: Int, after: Duration)
    /// The server closed the connection before a complete response.
    case closed(host: String, port: Int)
    /// The bytes received are not HTTP/1.1.
    case malformed(String)
    /// The body is not what the caller expected.
    case badBody(String)

    var description: String {
        switch self {
        case .connectFailed(let host, let port, let reason): return "connect \(host):\(port) failed: \(reason)"
        case .timedOut(let host, let port, let after): return "\(host):\(port) did not answer within \(after)"
        case .closed(let host, let port): return "\(host):\(port) closed the connection without a response"
        case .malformed(let text): return "malformed HTTP response: \(text)"
        case .badBody(let text): return text
        }
    }

    /// `true` when nothing reached the server's application (connection refused), so a write was not sent.
    var isConnectFailure: Bool {
        if case .connectFailed = self { return true }
        return false
    }
}

// MARK: - Client

/// A blocking HTTP/1.1 client bound to one `host:port`. A value type; safe to share across threads.
struct RawHTTPClient: Sendable {
    var host: String
    var port: Int
    /// Deadline for one whole exchange (connect + send + receive) unless a call passes its own.
    var timeout: Duration

    init(host: String = "127.0.0.1", port: Int, timeout: Duration = .seconds(3)) {
        self.host = host
        self.port = port
        self.timeout = timeout
    }

    var endpoint: Endpoint { Endpoint(host: host, port: port) }

    /// Sends one request and returns the response; throws on connect failure, timeout or a closed connection.
    func request(
        _ method: String, _ target: String, body: Data? = nil, headers: [(String, String)] = [],
        timeout: Duration? = nil
    ) throws -> HTTPResponse {
        let bytes = requestBytes(method: method, endpoint: endpoint, path: target, headers: headers, body: body)
        let limit = timeout ?? self.timeout
        switch try exchange(bytes, timeout: limit, requireConnect: true) {
        case .response(let response): return response
        case .closed: throw HTTPClientError.closed(host: host, port: port)
        case .timedOut: throw HTTPClientError.timedOut(host: host, port: port, after: limit)
        }
    }

    /// Sends `bytes` as they are and reads what comes back.
    ///
    /// - Parameters:
    ///   - halfClose: shut down the sending side after the bytes, so the server sees end-of-stream.
    ///   - requireConnect: throw `connectFailed` when the connection cannot be made (otherwise it also throws;
    ///     the flag exists for symmetry with callers that want to branch).
    /// Sending stops early (without error) if the server closes or resets the connection, or stops reading until
    /// the deadline: whatever it answered is then read with a short grace period.
    func exchange(
        _ bytes: Data, halfClose: Bool = false, timeout: Duration? = nil, requireConnect: Bool = true
    ) throws -> ExchangeOutcome {
        let limit = timeout ?? self.timeout
        let deadline = ContinuousClock.now + limit
        let socket: BlockingSocket
        do {
            socket = try BlockingSocket.connect(endpoint, deadline: deadline, timeout: limit)
        } catch {
            let reason = error.kind == .timedOut ? "no answer before the deadline" : error.reason
            throw HTTPClientError.connectFailed(host: host, port: port, reason: reason)
        }
        defer { socket.close() }
        let sent = socket.send(bytes, deadline: deadline)
        if sent.complete && halfClose { socket.shutdownWrite() }
        // If sending was cut short, the server may already have answered (413, 400) and closed: read anyway,
        // with at least a short grace period.
        let readDeadline = max(deadline, ContinuousClock.now + .milliseconds(sent.complete ? 0 : 500))
        switch socket.receive(deadline: readDeadline) {
        case .response(let response): return .response(response)
        case .closed(let partial, _): return .closed(partial: partial)
        case .timedOut(let partial): return .timedOut(partial: partial)
        case .malformed(let error): throw HTTPClientError.malformed(error.description)
        }
    }
}

// MARK: - Offloading

/// Runs blocking work on its own thread and resumes the caller when it is done, so socket waits never occupy a
/// thread of Swift's cooperative pool (two threads on this two-core machine).
func offloaded<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        let thread = Thread {
            continuation.resume(with: Result { try work() })
        }
        thread.stackSize = 1 << 20
        thread.start()
    }
}
