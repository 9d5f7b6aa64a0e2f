import ClusterAPI
import Foundation

// MARK: - Event-stream parsing

/// One event of a `text/event-stream` (the fields dctl uses).
public struct ServerSentEvent: Sendable, Hashable {
    public var id: String?
    public var event: String
    public var data: String
}

/// Turns the bytes of a `text/event-stream` into events (HTML's "parse an event stream", the fields `id`, `event`
/// and `data`; comments and unknown fields are skipped). Feed it any split of the stream.
public struct EventStreamParser: Sendable {
    private var pending: [UInt8] = []
    private var id: String?
    private var event = ""
    private var data: [String] = []

    public init() {}

    /// The events completed by `bytes`.
    public mutating func feed<Bytes: Sequence>(_ bytes: Bytes) -> [ServerSentEvent] where Bytes.Element == UInt8 {
        pending.append(contentsOf: bytes)
        var events: [ServerSentEvent] = []
        var start = 0
        while let newline = pending[start...].firstIndex(of: UInt8(ascii: "\n")) {
            var line = pending[start..<newline]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            start = newline + 1
            if line.isEmpty {
                if !data.isEmpty || !event.isEmpty {
                    events.append(
                        ServerSentEvent(id: id, event: event.isEmpty ? "message" : event, data: data.joined(separator: "\n")))
                }
                id = nil
                event = ""
                data = []
                continue
            }
            guard line.first != UInt8(ascii: ":") else { continue }
            let text = String(decoding: line, as: UTF8.self)
            let name: Substring
            var value: Substring
            if let colon = text.firstIndex(of: ":") {
                name = text[..<colon]
                value = text[text.index(after: colon)...]
                if value.first == " " { value = value.dropFirst() }
            } else {
                name = Substring(text)
                value = ""
            }
            switch name {
            case "id": id = String(value)
            case "event": event = String(value)
            case "data": data.append(String(value))
            default: break
            }
        }
        pending.removeFirst(start)
        return events
    }
}

/// Decodes an HTTP/1.1 `Transfer-Encoding: chunked` body incrementally (chunk extensions and trailers ignored).
public struct ChunkedDecoder: Sendable {
    private var buffer: [UInt8] = []
    /// Bytes left in the current chunk, or `nil` while a size line is expected.
    private var remaining: Int?
    public private(set) var finished = false

    public init() {}

    public struct Malformed: Error {}

    /// The body bytes `bytes` completes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(Malformed) -> [UInt8] {
        buffer.append(contentsOf: bytes)
        var out: [UInt8] = []
        var start = 0
        while !finished {
            if let left = remaining {
                if left == 0 {
                    // The CRLF after a chunk's data.
                    guard buffer.count - start >= 2 else { break }
                    start += 2
                    remaining = nil
                    continue
                }
                let take = min(left, buffer.count - start)
                guard take > 0 else { break }
                out.append(contentsOf: buffer[start..<(start + take)])
                start += take
                remaining = left - take
                continue
            }
            guard let newline = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            var line = String(decoding: buffer[start..<newline], as: UTF8.self)
            if line.hasSuffix("\r") { line.removeLast() }
            if let semicolon = line.firstIndex(of: ";") { line = String(line[..<semicolon]) }
            guard let size = Int(line.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                throw Malformed()
            }
            start = newline + 1
            if size == 0 {
                finished = true
            } else {
                remaining = size
            }
        }
        buffer.removeFirst(start)
        return out
    }
}

// MARK: - Watching

/// What ended one watch connection.
public enum WatchEnd: Sendable, Equatable {
    /// The node ended the stream with `event: dropped` (its reason).
    case dropped(String)
    /// The connection closed or failed (the node died, the network cut it).
    case disconnected(String)
    /// The caller asked to stop.
    case stopped
}

