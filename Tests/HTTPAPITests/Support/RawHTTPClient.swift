import Foundation
import HTTPClient

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A response as the raw client saw it: the tools' one response type, parsed by their one parser.
typealias RawResponse = HTTPResponse

extension HTTPResponse {
    /// The body as a JSON object (`[:]` when it is not one).
    var json: [String: Any] {
        (try? JSONSerialization.jsonObject(with: body)) as? [String: Any] ?? [:]
    }

    /// The inner object of an error envelope.
    var errorObject: [String: Any] { json["error"] as? [String: Any] ?? [:] }
    var errorCode: String? { errorObject["code"] as? String }
}

enum RawClientError: Error {
    case connectFailed(Int32)
    case closedBeforeResponse
    case timedOut
    case malformedResponse(String)
}

/// A blocking TCP client over POSIX sockets, so tests can send arbitrary bytes (pipelined requests, garbage,
/// oversized uploads). Every call blocks: run it through `blocking { }`, never on the concurrency pool directly.
final class RawHTTPClient: @unchecked Sendable {
    private let fd: Int32
    private var buffered: [UInt8] = []

    /// Connects to `127.0.0.1:port` with a receive timeout of `timeoutSeconds`.
    init(port: Int, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(fd)
            throw RawClientError.connectFailed(code)
        }
        var timeout = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit {
        close(fd)
    }

    // MARK: Sending

    /// Sends all of `bytes`; returns how many were sent before the peer closed or reset (no SIGPIPE).
    @discardableResult
    func send(_ bytes: [UInt8]) -> Int {
        var sent = 0
        while sent < bytes.count {
            let count = bytes[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if count <= 0 { break }
            sent += count
        }
        return sent
    }

    @discardableResult
    func send(_ text: String) -> Int { send(Array(text.utf8)) }

    /// Sends one request with `Content-Length` (when there is a body).
    func sendRequest(_ method: String, _ target: String, body: [UInt8]? = nil, headers: [String] = []) {
        send(Self.request(method, target, body: body, headers: headers))
    }

    /// The bytes of one HTTP/1.1 request.
    static func request(_ method: String, _ target: String, body: [UInt8]? = nil, headers: [String] = []) -> [UInt8] {
        var head = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for header in headers { head += header + "\r\n" }
        if let body { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        return Array(head.utf8) + (body ?? [])
    }

    /// Sends a request and reads its response.
    func exchange(_ method: String, _ target: String, body: String? = nil, headers: [String] = []) throws -> RawResponse
    {
        sendRequest(method, target, body: body.map { Array($0.utf8) }, headers: headers)
        return try readResponse()
    }

    /// Half-closes the sending side.
    func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: Receiving

    /// Reads one response (a `1xx` interim response counts as one, with an empty body), with the shared parser.
    func readResponse() throws -> RawResponse {
        var atEOF = false
        while true {
            do {
                if let (response, consumed) = try HTTPResponseParser.parse(
                    Data(buffered), atEOF: atEOF, skipInterim: false)
                {
                    buffered.removeFirst(consumed)
                    return response
                }
            } catch {
                throw RawClientError.malformedResponse(error.description)
            }
            if atEOF { throw RawClientError.closedBeforeResponse }
            atEOF = try !fill()
        }
    }

    /// Reads raw bytes (framing included) until their text satisfies `done`; throws on timeout or EOF first. For
    /// streams (`text/event-stream`) that never end.
    func readUntil(_ done: (String) -> Bool) throws -> String {
        while !done(String(decoding: buffered, as: UTF8.self)) {
            guard try fill() else { throw RawClientError.closedBeforeResponse }
        }
        return String(decoding: buffered, as: UTF8.self)
    }

    /// `true` when the server closes (EOF or reset) within the receive timeout, after any unread responses.
    func waitForClose() -> Bool {
        buffered = []
        var scratch = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET || errno == EPIPE }
        }
    }

    /// Reads more bytes; `false` on EOF or reset.
    private func fill() throws -> Bool {
        var scratch = [UInt8](repeating: 0, count: 65536)
        let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if count > 0 {
            buffered.append(contentsOf: scratch[..<count])
            return true
        }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw RawClientError.timedOut }
        return false
    }
}

/// Runs blocking socket work on its own thread, keeping the concurrency pool free for the server's tasks.
func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try body() }) }
        thread.start()
    }
}

/// Percent-encodes every byte outside the RFC 3986 unreserved set.
func percentEncode(_ text: String) -> String {
    var result = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"):
            result.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            result += String(format: "%%%02X", byte)
        }
    }
    return result
}
