import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A minimal blocking HTTP/1.1 client over POSIX sockets, for process-level tests.
///
/// One TCP connection per exchange (`Connection: close`), IPv4 loopback or any IPv4 literal, a hard deadline on
/// connect, send and receive together, and no `SIGPIPE` (every send uses `MSG_NOSIGNAL`). It can also send
/// arbitrary bytes (`exchange(_:)`), which is what the bad-input tests need: a server that answers garbage with a
/// response, closes the connection, or hangs is told apart precisely.
///
/// Everything here blocks the calling thread; async callers go through `offloaded(_:)` so they never block the
/// cooperative pool.

// MARK: - Results

/// A parsed HTTP response.
struct HTTPResponse: Sendable, CustomStringConvertible {
    var status: Int
    var reason: String
    /// Header names as received; look them up with `header(_:)`, which ignores case.
    var headers: [(name: String, value: String)]
    var body: Data

    /// The first header with this name (case-insensitive).
    func header(_ name: String) -> String? {
        headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }

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

    /// `X-Leader-Id`, when present and numeric.
    var leaderIDHeader: UInt64? { header("X-Leader-Id").flatMap { UInt64($0.trimmingCharacters(in: .whitespaces)) } }

    var description: String {
        "HTTP \(status) \(reason) \(bodyText.prefix(300))"
    }
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

    /// Sends one request and returns the response; throws on connect failure, timeout or a closed connection.
    func request(
        _ method: String, _ target: String, body: Data? = nil, headers: [(String, String)] = [],
        timeout: Duration? = nil
    ) throws -> HTTPResponse {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n"
        var hasContentType = false
        for (name, value) in headers {
            head += "\(name): \(value)\r\n"
            if name.lowercased() == "content-type" { hasContentType = true }
        }
        if let body {
            if !hasContentType { head += "Content-Type: application/json\r\n" }
            head += "Content-Length: \(body.count)\r\n"
        } else if method == "POST" || method == "PUT" {
            head += "Content-Length: 0\r\n"
        }
        head += "\r\n"
        var bytes = Data(head.utf8)
        if let body { bytes.append(body) }
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
        let fd = try connectSocket(deadline: deadline)
        defer { close(fd) }

        let sendDeadline = deadline
        let sentAll = sendAll(fd: fd, bytes: bytes, deadline: sendDeadline)
        if sentAll && halfClose {
            _ = shutdown(fd, Int32(SHUT_WR))
        }
        // If sending was cut short, the server may already have answered (413, 400) and closed: read anyway,
        // with at least a short grace period.
        let readDeadline = max(deadline, ContinuousClock.now + .milliseconds(sentAll ? 0 : 500))
        return receive(fd: fd, deadline: readDeadline)
    }

    // MARK: Socket plumbing

    private func connectSocket(deadline: ContinuousClock.Instant) throws -> Int32 {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let resolved = host == "localhost" ? "127.0.0.1" : host
        guard inet_pton(AF_INET, resolved, &address.sin_addr) == 1 else {
            throw HTTPClientError.connectFailed(host: host, port: port, reason: "not an IPv4 literal")
        }
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else {
            throw HTTPClientError.connectFailed(host: host, port: port, reason: "socket(): \(errnoText())")
        }
        let flags = fcntl(fd, F_GETFL, 0)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        if result != 0 {
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                close(fd)
                throw HTTPClientError.connectFailed(host: host, port: port, reason: String(cString: strerror(code)))
            }
            guard waitFor(fd: fd, events: Int16(POLLOUT), deadline: deadline) else {
                close(fd)
                throw HTTPClientError.connectFailed(host: host, port: port, reason: "no answer before the deadline")
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError != 0 {
                close(fd)
                throw HTTPClientError.connectFailed(host: host, port: port, reason: String(cString: strerror(soError)))
            }
        }
        return fd
    }

