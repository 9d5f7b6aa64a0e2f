import ClusterAPI
import Foundation
import NIOCore

/// The parameters of `GET /events`: `after=ID` (else the `Last-Event-ID` header, else 0: the whole ring) and
/// `follow=true|false` (default true: keep the stream open).
struct EventStreamRequest: Sendable, Hashable {
    var after: UInt64 = 0
    var follow = true

    /// `nil` when a value is malformed; unknown parameters are ignored.
    init?(query: Substring, lastEventID: String?) {
        if let lastEventID {
            guard let id = UInt64(lastEventID.trimmingCharacters(in: .whitespaces)) else { return nil }
            after = id
        }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let value = parts.count > 1 ? parts[1] : ""
            switch parts[0] {
            case "after":
                guard let id = UInt64(value) else { return nil }
                after = id
            case "follow":
                switch value {
                case "true", "1", "": follow = true
                case "false", "0": follow = false
                default: return nil
                }
            default:
                continue
            }
        }
    }

    /// One server-sent event: `id: SEQ`, `event: KIND`, `data: JSON`, blank line. The JSON is one line (compact, with
    /// newlines escaped inside strings).
    static func write(_ event: NodeEvent, into buffer: inout ByteBuffer) {
        guard let data = try? WireJSON.encode(event) else { return }
        buffer.writeString("id: \(event.seq)\nevent: \(event.kind.rawValue)\ndata: ")
        buffer.writeBytes(data)
        buffer.writeStaticString("\n\n")
    }
}

/// One open `/events` stream: every `pollMs` it asks the ring for events newer than the last it sent and writes
/// them; a comment line every `keepAliveMs` keeps proxies and idle timers from closing a quiet stream.
/// Confined to the connection's event loop (it is created, run and stopped there).
final class EventStream {
    static let pollMs: Int64 = 200
    static let keepAliveMs: UInt64 = 15_000

    private var after: UInt64
    private let source: @Sendable (UInt64) -> NodeEventsResponse
    private let write: (ByteBuffer) -> Void
    private var scheduled: Scheduled<Void>?
    private var stopped = false
    private var quietMs: UInt64 = 0

    init(after: UInt64, source: @escaping @Sendable (UInt64) -> NodeEventsResponse, write: @escaping (ByteBuffer) -> Void) {
        self.after = after
        self.source = source
        self.write = write
    }

    func start(on loop: any EventLoop, allocator: ByteBufferAllocator) {
        // The history first, at once.
        poll(loop: loop, allocator: allocator, forceComment: true)
    }

    func stop() {
        stopped = true
        scheduled?.cancel()
        scheduled = nil
    }

    private func poll(loop: any EventLoop, allocator: ByteBufferAllocator, forceComment: Bool = false) {
        guard !stopped else { return }
        let fresh = source(after).events
        var buffer = allocator.buffer(capacity: fresh.isEmpty ? 16 : 256 * fresh.count)
        if forceComment { buffer.writeStaticString(": dengine events\n\n") }
        for event in fresh { EventStreamRequest.write(event, into: &buffer) }
        if let last = fresh.last { after = last.seq }
        if fresh.isEmpty {
            quietMs += UInt64(Self.pollMs)
            if quietMs >= Self.keepAliveMs {
                buffer.writeStaticString(": keep-alive\n\n")
                quietMs = 0
            }
        } else {
            quietMs = 0
        }
        if buffer.readableBytes > 0 { write(buffer) }
        scheduled = loop.assumeIsolated().scheduleTask(in: .milliseconds(Self.pollMs)) { [weak self] in
            self?.poll(loop: loop, allocator: allocator)
        }
    }
}

@available(*, unavailable)
extension EventStream: Sendable {}
