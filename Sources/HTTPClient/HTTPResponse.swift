import Foundation

// MARK: - Response

/// One HTTP/1.1 response: what every client of the tools and the tests reads.
public struct HTTPResponse: Sendable, CustomStringConvertible {
    public var status: Int
    /// The reason phrase (`OK`), as received.
    public var reason: String
    /// Header fields as received: original case, in order, repeats kept.
    public var fields: [HTTPHeaderField]
    public var body: Data

    public init(status: Int, reason: String = "", fields: [HTTPHeaderField] = [], body: Data = Data()) {
        self.status = status
        self.reason = reason
        self.fields = fields
        self.body = body
    }

    /// Header names lower-cased; a repeated header keeps its last value.
    public var headers: [String: String] {
        var result: [String: String] = [:]
        for field in fields { result[field.name.lowercased()] = field.value }
        return result
    }

    /// The first header with this name (case-insensitive).
    public func header(_ name: String) -> String? {
        let wanted = name.lowercased()
        return fields.first { $0.name.lowercased() == wanted }?.value
    }

    /// `X-Leader-Id`, when present and numeric.
    public var leaderIDHeader: UInt64? { header("x-leader-id").flatMap { UInt64($0) } }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    public var description: String { "HTTP \(status) \(reason) \(bodyText.prefix(300))" }
}

/// One header line: `name: value` (the value without surrounding spaces).
public struct HTTPHeaderField: Sendable, Hashable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }
}

// MARK: - Head

/// The status line and headers of a response, and how its body is framed.
public struct HTTPResponseHead: Sendable {
    public enum Framing: Sendable, Equatable {
        /// `Content-Length` (or a status that has no body: 1xx, 204, 304).
        case length(Int)
        case chunked
        /// Neither: the body runs to the end of the connection.
        case untilClose
    }

    public var status: Int
    public var reason: String
    public var fields: [HTTPHeaderField]
    public var framing: Framing
    /// The server said `Connection: close`.
    public var closes: Bool

    /// Parses the bytes before the blank line (the `\r\n\r\n` itself may be included or not).
    public static func parse(_ head: some Collection<UInt8>) throws(HTTPParseError) -> HTTPResponseHead {
        let text = String(decoding: head, as: UTF8.self)
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: true)[...]
        guard let statusLine = lines.popFirst(), statusLine.hasPrefix("HTTP/1.") else {
            throw HTTPParseError(description: "not an HTTP/1.x response: \(text.prefix(60).debugDescription)")
        }
        let parts = statusLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count >= 2, let status = Int(parts[1]), (100...599).contains(status) else {
            throw HTTPParseError(description: "bad status line \(String(statusLine).debugDescription)")
        }
        var result = HTTPResponseHead(
            status: status, reason: parts.count > 2 ? String(parts[2]) : "", fields: [], framing: .untilClose,
            closes: false)
        var length: Int?
        var chunked = false
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else {
                throw HTTPParseError(description: "bad header line \(String(line).debugDescription)")
            }
            let name = String(line[..<colon])
            let value = String(line[line.index(after: colon)...]).trimmingWhitespace
            result.fields.append(HTTPHeaderField(name: name, value: value))
            switch name.lowercased() {
            case "content-length":
                guard let parsed = Int(value), parsed >= 0 else {
                    throw HTTPParseError(description: "bad Content-Length \(value.debugDescription)")
                }
                length = parsed
            case "transfer-encoding":
                chunked = value.lowercased().contains("chunked")
            case "connection":
                result.closes = value.lowercased() == "close"
            default:
                break
            }
        }
        if (100..<200).contains(status) || status == 204 || status == 304 {
            result.framing = .length(0)
        } else if chunked {
            result.framing = .chunked
        } else if let length {
            result.framing = .length(length)
        }
        return result
    }

    /// The size in a chunk-size line (`1a;ext=x`, without its CRLF); `nil` if it is not hex.
    public static func chunkSize(_ line: some Collection<UInt8>) -> Int? {
        let digits = line.prefix { $0 != UInt8(ascii: ";") }
        guard let size = Int(String(decoding: digits, as: UTF8.self).trimmingWhitespace, radix: 16), size >= 0
        else { return nil }
        return size
    }
}

/// The peer did not speak HTTP/1.1 as expected.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String

    public init(description: String) {
        self.description = description
    }
}

// MARK: - Parser

/// Parses whole responses out of a byte buffer: the blocking clients' parser (the bench's NIO pipeline keeps its
/// own streaming state machine over ``HTTPResponseHead``).
public enum HTTPResponseParser {
    /// Head sections larger than this are refused.
    public static let maxHeadBytes = 64 * 1024

    /// The first response in `data` and how many bytes it took; `nil` while more bytes are needed.
    ///
    /// - Parameters:
    ///   - atEOF: the connection has ended, so a body without length is complete.
    ///   - skipInterim: skip `1xx` responses (otherwise one is returned, with an empty body).
    public static func parse(
        _ data: Data, atEOF: Bool = false, skipInterim: Bool = true
    ) throws(HTTPParseError) -> (response: HTTPResponse, consumed: Int)? {
        var start = data.startIndex
        let separator = Data("\r\n\r\n".utf8)
        while true {
            guard let headEnd = data.range(of: separator, in: start..<data.endIndex) else {
                if data.endIndex - start > maxHeadBytes {
                    throw HTTPParseError(description: "header section over \(maxHeadBytes / 1024) KiB")
                }
                return nil
            }
            let head = try HTTPResponseHead.parse(data[start..<headEnd.lowerBound])
            let bodyStart = headEnd.upperBound
            if skipInterim && (100..<200).contains(head.status) {
                start = bodyStart
                continue
            }
            func response(_ body: Data) -> HTTPResponse {
                HTTPResponse(status: head.status, reason: head.reason, fields: head.fields, body: body)
            }
            switch head.framing {
            case .length(let length):
                guard data.endIndex - bodyStart >= length else { return nil }
                let end = bodyStart + length
                return (response(Data(data[bodyStart..<end])), end - data.startIndex)
            case .chunked:
                guard let (body, end) = try decodeChunked(data[bodyStart...]) else { return nil }
                return (response(body), end - data.startIndex)
            case .untilClose:
                guard atEOF else { return nil }
                return (response(Data(data[bodyStart...])), data.endIndex - data.startIndex)
            }
        }
    }

    /// The body and the index after the last chunk (and trailers), or `nil` until the last chunk has arrived.
    private static func decodeChunked(_ data: Data) throws(HTTPParseError) -> (Data, Int)? {
        var body = Data()
        var cursor = data.startIndex
        let crlf = Data("\r\n".utf8)
        while true {
            guard let lineEnd = data.range(of: crlf, in: cursor..<data.endIndex) else { return nil }
            guard let size = HTTPResponseHead.chunkSize(data[cursor..<lineEnd.lowerBound]) else {
                let text = String(decoding: data[cursor..<lineEnd.lowerBound].prefix(20), as: UTF8.self)
                throw HTTPParseError(description: "bad chunk size \(text.debugDescription)")
            }
            let chunkStart = lineEnd.upperBound
            if size == 0 {
                // Trailer lines, then an empty line.
                var trailer = chunkStart
                while true {
                    guard let end = data.range(of: crlf, in: trailer..<data.endIndex) else { return nil }
                    if end.lowerBound == trailer { return (body, end.upperBound) }
                    trailer = end.upperBound
                }
            }
            guard data.endIndex - chunkStart >= size + 2 else { return nil }
            body.append(data[chunkStart..<chunkStart + size])
            cursor = chunkStart + size + 2
        }
    }
}
