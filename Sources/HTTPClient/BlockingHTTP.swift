import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small blocking HTTP/1.1 client over POSIX sockets: the one dctl, dtop and the tests use (the bench's load
/// generator runs its own NIO pipeline over ``HTTPResponseHead``).
///
/// One connection per exchange (`Connection: close`), one hard deadline covering name resolution, connect, send
/// and receive, no `SIGPIPE`, nothing to start: a `dctl` invocation costs a few milliseconds. Everything here
/// blocks the calling thread; async callers run it on a thread of its own, never on Swift's cooperative pool.
/// TLS is layered on by `ClusterClient` (`ClientSecurity`), which owns the certificates.

// MARK: - Errors

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

// MARK: - Requests

/// The bytes of one `Connection: close` request; `Content-Length` (and a JSON content type unless `headers` name
/// one) when there is a body.
public func requestBytes(
    method: String, endpoint: Endpoint, path: String, headers: [(String, String)] = [], body: Data? = nil
) -> Data {
    var head = "\(method) \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n"
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
    var bytes = Data((head + "\r\n").utf8)
    if let body { bytes.append(body) }
    return bytes
}

/// Sends `request` over plaintext TCP and reads one response, all before `deadline` (`timeout` only words the
/// errors). If the server stops reading and closes (a 413 before the upload ends), its answer is still read.
public func plainExchange(
    request: Data, endpoint: Endpoint, deadline: ContinuousClock.Instant, timeout: Duration
) throws(TransportError) -> HTTPResponse {
    let socket = try BlockingSocket.connect(endpoint, deadline: deadline, timeout: timeout)
    defer { socket.close() }
    let sent = socket.send(request, deadline: deadline)
    switch socket.receive(deadline: deadline) {
    case .response(let response):
        return response
    case .timedOut:
        throw TransportError(kind: .timedOut, requestSent: sent.count > 0, reason: "no answer within \(formatDuration(timeout))")
    case .malformed(let error):
        throw TransportError(kind: .malformed, requestSent: true, reason: "not an HTTP response: \(error)")
    case .closed(let partial, let code):
        if let failure = sent.failure { throw TransportError(kind: .closed, requestSent: sent.count > 0, reason: failure) }
        let reason =
            code.map(errnoText)
            ?? (partial.isEmpty
                ? "connection closed without an answer (a secure node closes plaintext connections: pass --cacert "
                    + "or a secure --config-dir)"
                : "connection closed before a complete response")
        throw TransportError(kind: .closed, requestSent: true, reason: reason)
    }
}

// MARK: - Socket

/// One connected, non-blocking TCP socket, driven with `poll` against a deadline.
public struct BlockingSocket: Sendable {
    public let fd: Int32

    /// What `send` managed: every byte, or how many before the peer closed, reset or stopped reading.
    public struct SendResult: Sendable {
        public var count: Int
        public var complete: Bool
        /// The error that stopped it (`broken pipe`), `nil` when complete or cut by the deadline or an early answer.
        public var failure: String?
    }

    /// What came back.
    public enum ReceiveResult: Sendable {
        case response(HTTPResponse)
        /// End of stream or reset before a complete response (`errno` for a reset).
        case closed(partial: Data, errno: Int32?)
        case timedOut(partial: Data)
        case malformed(HTTPParseError)
    }

    /// Resolves and connects (IPv4 or IPv6; `localhost` is 127.0.0.1) before `deadline`.
    public static func connect(
        _ endpoint: Endpoint, deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(TransportError) -> BlockingSocket {
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
            if systemConnect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return BlockingSocket(fd: fd) }
            let code = errno
            guard code == EINPROGRESS || code == EINTR else {
                _ = systemClose(fd)
                lastReason = errnoText(code)
                continue
            }
            guard wait(fd, events: Int16(POLLOUT), deadline: deadline) else {
                _ = systemClose(fd)
                throw TransportError(
                    kind: .timedOut, requestSent: false, reason: "no connection within \(formatDuration(timeout))")
            }
            var soError: Int32 = 0
            var length = socklen_t(MemoryLayout<Int32>.size)
            _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soError, &length)
            if soError == 0 { return BlockingSocket(fd: fd) }
            _ = systemClose(fd)
            lastReason = errnoText(soError)
        }
        throw TransportError(kind: .connectFailed, requestSent: false, reason: lastReason)
    }

    /// Sends `bytes` until done, the peer closes or resets, it answers early and stops reading, or the deadline.
    public func send(_ bytes: Data, deadline: ContinuousClock.Instant) -> SendResult {
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            guard let base = buffer.baseAddress else { return SendResult(count: 0, complete: true) }
            while offset < buffer.count {
                #if canImport(Glibc)
                let sent = Glibc.send(fd, base + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
                #else
                let sent = Darwin.send(fd, base + offset, buffer.count - offset, 0)
                #endif
                if sent > 0 {
                    offset += sent
                    continue
                }
                let code = errno
                guard sent < 0 && (code == EAGAIN || code == EWOULDBLOCK || code == EINTR) else {
                    return SendResult(count: offset, complete: false, failure: errnoText(code))
                }
                guard Self.wait(fd, events: Int16(POLLOUT), deadline: deadline) else {
                    return SendResult(count: offset, complete: false)
                }
                // The server may have stopped reading because it already answered.
                var probe = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT), revents: 0)
                if poll(&probe, 1, 0) > 0, probe.revents & Int16(POLLIN) != 0, probe.revents & Int16(POLLOUT) == 0 {
                    return SendResult(count: offset, complete: false)
                }
            }
            return SendResult(count: offset, complete: true)
        }
    }

    /// Shuts down the sending side: the server sees end of stream.
    public func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

    /// Reads until one response is complete (``HTTPResponseParser``), the connection ends, or the deadline.
    public func receive(deadline: ContinuousClock.Instant, skipInterim: Bool = true) -> ReceiveResult {
        var received = Data()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            guard Self.wait(fd, events: Int16(POLLIN), deadline: deadline) else { return .timedOut(partial: received) }
            let count = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            let code = errno
            if count < 0 && (code == EAGAIN || code == EWOULDBLOCK || code == EINTR) { continue }
            if count > 0 { received.append(contentsOf: chunk[0..<count]) }
            do {
                if let (response, _) = try HTTPResponseParser.parse(received, atEOF: count <= 0, skipInterim: skipInterim) {
                    return .response(response)
                }
            } catch {
                return .malformed(error)
            }
            if count == 0 { return .closed(partial: received, errno: nil) }
            if count < 0 { return .closed(partial: received, errno: code) }
        }
    }

    public func close() { _ = systemClose(fd) }

    /// `true` once `events` are ready (or an error is pending); `false` when the deadline passes.
    public static func wait(_ fd: Int32, events: Int16, deadline: ContinuousClock.Instant) -> Bool {
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
}

/// Parses one HTTP/1.1 response; `nil` if more bytes are needed. Skips `1xx` interim responses.
public func parseResponse(_ data: Data, atEOF: Bool) throws(TransportError) -> HTTPResponse? {
    do {
        return try HTTPResponseParser.parse(data, atEOF: atEOF)?.response
    } catch {
        throw TransportError(kind: .malformed, requestSent: true, reason: "not an HTTP response: \(error)")
    }
}

// MARK: - Helpers

/// `connection refused`: `strerror`, lower-cased, as messages print it.
public func errnoText(_ code: Int32) -> String { String(cString: strerror(code)).lowercased() }

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

#if canImport(Glibc)
private let systemConnect = Glibc.connect
private let systemClose = Glibc.close
#else
private let systemConnect = Darwin.connect
private let systemClose = Darwin.close
#endif