    /// `true` if every byte was sent; `false` if the peer closed/reset or the deadline passed first.
    private func sendAll(fd: Int32, bytes: Data, deadline: ContinuousClock.Instant) -> Bool {
        var offset = 0
        return bytes.withUnsafeBytes { (buffer: UnsafeRawBufferPointer) -> Bool in
            guard let base = buffer.baseAddress else { return true }
            while offset < buffer.count {
                #if canImport(Glibc)
                let sent = send(fd, base + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                #else
                let sent = send(fd, base + offset, buffer.count - offset, 0)
                #endif
                if sent > 0 {
                    offset += sent
                    continue
                }
                let code = errno
                if sent < 0 && (code == EAGAIN || code == EWOULDBLOCK || code == EINTR) {
                    // The server may have stopped reading because it already answered: check for that too.
                    guard waitFor(fd: fd, events: Int16(POLLOUT), deadline: deadline) else { return false }
                    var probe = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    if poll(&probe, 1, 0) > 0, probe.revents & Int16(POLLIN) != 0,
                        probe.revents & Int16(POLLOUT) == 0
                    {
                        return false
                    }
                    continue
                }
                return false  // EPIPE, ECONNRESET: the server closed the connection
            }
            return true
        }
    }

    private func receive(fd: Int32, deadline: ContinuousClock.Instant) -> ExchangeOutcome {
        var received = Data()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            if let response = try? HTTPResponseParser.parse(received), let complete = response {
                return .response(complete)
            }
            guard waitFor(fd: fd, events: Int16(POLLIN), deadline: deadline) else {
                return .timedOut(partial: received)
            }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                received.append(contentsOf: chunk[0..<count])
                continue
            }
            if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
                continue
            }
            // EOF or reset: a response delimited by end-of-stream is complete now.
            if let response = try? HTTPResponseParser.parse(received, atEOF: true), let complete = response {
                return .response(complete)
            }
            return .closed(partial: received)
        }
    }

    /// Polls until `events` is ready (or an error/hang-up is reported). `false` when the deadline passes.
    private func waitFor(fd: Int32, events: Int16, deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let remaining = ContinuousClock.now.duration(to: deadline)
            if remaining <= .zero { return false }
            let millis = Int32(clamping: max(1, remaining.components.seconds * 1000 + remaining.components.attoseconds / 1_000_000_000_000_000))
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, millis)
            if ready > 0 { return true }
            if ready < 0 && errno != EINTR { return true }  // let the following call report the error
        }
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }

// MARK: - Parser

/// Parses one HTTP/1.1 response from the start of a buffer. Skips `1xx` interim responses.
enum HTTPResponseParser {
    /// The response if `data` holds a complete one, `nil` if more bytes are needed; throws on bytes that are not
    /// HTTP. With `atEOF`, a body without length is complete.
    static func parse(_ data: Data, atEOF: Bool = false) throws -> HTTPResponse?? {
        var start = data.startIndex
        while true {
            let separator = Data("\r\n\r\n".utf8)
            guard let headEnd = data.range(of: separator, in: start..<data.endIndex) else {
                if data.count - start > 64 * 1024 { throw HTTPClientError.malformed("header section over 64 KiB") }
                return .some(nil)
            }
            let headText = String(decoding: data[start..<headEnd.lowerBound], as: UTF8.self)
            var lines = headText.components(separatedBy: "\r\n")
            let statusLine = lines.removeFirst()
            let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                throw HTTPClientError.malformed("status line \(statusLine.debugDescription)")
            }
            let reason = parts.count > 2 ? String(parts[2]) : ""
            var headers: [(name: String, value: String)] = []
            for line in lines where !line.isEmpty {
                guard let colon = line.firstIndex(of: ":") else {
                    throw HTTPClientError.malformed("header line \(line.debugDescription)")
                }
                headers.append(
                    (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)))
            }
            let bodyStart = headEnd.upperBound
            if (100..<200).contains(status) {
                start = bodyStart
                continue
            }
            func value(_ name: String) -> String? {
                headers.first { $0.name.caseInsensitiveCompare(name) == .orderedSame }?.value
            }
            if status == 204 || status == 304 {
                return HTTPResponse(status: status, reason: reason, headers: headers, body: Data())
            }
            if let encoding = value("Transfer-Encoding"), encoding.lowercased().contains("chunked") {
                guard let body = try decodeChunked(data[bodyStart...]) else {
                    return .some(nil)
                }
                return HTTPResponse(status: status, reason: reason, headers: headers, body: body)
            }
            if let lengthText = value("Content-Length") {
                guard let length = Int(lengthText), length >= 0 else {
                    throw HTTPClientError.malformed("Content-Length \(lengthText.debugDescription)")
                }
                guard data.endIndex - bodyStart >= length else { return .some(nil) }
                return HTTPResponse(
                    status: status, reason: reason, headers: headers, body: Data(data[bodyStart..<(bodyStart + length)]))
            }
            guard atEOF else { return .some(nil) }
            return HTTPResponse(status: status, reason: reason, headers: headers, body: Data(data[bodyStart...]))
        }
    }

    /// The decoded body, or `nil` if the terminating chunk has not arrived yet.
    private static func decodeChunked(_ data: Data) throws -> Data? {
        var body = Data()
        var cursor = data.startIndex
        let crlf = Data("\r\n".utf8)
        while true {
            guard let lineEnd = data.range(of: crlf, in: cursor..<data.endIndex) else { return nil }
            let sizeText = String(decoding: data[cursor..<lineEnd.lowerBound], as: UTF8.self)
                .split(separator: ";").first.map(String.init) ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else {
                throw HTTPClientError.malformed("chunk size \(sizeText.debugDescription)")
            }
            let chunkStart = lineEnd.upperBound
            if size == 0 { return body }
            guard data.endIndex - chunkStart >= size + 2 else { return nil }
            body.append(data[chunkStart..<(chunkStart + size)])
            cursor = chunkStart + size + 2
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
