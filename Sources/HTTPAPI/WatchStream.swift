import ClusterAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import Synchronization

// MARK: - Request

/// A decoded `GET /watch?key=K|prefix=P[&since=INDEX]` (or `Last-Event-ID: N`, which means `since = N + 1`).
public struct WatchRequest: Sendable, Hashable {
    public enum Filter: Sendable, Hashable {
        case key([UInt8])
        case prefix([UInt8])
    }

    public var filter: Filter
    /// The first index to report; `nil`: changes applied after the watch starts.
    public var since: UInt64?

    public init(filter: Filter, since: UInt64?) {
        self.filter = filter
        self.since = since
    }

    public func matches(_ key: [UInt8]) -> Bool {
        switch filter {
        case .key(let wanted): return key == wanted
        case .prefix(let prefix): return key.starts(with: prefix)
        }
    }
}

// MARK: - Events

/// One event of a watch stream, as the node offers it.
public struct WatchStreamEvent: Sendable {
    public enum Kind: Sendable, Equatable {
        case change(WatchEventType)
        /// Every change up to `index` has been offered: the node's applied index.
        case progress
    }

    public var kind: Kind
    public var key: [UInt8]
    public var value: [UInt8]
    public var index: UInt64
    /// The last event of its index: it carries `id: <index>`, so `Last-Event-ID` always names an index whose events
    /// were all received (a transaction or a batch of expiries makes several events with one index).
    public var closesIndex: Bool

    public init(kind: Kind, key: [UInt8], value: [UInt8], index: UInt64, closesIndex: Bool) {
        self.kind = kind
        self.key = key
        self.value = value
        self.index = index
        self.closesIndex = closesIndex
    }

    public static func progress(_ index: UInt64) -> WatchStreamEvent {
        WatchStreamEvent(kind: .progress, key: [], value: [], index: index, closesIndex: true)
    }

    /// What the event is counted as against the stream's buffer: its key and value plus the framing around them.
    var accountedBytes: Int { key.count + value.count + 128 }

    /// `id: 12\nevent: put\ndata: {"type":"put","key":"k","value":"v","index":12}\n\n`.
    func write(into buffer: inout ByteBuffer) {
        if closesIndex {
            buffer.writeStaticString("id: ")
            buffer.writeDecimal(index)
            buffer.writeStaticString("\n")
        }
        switch kind {
        case .progress:
            buffer.writeStaticString("event: progress\ndata: {\"index\":")
            buffer.writeDecimal(index)
            buffer.writeStaticString("}\n\n")
        case .change(let type):
            buffer.writeStaticString("event: ")
            buffer.writeString(type.rawValue)
            buffer.writeStaticString("\ndata: {\"type\":\"")
            buffer.writeString(type.rawValue)
            buffer.writeStaticString("\",\"key\":")
            buffer.writeJSONString(String(decoding: key, as: UTF8.self))
            if type == .put {
                buffer.writeStaticString(",\"value\":")
                buffer.writeJSONString(String(decoding: value, as: UTF8.self))
            }
            buffer.writeStaticString(",\"index\":")
            buffer.writeDecimal(index)
            buffer.writeStaticString("}\n\n")
        }
    }
}

// MARK: - Stream

/// The sending side of one watch: the node offers events (on its Raft loop), the connection's event loop writes them.
///
/// **Bounded.** Every offered event is counted against `bufferBytes` (`WatchStreamEvent.accountedBytes`) from the
/// moment it is offered until the socket has taken it; an offer that would pass `bufferBytes - finalReserve` ends
/// the watch instead: the stream stops accepting, and one last `event: dropped` (counted against the reserve, so it
/// always fits) follows what was already queued. The client gets it once it reads again; the connection is closed
/// once it is written, or after `dropLinger` if the client never reads.
public final class WatchStream: Sendable {
    /// Room kept for the final `event: dropped`.
    public static let finalReserve = 512
    /// How long a dropped watch waits for its client to read the final event.
    static let dropLinger = TimeAmount.seconds(60)

    /// Bytes held by every watch stream of this process (queued or written and not yet taken by a socket).
    static let bufferedBytes = Atomic<Int>(0)
    /// Watch streams open in this process.
    static let openStreams = Atomic<Int>(0)

    /// The bytes every watch stream of this process holds now.
    public static var totalBufferedBytes: Int { bufferedBytes.load(ordering: .relaxed) }
    /// The number of watch streams open now.
    public static var totalOpenStreams: Int { openStreams.load(ordering: .relaxed) }

    private struct State {
        var queue: [WatchStreamEvent] = []
        /// Counted bytes: queued, plus written and not yet completed.
        var bytes = 0
        /// Offers are refused (dropped, ended or closed).
        var refusing = false
        /// The final event to send after the queue, then close.
        var final: WatchStreamEvent?
        var finalText: String?
        /// `start()` was called: the response head is out, events may be written.
        var started = false
        var drainScheduled = false
        var closed = false
    }

