import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small blocking HTTP/1.1 client over POSIX sockets, run on its own thread per request.
///
/// One connection per exchange (`Connection: close`), one hard deadline covering name resolution, connect, send
/// and receive, no `SIGPIPE`. No event loop to start, so a `dctl` invocation costs a few milliseconds; requests
/// to several nodes run on several threads at once and never occupy Swift's cooperative pool.

// MARK: - Types

/// A parsed HTTP response.
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Header names lower-cased.
    public var headers: [String: String]
    public var body: Data

    public init(status: Int, headers: [String: String] = [:], body: Data = Data()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// `X-Leader-Id`, when present and numeric.
    public var leaderIDHeader: UInt64? { headers["x-leader-id"].flatMap { UInt64($0) } }
}

/// ``HTTPResponse`` under a name no other module uses (test support has an `HTTPResponse` of its own, and the
/// module name `ClusterClient` is shadowed by the type of that name, so `ClusterClient.HTTPResponse` cannot be written).
public typealias ClientHTTPResponse = HTTPResponse

/// Why an exchange produced no response. `requestSent` says whether the server may have acted on the request:
/// only a failure before sending proves that a write was not proposed.
public struct TransportError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Name resolution or connect failed (refused, unreachable, no route): nothing was sent.
        case connectFailed
        /// The deadline passed.
        case timedOut
        /// The server closed the connection before a complete response.
        case closed
        /// The bytes that came back are not HTTP.
        case malformed
    }

    public var kind: Kind
    public var requestSent: Bool
    /// A few words: `connection refused`, `no answer within 1s`.
    public var reason: String

    public init(kind: Kind, requestSent: Bool, reason: String) {
        self.kind = kind
        self.requestSent = requestSent
        self.reason = reason
    }

    public var description: String { reason }
}

// MARK: - Exchange

/// Sends one request and waits for the response, on a dedicated thread, within `timeout`.
///
/// `security` defaults to the process-wide settings (`ClientSecurity.current`); tests pass their own.
public func httpExchange(
    method: String, endpoint: Endpoint, path: String, body: Data? = nil, headers: [(String, String)] = [],
    timeout: Duration, security: ClientSecurity = .current
) async throws(TransportError) -> HTTPResponse {
    let result: Result<HTTPResponse, TransportError> = await withCheckedContinuation { continuation in
        let thread = Thread {
            let deadline = ContinuousClock.now + timeout
            continuation.resume(
                returning: Result { () throws(TransportError) -> HTTPResponse in
                    try blockingExchange(
                        method: method, endpoint: endpoint, path: path, body: body, headers: headers,
                        deadline: deadline, timeout: timeout, security: security)
                })
        }
        thread.stackSize = 512 * 1024
        thread.start()
    }
    return try result.get()
}

/// The blocking exchange `httpExchange` runs on its thread; callers with a thread of their own (dtop's pollers) use
/// it directly.
public func blockingExchange(
    method: String, endpoint: Endpoint, path: String, body: Data?, headers: [(String, String)] = [],
    deadline: ContinuousClock.Instant, timeout: Duration, security: ClientSecurity = .current
) throws(TransportError) -> HTTPResponse {
    var request = "\(method) \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n"
    request += "User-Agent: dctl\r\nAccept: application/json\r\n"
    if let token = security.token { request += "Authorization: Bearer \(token)\r\n" }
    for (name, value) in headers { request += "\(name): \(value)\r\n" }
    if let body {
        request += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n"
    }
    var bytes = Data((request + "\r\n").utf8)
    if let body { bytes.append(body) }
    if let material = security.tls {
        return try tlsExchange(request: bytes, endpoint: endpoint, material: material, deadline: deadline, timeout: timeout)
    }
    if endpoint.secure {
        throw TransportError(
            kind: .connectFailed, requestSent: false,
            reason: "https://\(endpoint) needs the cluster CA: pass --cacert (or DCTL_CACERT, or a secure --config-dir)")
    }
    let fd = try connectSocket(endpoint, deadline: deadline, timeout: timeout)
    defer { close(fd) }
    try sendAll(fd, bytes, deadline: deadline, timeout: timeout)
    return try receive(fd, deadline: deadline, timeout: timeout)
}

private func connectSocket(
    _ endpoint: Endpoint, deadline: ContinuousClock.Instant, timeout: Duration
) throws(TransportError) -> Int32 {
    var hints = addrinfo()
    hints.ai_family = AF_UNSPEC
    #if canImport(Glibc)
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    #else
    hints.ai_socktype = SOCK_STREAM
    #endif
    var list: UnsafeMutablePointer<addrinfo>?
    let host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host
    let status = getaddrinfo(host, String(endpoint.port), &hints, &list)
    guard status == 0, let first = list else {
        let reason = String(cString: gai_strerror(status))
        throw TransportError(kind: .connectFailed, requestSent: false, reason: "cannot resolve \(host): \(reason)")
    }
    defer { freeaddrinfo(list) }
    var lastReason = "no address"
    var cursor: UnsafeMutablePointer<addrinfo>? = first
    while let info = cursor {
        cursor = info.pointee.ai_next
        let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
        guard fd >= 0 else {
            lastReason = errnoText(errno)
            continue
        }
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL, 0) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        if connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
        let code = errno
        guard code == EINPROGRESS || code == EINTR else {
            close(fd)
            lastReason = errnoText(code)
            continue
        }
        guard waitFor(fd, events: Int16(POLLOUT), deadline: deadline) else {
            close(fd)
            throw TransportError(
                kind: .timedOut, requestSent: false, reason: "no connection within \(formatDuration(timeout))")
        }
        var soError: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
        if soError == 0 { return fd }
        close(fd)
        lastReason = errnoText(soError)
    }
    throw TransportError(kind: .connectFailed, requestSent: false, reason: lastReason)
}

