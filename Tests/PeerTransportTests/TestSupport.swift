import NIOCore
import NIOPosix
import PeerTransport
import RaftCore
import Testing

// MARK: - Seeded randomness

/// RaftCore's SplitMix64: every randomised test names its seed and replays exactly from it.
typealias SeededRNG = SplitMix64

enum Generate {
    static func bytes(_ count: Int, using rng: inout SeededRNG) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    /// A large or small value, so that edge values (0, max) turn up often.
    static func u64(using rng: inout SeededRNG) -> UInt64 {
        switch UInt8.random(in: 0..<4, using: &rng) {
        case 0: return 0
        case 1: return .max
        case 2: return UInt64.random(in: 0..<1000, using: &rng)
        default: return rng.next()
        }
    }

    static func nodeSet(using rng: inout SeededRNG) -> Set<NodeID> {
        Set((0..<Int.random(in: 0..<6, using: &rng)).map { _ in u64(using: &rng) })
    }

    static func entry(using rng: inout SeededRNG) -> Entry {
        let kinds: [EntryKind] = [.normal, .noop, .config]
        return Entry(
            term: u64(using: &rng),
            index: u64(using: &rng),
            kind: kinds[Int.random(in: 0..<kinds.count, using: &rng)],
            clientID: u64(using: &rng),
            sequence: u64(using: &rng),
            data: bytes(Int.random(in: 0..<64, using: &rng), using: &rng)
        )
    }

    /// The `kind`-th body case (0...8, appendResponse success and reject counted apart), with random fields.
    static func body(kind: Int, using rng: inout SeededRNG) -> Message.Body {
        switch kind {
        case 0:
            return .requestVote(
                lastIndex: u64(using: &rng), lastTerm: u64(using: &rng), preVote: Bool.random(using: &rng),
                transfer: Bool.random(using: &rng)
            )
        case 1:
            return .voteResponse(granted: Bool.random(using: &rng), preVote: Bool.random(using: &rng))
        case 2:
            let entries = (0..<Int.random(in: 0..<200, using: &rng)).map { _ in entry(using: &rng) }
            return .appendEntries(
                prevIndex: u64(using: &rng), prevTerm: u64(using: &rng), entries: entries, commit: u64(using: &rng),
                round: u64(using: &rng)
            )
        case 3:
            return .appendResponse(.success(matchIndex: u64(using: &rng)), round: u64(using: &rng))
        case 4:
            let result = Message.AppendResult.reject(
                rejectedIndex: u64(using: &rng),
                conflictTerm: Bool.random(using: &rng) ? u64(using: &rng) : nil,
                conflictIndex: u64(using: &rng)
            )
            return .appendResponse(result, round: u64(using: &rng))
        case 5:
            return .heartbeat(commit: u64(using: &rng), round: u64(using: &rng))
        case 6:
            return .heartbeatResponse(round: u64(using: &rng))
        case 7:
            let voters = nodeSet(using: &rng)
            var membership = Membership(voters: voters, learners: nodeSet(using: &rng).subtracting(voters))
            for id in membership.members where rng.next() % 2 == 0 { membership.addresses[id] = "10.0.0.\(id % 250):\(id % 65_000 + 1)" }
            return .installSnapshot(
                SnapshotMetadata(index: u64(using: &rng), term: u64(using: &rng), membership: membership))
        case 8:
            return .readIndex(batch: u64(using: &rng), lease: Bool.random(using: &rng))
        case 9:
            return .readIndexResponse(batch: u64(using: &rng), index: Bool.random(using: &rng) ? u64(using: &rng) : nil)
        default:
            return .timeoutNow
        }
    }

    static let bodyKinds = 11

    static func message(kind: Int, using rng: inout SeededRNG) -> Message {
        Message(
            from: u64(using: &rng), to: u64(using: &rng), term: u64(using: &rng), body: body(kind: kind, using: &rng))
    }

    static func headers(using rng: inout SeededRNG) -> [(String, String)] {
        let names = ["content-type", "x-leader-id", "accept", "x-émoji-🚀", ""]
        return (0..<Int.random(in: 0..<5, using: &rng)).map { i in
            (names[Int.random(in: 0..<names.count, using: &rng)], "value-\(i)-\(rng.next() % 1000)")
        }
    }
}