    private let state = NIOLockedValueBox(State())
    private let channel: any Channel
    public let bufferBytes: Int

    public init(channel: any Channel, bufferBytes: Int) {
        self.channel = channel
        self.bufferBytes = max(bufferBytes, Self.finalReserve * 4)
        Self.openStreams.add(1, ordering: .relaxed)
    }

    // MARK: Offering (any thread)

    /// Queues `events` in order. `false` once the stream takes no more: the client is gone, or it could not keep up
    /// and the watch was ended with `event: dropped` (the caller should forget the stream).
    public func offer(_ events: [WatchStreamEvent]) -> Bool {
        guard !events.isEmpty else { return !state.withLockedValue { $0.refusing } }
        let size = events.reduce(0) { $0 + $1.accountedBytes }
        let (accepted, schedule) = state.withLockedValue { s -> (Bool, Bool) in
            guard !s.refusing else { return (false, false) }
            if s.bytes + size > bufferBytes - Self.finalReserve {
                s.refusing = true
                s.finalText = "the watcher fell behind by more than \(bufferBytes) bytes"
                return (false, scheduleDrain(&s))
            }
            s.queue.append(contentsOf: events)
            s.bytes += size
            return (true, scheduleDrain(&s))
        }
        if accepted { Self.bufferedBytes.add(size, ordering: .relaxed) }
        if schedule { channel.eventLoop.execute { self.drain() } }
        return accepted
    }

    /// Ends the watch with a final `event: dropped` carrying `reason` (after what is already queued).
    public func end(reason: String) {
        let schedule = state.withLockedValue { s -> Bool in
            guard !s.refusing else { return false }
            s.refusing = true
            s.finalText = reason
            return scheduleDrain(&s)
        }
        if schedule { channel.eventLoop.execute { self.drain() } }
    }

    /// Whether the stream still takes events.
    public var isOpen: Bool { !state.withLockedValue { $0.refusing } }

    private func scheduleDrain(_ s: inout State) -> Bool {
        guard s.started, !s.drainScheduled, !s.closed else { return false }
        s.drainScheduled = true
        return true
    }

    // MARK: Connection side (the channel's event loop)

    /// The response head is written: events may follow.
    func start() {
        let schedule = state.withLockedValue { s -> Bool in
            s.started = true
            return scheduleDrain(&s)
        }
        if schedule { drain() }
    }

    /// The connection closed: forget everything queued and refuse further offers.
    func channelClosed() {
        let (wasOpen, released) = state.withLockedValue { s -> (Bool, Int) in
            guard !s.closed else { return (false, 0) }
            s.closed = true
            s.refusing = true
            let queued = s.queue.reduce(0) { $0 + $1.accountedBytes }
            s.queue = []
            s.bytes -= queued
            return (true, queued)
        }
        guard wasOpen else { return }
        Self.bufferedBytes.add(-released, ordering: .relaxed)
        Self.openStreams.add(-1, ordering: .relaxed)
    }

    private func drain() {
        let (batch, finalText) = state.withLockedValue { s -> ([WatchStreamEvent], String?) in
            s.drainScheduled = false
            guard !s.closed else { return ([], nil) }
            let batch = s.queue
            s.queue = []
            let finalText = s.finalText
            s.finalText = nil
            return (batch, finalText)
        }
        if !batch.isEmpty {
            var buffer = channel.allocator.buffer(capacity: batch.reduce(0) { $0 + $1.accountedBytes })
            for event in batch { event.write(into: &buffer) }
            let size = batch.reduce(0) { $0 + $1.accountedBytes }
            channel.writeAndFlush(HTTPServerResponsePart.body(.byteBuffer(buffer))).whenComplete { _ in
                self.state.withLockedValue { $0.bytes -= size }
                Self.bufferedBytes.add(-size, ordering: .relaxed)
            }
        }
        if let finalText {
            var buffer = channel.allocator.buffer(capacity: Self.finalReserve)
            buffer.writeStaticString("event: dropped\ndata: {\"reason\":")
            buffer.writeJSONString(String(finalText.prefix(200)))
            buffer.writeStaticString("}\n\n")
            let channel = self.channel
            channel.write(HTTPServerResponsePart.body(.byteBuffer(buffer)), promise: nil)
            channel.writeAndFlush(HTTPServerResponsePart.end(nil)).whenComplete { _ in
                channel.close(promise: nil)
            }
            channel.eventLoop.scheduleTask(in: Self.dropLinger) { channel.close(promise: nil) }
        }
    }
}