/// A `GET /watch` stream on one node over a blocking socket (plaintext): the events are handed over as they arrive.
public enum WatchConnection {
    /// Streams `path` from `endpoint`; `onEvent` returns `false` to stop. Throws the node's error answer (`410
    /// compacted`, `400`) as an `APIError`, or a `TransportError` when it cannot connect.
    public static func run(
        endpoint: Endpoint, path: String, headers: [(String, String)] = [], connectTimeout: Duration,
        onEvent: (ServerSentEvent) -> Bool
    ) throws -> WatchEnd {
        let deadline = ContinuousClock.now + connectTimeout
        let socket = try BlockingSocket.connect(endpoint, deadline: deadline, timeout: connectTimeout)
        defer { socket.close() }
        var fields = [("User-Agent", "dctl"), ("Accept", "text/event-stream")]
        if let token = ClientSecurity.current.token { fields.append(("Authorization", "Bearer \(token)")) }
        let request = requestBytes(method: "GET", endpoint: endpoint, path: path, headers: fields + headers)
        guard socket.send(request, deadline: deadline).complete else {
            return .disconnected("could not send the request to \(endpoint)")
        }
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        var headerEnd: Int?
        var status = 0
        var chunked = false
        var decoder = ChunkedDecoder()
        var parser = EventStreamParser()
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(socket.fd, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                let code = errno
                if code == EAGAIN || code == EWOULDBLOCK || code == EINTR {
                    // Block until more arrives (a watch has no deadline; progress events arrive every second).
                    _ = BlockingSocket.wait(socket.fd, events: Int16(POLLIN), deadline: ContinuousClock.now + .seconds(3600))
                    continue
                }
                return .disconnected("\(endpoint): \(errnoText(code))")
            }
            if count == 0 {
                if headerEnd == nil || status != 200 { break }
                return .disconnected("\(endpoint) closed the stream")
            }
            var body = Array(chunk[0..<count])
            if headerEnd == nil {
                received.append(contentsOf: body)
                guard let end = Self.headerEnd(received) else { continue }
                headerEnd = end
                let head = String(decoding: received[..<end], as: UTF8.self).lowercased()
                let statusLine = head.split(separator: "\r\n").first ?? ""
                status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
                chunked = head.contains("transfer-encoding: chunked")
                body = Array(received[(end + 4)...])
                if status != 200 {
                    received = body
                    continue
                }
            } else if status != 200 {
                received.append(contentsOf: body)
                continue
            }
            let payload: [UInt8]
            if chunked {
                do {
                    payload = try decoder.feed(body)
                } catch {
                    return .disconnected("\(endpoint) sent a malformed chunked body")
                }
            } else {
                payload = body
            }
            for event in parser.feed(payload) {
                if event.event == "dropped" { return .dropped(event.data) }
                guard onEvent(event) else { return .stopped }
            }
            if decoder.finished { return .disconnected("\(endpoint) ended the stream") }
        }
        // A complete non-200 answer (the node closes after its error).
        if let error = try? WireJSON.decode(APIErrorEnvelope.self, from: Data(received)).error { throw error }
        return .disconnected("\(endpoint) answered HTTP \(status)")
    }

    private static func headerEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for i in 0...(bytes.count - 4)
        where bytes[i] == 13 && bytes[i + 1] == 10 && bytes[i + 2] == 13 && bytes[i + 3] == 10 {
            return i
        }
        return nil
    }
}

/// Follows a watch across nodes: when a node dies or drops the stream, it reconnects to the next target with
/// `since` = the last complete index + 1, so the events it hands over are in index order, each once, with no gap.
///
/// Events are handed over per index: the events of one index are held until the one carrying its `id` arrives
/// (`WatchStreamEvent.closesIndex`), so a cut in the middle of an index never loses or repeats part of it.
public struct ResumingWatch: Sendable {
    public var targets: [NodeTarget]
    /// `key=K` or `prefix=P`, escaped.
    public var selector: String
    /// The next index to ask for (`since`); `nil` until the first connection reports where it starts.
    public var next: UInt64?
    public var connectTimeout: Duration = .seconds(2)

    public init(targets: [NodeTarget], selector: String, since: UInt64?) {
        self.targets = targets
        self.selector = selector
        self.next = since
    }

    /// Runs until `onEvent` returns `false` (then returns normally), or no node can serve (throws), or a node
    /// answers an error (`410 compacted`: thrown as `APIError`). `onNote` hears about reconnections.
    ///
    /// `onProgress` hears every `event: progress` index (every change up to it was handed over); `false` stops.
    public mutating func run(
        onEvent: (WatchEvent) -> Bool, onNote: (String) -> Void, onProgress: (UInt64) -> Bool = { _ in true }
    ) throws {
        var attempt = 0
        var failures = 0
        while true {
            let target = targets[attempt % targets.count]
            attempt += 1
            var path = "/watch?\(selector)"
            if let next { path += "&since=\(next)" }
            var held: [WatchEvent] = []
            var stop = false
            let end: WatchEnd
            do {
                end = try WatchConnection.run(endpoint: target.client, path: path, connectTimeout: connectTimeout) {
                    event in
                    if event.event == "progress" {
                        guard let id = event.id.flatMap(UInt64.init) else { return true }
                        self.next = max(self.next ?? 0, id + 1)
                        stop = !onProgress(id)
                        return !stop
                    }
                    guard let decoded = try? WireJSON.decode(WatchEvent.self, from: Data(event.data.utf8)) else {
                        return true
                    }
                    held.append(decoded)
                    guard let id = event.id.flatMap(UInt64.init) else { return true }
                    for ready in held where !stop {
                        if !onEvent(ready) { stop = true }
                    }
                    held = []
                    self.next = id + 1
                    return !stop
                }
                failures = 0
            } catch let error as APIError {
                throw error
            } catch {
                failures += 1
                if failures >= targets.count * 3 { throw error }
                onNote("\(target.client): \(error); trying the next node")
                continue
            }
            switch end {
            case .stopped: return
            case .dropped(let reason):
                onNote("\(target.client) ended the watch (\(reason)); resuming from index \(next ?? 0)")
            case .disconnected(let reason):
                onNote("\(reason); resuming from index \(next ?? 0) on the next node")
            }
        }
    }
}
