import ClusterAPI
import DashboardCore
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `GET /status` over a plain POSIX socket, bounded by one deadline for the whole exchange (resolve, connect,
/// send, receive). Blocking; called on poller threads, never on the curses thread.
enum StatusFetcher {
    static func fetch(_ endpoint: Endpoint, timeoutMs: Int) -> PollOutcome {
        if SecureFetch.isEnabled {
            switch SecureFetch.status(host: endpoint.host, port: endpoint.port, timeoutMs: timeoutMs) {
            case .failure(let reason):
                return .failure(reason.description)
            case .success(let response):
                guard response.code == 200 else { return .failure("HTTP \(response.code)") }
                guard let status = try? WireJSON.decode(NodeStatus.self, from: response.body) else {
                    return .failure("bad /status JSON")
                }
                return .status(status)
            }
        }
        let deadline = ContinuousClock.now + .milliseconds(timeoutMs)
        do {
            let response = try get(endpoint, path: "/status", deadline: deadline)
            guard response.code == 200 else { return .failure("HTTP \(response.code)") }
            let status = try WireJSON.decode(NodeStatus.self, from: response.body)
            return .status(status)
        } catch let error as FetchError {
            return .failure(error.description)
        } catch {
            return .failure("bad /status JSON")
        }
    }

    struct FetchError: Error, CustomStringConvertible {
        var description: String
    }

    struct Response {
        var code: Int
        var body: Data
    }

    private static func remainingMs(_ deadline: ContinuousClock.Instant) throws -> Int32 {
        let left = ContinuousClock.now.duration(to: deadline)
        guard left > .zero else { throw FetchError(description: "timed out") }
        let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(ms, 1))
    }

    static func get(_ endpoint: Endpoint, path: String, deadline: ContinuousClock.Instant) throws -> Response {
        let fd = try connect(endpoint, deadline: deadline)
        defer { close(fd) }
        let request =
            "GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        var bytes = Array(request.utf8)
        var sent = 0
        while sent < bytes.count {
            try wait(fd, for: Int16(POLLOUT), deadline: deadline)
            let count = bytes.withUnsafeMutableBytes {
                send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL))
            }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw FetchError(description: "send: \(String(cString: strerror(errno)))")
            }
            sent += count
        }
        var received = Data()
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            if let response = try parse(received, complete: false) { return response }
            try wait(fd, for: Int16(POLLIN), deadline: deadline)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if count < 0 {
                if errno == EAGAIN || errno == EINTR { continue }
                throw FetchError(description: "recv: \(String(cString: strerror(errno)))")
            }
            if count == 0 {
                guard let response = try parse(received, complete: true) else {
                    throw FetchError(description: "connection closed mid-response")
                }
                return response
            }
            received.append(contentsOf: buffer[0..<count])
        }
    }

    /// A response once it is whole: by Content-Length, chunked framing, or (with `complete`) end of stream.
    private static func parse(_ data: Data, complete: Bool) throws -> Response? {
        guard let split = data.firstRange(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[data.startIndex..<split.lowerBound], as: UTF8.self)
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines.first?.split(separator: " ") ?? []
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/"), let code = Int(parts[1]) else {
            throw FetchError(description: "not an HTTP response")
        }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[line[..<colon].lowercased()] = value
        }
        let body = data[split.upperBound...]
        if let length = headers["content-length"].flatMap({ Int($0) }) {
            return body.count >= length ? Response(code: code, body: Data(body.prefix(length))) : nil
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            return dechunk(Data(body)).map { Response(code: code, body: $0) }
        }
        return complete ? Response(code: code, body: Data(body)) : nil
    }

    /// The body of a complete chunked stream, or `nil` while the last chunk has not arrived.
    private static func dechunk(_ data: Data) -> Data? {
        var out = Data()
        var cursor = data.startIndex
        while let lineEnd = data[cursor...].firstRange(of: Data("\r\n".utf8)) {
            let sizeText = String(decoding: data[cursor..<lineEnd.lowerBound], as: UTF8.self)
            guard let size = Int(sizeText.split(separator: ";").first ?? "", radix: 16) else { return nil }
            if size == 0 { return out }
            let start = lineEnd.upperBound
            guard data.distance(from: start, to: data.endIndex) >= size + 2 else { return nil }
            let end = data.index(start, offsetBy: size)
            out.append(data[start..<end])
            cursor = data.index(end, offsetBy: 2)
        }
        return nil
    }

    private static func wait(_ fd: Int32, for events: Int16, deadline: ContinuousClock.Instant) throws {
        while true {
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, try remainingMs(deadline))
            if ready > 0 { return }
            if ready == 0 { throw FetchError(description: "timed out") }
            if errno != EINTR { throw FetchError(description: "poll: \(String(cString: strerror(errno)))") }
        }
    }

    private static func connect(_ endpoint: Endpoint, deadline: ContinuousClock.Instant) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let host = endpoint.host.hasPrefix("[") ? String(endpoint.host.dropFirst().dropLast()) : endpoint.host
        let code = getaddrinfo(host, "\(endpoint.port)", &hints, &list)
        guard code == 0, let first = list else {
            throw FetchError(description: "cannot resolve \(endpoint.host): \(String(cString: gai_strerror(code)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let info = cursor {
            cursor = info.pointee.ai_next
            let fd = socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { continue }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            if systemConnect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 { return fd }
            if errno == EINPROGRESS {
                do {
                    try wait(fd, for: Int16(POLLOUT), deadline: deadline)
                } catch {
                    close(fd)
                    throw error
                }
                var error: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
                if error == 0 { return fd }
                lastError = Self.describe(error)
            } else {
                lastError = Self.describe(errno)
            }
            close(fd)
        }
        throw FetchError(description: lastError)
    }

    private static func describe(_ code: Int32) -> String {
        switch code {
        case ECONNREFUSED: return "connection refused"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        default: return String(cString: strerror(code)).lowercased()
        }
    }
}

#if canImport(Glibc)
private let systemConnect = Glibc.connect
#else
private let systemConnect = Darwin.connect
#endif