// MARK: - Recording handler

/// A ``PeerTransportHandler`` that records everything on a loop of its own (the test target has no lock type),
/// and answers forwarded requests with `respond`.
final class RecordingHandler: PeerTransportHandler {
    private let loop: EventLoop
    private let log: NIOLoopBoundBox<Log>
    private let respond: @Sendable (TunnelledRequest, EventLoop) -> EventLoopFuture<TunnelledResponse>

    struct Log {
        var messages: [Message] = []
        var snapshotData: [[UInt8]?] = []
        var unreachable: [NodeID] = []
        var forwarded: [TunnelledRequest] = []
    }

    init(
        loop: EventLoop,
        respond: @escaping @Sendable (TunnelledRequest, EventLoop) -> EventLoopFuture<TunnelledResponse> = {
            request, loop in
            loop.makeSucceededFuture(
                TunnelledResponse(status: 200, headers: [("x-echo-uri", request.uri)], body: request.body)
            )
        }
    ) {
        self.loop = loop
        self.log = .makeBoxSendingValue(Log(), eventLoop: loop)
        self.respond = respond
    }

    func received(_ message: Message, snapshotData: [UInt8]?) {
        loop.execute {
            self.log.value.messages.append(message)
            self.log.value.snapshotData.append(snapshotData)
        }
    }

    func peerUnreachable(_ id: NodeID) {
        loop.execute { self.log.value.unreachable.append(id) }
    }

    func handleForwarded(_ request: TunnelledRequest, on eventLoop: EventLoop) -> EventLoopFuture<TunnelledResponse> {
        loop.execute { self.log.value.forwarded.append(request) }
        return respond(request, eventLoop)
    }

    /// A consistent copy of everything recorded so far.
    func snapshot() async throws -> Log {
        try await loop.submit { self.log.value }.get()
    }
}

// MARK: - Waiting

/// Polls `condition` until it holds or `timeout` passes; fails the test in the latter case.
func waitUntil(
    _ what: String, timeout: Duration = .seconds(5), _ condition: () async throws -> Bool,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(5))
    }
    let holds = try await condition()
    #expect(holds, "timed out waiting for \(what)", sourceLocation: sourceLocation)
}

// MARK: - Servers

/// Answers any HTTP request with `200 ok` and closes; stands in for the node's HTTP server.
final class TinyHTTPResponder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private var answered = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered else { return }
        answered = true
        let response = ByteBuffer(string: "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        context.writeAndFlush(wrapOutboundOut(response)).assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
    }
}

/// Binds the shared client/peer port for `transport` on 127.0.0.1 (`port` 0 picks a free one).
func startSharedPortServer(group: EventLoopGroup, transport: PeerTransport, port: Int = 0) async throws -> Channel {
    try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let detector = transport.makeSharedPortDetector(configureHTTP: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(TinyHTTPResponder())
                    }
                })
                try channel.pipeline.syncOperations.addHandler(detector)
            }
        }
        .bind(host: "127.0.0.1", port: port)
        .get()
}

extension Channel {
    var boundPort: Int {
        get throws {
            guard let port = localAddress?.port else { throw TestError("channel has no bound port") }
            return port
        }
    }
}

struct TestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Collects whatever a raw client connection receives, and notices when the server closes it.
final class RawClientCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let received: NIOLoopBoundBox<[UInt8]>

    init(received: NIOLoopBoundBox<[UInt8]>) {
        self.received = received
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received.value.append(contentsOf: unwrapInboundIn(data).readableBytesView)
    }
}

/// Connects a raw TCP client to `port`, writes `bytes`, and returns the channel and what it receives.
func rawClient(
    group: EventLoopGroup, port: Int, sending bytes: [UInt8]
) async throws -> (Channel, NIOLoopBoundBox<[UInt8]>) {
    let loop = group.next()
    let box = NIOLoopBoundBox.makeBoxSendingValue([UInt8](), eventLoop: loop)
    let channel = try await ClientBootstrap(group: loop)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(RawClientCollector(received: box))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
    try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    return (channel, box)
}
