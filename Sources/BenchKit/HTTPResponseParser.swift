import HTTPClient
import NIOCore

/// One HTTP/1.1 response as the load generator needs it: the status and the size of the body it skipped.
public struct ParsedResponse: Sendable, Equatable {
    public var status: Int
    public var bodyLength: Int
    /// The server said `Connection: close`: no further response will come on this connection.
    public var closes: Bool
}

/// An incremental HTTP/1.1 response parser: feed it bytes as they arrive, take out complete responses.
///
/// A streaming state machine over NIO buffers that skips body bytes (the load generator only needs the status);
/// the head and chunk-size lines are read by the tools' one parser (`HTTPResponseHead`). Heads are limited to
/// 64 KiB.
public struct HTTPResponseParser: Sendable {
    private enum State: Sendable {
        case head
        case body(ParsedResponse, remaining: Int)
        case chunkSize(ParsedResponse)
        case chunkData(ParsedResponse, remaining: Int)
        case chunkTrailer(ParsedResponse)
    }

    private var state: State = .head

    public init() {}

    /// Takes the next complete response out of `buffer`, consuming its bytes; `nil` when more bytes are needed.
    public mutating func next(from buffer: inout ByteBuffer) throws(HTTPParseError) -> ParsedResponse? {
        while true {
            switch state {
            case .head:
                guard let end = Self.find(Self.crlfcrlf, in: buffer) else {
                    if buffer.readableBytes > 65_536 { throw HTTPParseError(description: "response head too large") }
                    return nil
                }
                let head = buffer.readBytes(length: end + 4)!
                var response = try Self.parseHead(head)
                if let length = response.contentLength {
                    response.parsed.bodyLength = length
                    state = .body(response.parsed, remaining: length)
                } else if response.chunked {
                    state = .chunkSize(response.parsed)
                } else {
                    // No length: the body runs to the end of the connection; responses here always carry one.
                    throw HTTPParseError(description: "response without Content-Length or chunked encoding")
                }
            case .body(let response, let remaining):
                let take = Swift.min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                if take < remaining {
                    state = .body(response, remaining: remaining - take)
                    return nil
                }
                state = .head
                return response
            case .chunkSize(var response):
                guard let end = Self.find(Self.crlf, in: buffer) else { return nil }
                let line = buffer.readBytes(length: end + 2)!
                let digits = line.prefix(end)
                guard let size = HTTPResponseHead.chunkSize(digits) else {
                    throw HTTPParseError(description: "bad chunk size")
                }
                response.bodyLength += size
                state = size == 0 ? .chunkTrailer(response) : .chunkData(response, remaining: size + 2)
            case .chunkData(let response, let remaining):
                let take = Swift.min(remaining, buffer.readableBytes)
                buffer.moveReaderIndex(forwardBy: take)
                if take < remaining {
                    state = .chunkData(response, remaining: remaining - take)
                    return nil
                }
                state = .chunkSize(response)
            case .chunkTrailer(let response):
                // Trailer lines until an empty line.
                guard let end = Self.find(Self.crlf, in: buffer) else { return nil }
                buffer.moveReaderIndex(forwardBy: end + 2)
                if end == 0 {
                    state = .head
                    return response
                }
            }
        }
    }

    private struct Head {
        var parsed: ParsedResponse
        var contentLength: Int?
        var chunked: Bool
    }

    private static let crlf: [UInt8] = [13, 10]
    private static let crlfcrlf: [UInt8] = [13, 10, 13, 10]

    private static func find(_ needle: [UInt8], in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= needle.count else { return nil }
            var index = 0
            let last = bytes.count - needle.count
            while index <= last {
                if bytes[index] == needle[0] {
                    var matched = true
                    for offset in 1..<needle.count where bytes[index + offset] != needle[offset] {
                        matched = false
                        break
                    }
                    if matched { return index }
                }
                index += 1
            }
            return nil
        }
    }

    private static func parseHead(_ head: [UInt8]) throws(HTTPParseError) -> Head {
        let parsed = try HTTPResponseHead.parse(head)
        var result = Head(
            parsed: ParsedResponse(status: parsed.status, bodyLength: 0, closes: parsed.closes), contentLength: nil,
            chunked: false)
        switch parsed.framing {
        case .length(let length): result.contentLength = length
        case .chunked: result.chunked = true
        case .untilClose: break
        }
        return result
    }
}

extension String {
    var trimmingSpaces: String {
        var view = Substring(self)
        while let first = view.first, first == " " || first == "\t" { view.removeFirst() }
        while let last = view.last, last == " " || last == "\t" { view.removeLast() }
        return String(view)
    }
}