private func sendAll(
    _ fd: Int32, _ bytes: Data, deadline: ContinuousClock.Instant, timeout: Duration
) throws(TransportError) {
    var offset = 0
    let failure: TransportError? = bytes.withUnsafeBytes { buffer in
        guard let base = buffer.baseAddress else { return nil }
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
                if waitFor(fd, events: Int16(POLLOUT), deadline: deadline) { continue }
                return TransportError(
                    kind: .timedOut, requestSent: offset > 0, reason: "no answer within \(formatDuration(timeout))")
            }
            return TransportError(kind: .closed, requestSent: offset > 0, reason: errnoText(code))
        }
        return nil
    }
    if let failure { throw failure }
}

private func receive(_ fd: Int32, deadline: ContinuousClock.Instant, timeout: Duration) throws(TransportError) -> HTTPResponse {
    var received = Data()
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
        guard waitFor(fd, events: Int16(POLLIN), deadline: deadline) else {
            throw TransportError(kind: .timedOut, requestSent: true, reason: "no answer within \(formatDuration(timeout))")
        }
        let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 {
            received.append(contentsOf: chunk[0..<count])
            if let response = try parseResponse(received, atEOF: false) { return response }
            continue
        }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { continue }
        if let response = try parseResponse(received, atEOF: true) { return response }
        let reason =
            count < 0
            ? errnoText(errno)
            : received.isEmpty
                ? "connection closed without an answer (a secure node closes plaintext connections: pass --cacert "
                    + "or a secure --config-dir)"
                : "connection closed before a complete response"
        throw TransportError(kind: .closed, requestSent: true, reason: reason)
    }
}

/// `true` once `events` are ready (or an error is pending); `false` when the deadline passes.
private func waitFor(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant) -> Bool {
    while true {
        let remaining = ContinuousClock.now.duration(to: deadline)
        if remaining <= .zero { return false }
        let millis = Int32(clamping: max(1, milliseconds(remaining)))
        var entry = pollfd(fd: fd, events: events, revents: 0)
        let ready = poll(&entry, 1, millis)
        if ready > 0 { return true }
        if ready < 0 && errno != EINTR { return true }
    }
}

// MARK: - Parsing

/// Parses one HTTP/1.1 response; `nil` if more bytes are needed. Skips `1xx` interim responses.
func parseResponse(_ data: Data, atEOF: Bool) throws(TransportError) -> HTTPResponse? {
    var start = data.startIndex
    let separator = Data("\r\n\r\n".utf8)
    while true {
        guard let headEnd = data.range(of: separator, in: start..<data.endIndex) else { return nil }
        let lines = String(decoding: data[start..<headEnd.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw TransportError(kind: .malformed, requestSent: true, reason: "not an HTTP response: \(lines[0].prefix(60))")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...]
                .trimmingCharacters(in: .whitespaces)
        }
        let bodyStart = headEnd.upperBound
        if (100..<200).contains(status) {
            start = bodyStart
            continue
        }
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            guard data.endIndex - bodyStart >= length else { return nil }
            return HTTPResponse(status: status, headers: headers, body: Data(data[bodyStart..<bodyStart + length]))
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            guard let body = try decodeChunked(data[bodyStart...]) else { return nil }
            return HTTPResponse(status: status, headers: headers, body: body)
        }
        guard atEOF else { return nil }
        return HTTPResponse(status: status, headers: headers, body: Data(data[bodyStart...]))
    }
}

private func decodeChunked(_ data: Data) throws(TransportError) -> Data? {
    var body = Data()
    var cursor = data.startIndex
    let crlf = Data("\r\n".utf8)
    while true {
        guard let lineEnd = data.range(of: crlf, in: cursor..<data.endIndex) else { return nil }
        let sizeText = String(decoding: data[cursor..<lineEnd.lowerBound], as: UTF8.self)
            .split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard let size = Int(sizeText, radix: 16) else {
            throw TransportError(kind: .malformed, requestSent: true, reason: "bad chunk size \(sizeText.prefix(20))")
        }
        if size == 0 { return body }
        let chunkStart = lineEnd.upperBound
        guard data.endIndex - chunkStart >= size + 2 else { return nil }
        body.append(data[chunkStart..<chunkStart + size])
        cursor = chunkStart + size + 2
    }
}

// MARK: - Helpers

private func errnoText(_ code: Int32) -> String { String(cString: strerror(code)).lowercased() }

/// Whole milliseconds in a duration.
public func milliseconds(_ duration: Duration) -> Int64 {
    duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
}

/// `250ms`, `1s`, `1.5s`, `2m`: how durations are written in messages.
public func formatDuration(_ duration: Duration) -> String {
    let ms = milliseconds(duration)
    if ms < 1000 { return "\(ms)ms" }
    if ms % 60_000 == 0 { return "\(ms / 60_000)m" }
    if ms % 1000 == 0 { return "\(ms / 1000)s" }
    return String(format: "%.1fs", Double(ms) / 1000)
}
