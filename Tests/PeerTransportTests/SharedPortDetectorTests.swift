import NIOCore
import NIOEmbedded
import RaftCore
import Testing

@testable import PeerTransport

/// Stands in for the pipeline a configurator installs: records the bytes it is handed.
final class ProtocolCollector: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let kind: String
    var bytes: [UInt8] = []
    var readCompletes = 0

    init(kind: String) {
        self.kind = kind
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes.append(contentsOf: unwrapInboundIn(data).readableBytesView)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        readCompletes += 1
    }
}

@Suite("SharedPortDetector")
struct SharedPortDetectorTests {
    /// A detector whose configurators install a ``ProtocolCollector`` named after the protocol.
    private func makeChannel(
        timeout: TimeAmount? = .seconds(10),
        peer: SharedPortDetector.Configurator? = nil
    ) throws -> EmbeddedChannel {
        let install: @Sendable (String) -> SharedPortDetector.Configurator = { kind in
            { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ProtocolCollector(kind: kind))
                }
            }
        }
        let detector = SharedPortDetector(
            detectionTimeout: timeout, configureHTTP: install("http"), configurePeer: peer ?? install("peer")
        )
        let channel = EmbeddedChannel(handler: detector)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 9081)).wait()
        return channel
    }

    private func collector(_ channel: EmbeddedChannel) throws -> ProtocolCollector {
        try channel.pipeline.syncOperations.handler(type: ProtocolCollector.self)
    }

    private func detectorIsGone(_ channel: EmbeddedChannel) -> Bool {
        (try? channel.pipeline.syncOperations.handler(type: SharedPortDetector.self)) == nil
    }

    private func peerStream() -> [UInt8] {
        var buffer = ByteBuffer()
        PeerWire.writePreamble(into: &buffer)
        PeerWire.encode(.hello(PeerHello(nodeID: 2)), into: &buffer)
        PeerWire.encode(
            .raft(Message(from: 2, to: 1, term: 4, body: .heartbeatResponse(round: 9)), snapshotData: nil),
            into: &buffer)
        return Array(buffer.readableBytesView)
    }

    @Test("a peer stream arriving one byte at a time is detected and replayed whole")
    func peerByteAtATime() throws {
        let channel = try makeChannel()
        let stream = peerStream()
        for byte in stream { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        let collector = try collector(channel)
        #expect(collector.kind == "peer")
        #expect(collector.bytes == stream)
        #expect(detectorIsGone(channel))
        #expect(channel.isActive)
        _ = try channel.finish()
    }

    @Test("an HTTP request arriving one byte at a time goes to the HTTP pipeline")
    func httpByteAtATime() throws {
        let channel = try makeChannel()
        let request = Array("GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
        for byte in request { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        let collector = try collector(channel)
        #expect(collector.kind == "http")
        #expect(collector.bytes == request)
        #expect(collector.readCompletes >= 1)
        #expect(detectorIsGone(channel))
        _ = try channel.finish()
    }

    @Test("bytes that arrive while the pipeline is being configured are replayed in order")
    func readsDuringConfiguration() throws {
        let box = PromiseBox()
        let channel = try makeChannel(peer: { channel in
            let promise = channel.eventLoop.makePromise(of: Void.self)
            box.promise = promise
            return promise.futureResult.flatMapThrowing {
                try channel.pipeline.syncOperations.addHandler(ProtocolCollector(kind: "peer"))
            }
        })
        let stream = peerStream()
        try channel.writeInbound(ByteBuffer(bytes: stream.prefix(10)))
        try channel.writeInbound(ByteBuffer(bytes: stream.dropFirst(10).prefix(5)))
        try channel.writeInbound(ByteBuffer(bytes: stream.dropFirst(15)))
        #expect((try? collector(channel)) == nil)
        box.promise?.succeed(())
        channel.embeddedEventLoop.run()
        #expect(try collector(channel).bytes == stream)
        #expect(detectorIsGone(channel))
        _ = try channel.finish()
    }

    @Test(
        "garbage closes the connection",
        arguments: [[0x16, 0x03, 0x01, 0x00], [0x00], [0xD5, 0x52, 0x00]] as [[UInt8]])
    func garbageCloses(bytes: [UInt8]) throws {
        let channel = try makeChannel()
        for byte in bytes { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(!channel.isActive)
        #expect((try? collector(channel)) == nil)
    }

    @Test("a half preamble followed by end of input closes the connection")
    func halfPreambleThenEOF() throws {
        let channel = try makeChannel()
        try channel.writeInbound(ByteBuffer(bytes: PeerWire.preamble.prefix(4)))
        #expect(channel.isActive)
        channel.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(!channel.isActive)
    }

    @Test("a connection that stays undecided is closed after the detection timeout")
    func detectionTimeout() throws {
        let channel = try makeChannel(timeout: .seconds(2))
        try channel.writeInbound(ByteBuffer(bytes: PeerWire.preamble.prefix(3)))
        channel.embeddedEventLoop.advanceTime(by: .seconds(1))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test("a failing configurator closes the connection")
    func configurationFailure() throws {
        let channel = try makeChannel(peer: { channel in channel.eventLoop.makeFailedFuture(TestError("no")) })
        try channel.writeInbound(ByteBuffer(bytes: peerStream()))
        #expect(!channel.isActive)
    }

    // MARK: State machine

    @Test("the state machine decides once and replays everything it buffered")
    func stateMachine() {
        var machine = SharedPortDetectorStateMachine()
        #expect(machine.received(ByteBuffer(bytes: [0xD5])) == .wait)
        #expect(machine.received(ByteBuffer(bytes: PeerWire.preamble.dropFirst())) == .configure(.peer))
        #expect(machine.received(ByteBuffer(bytes: [1, 2])) == .none)
        let timedOut = machine.timedOut()
        #expect(!timedOut)
        #expect(machine.configured(success: true) == .replay(ByteBuffer(bytes: PeerWire.preamble + [1, 2])))
        #expect(machine.received(ByteBuffer(bytes: [3])) == .none)
        #expect(machine.configured(success: true) == .none)

        var http = SharedPortDetectorStateMachine()
        #expect(http.received(ByteBuffer(string: "P")) == .configure(.http))
        #expect(http.configured(success: false) == .close)

        var eof = SharedPortDetectorStateMachine()
        #expect(eof.received(ByteBuffer(bytes: [0xD5, 0x52])) == .wait)
        let closes = eof.inputClosed()
        #expect(closes)
    }
}

/// Lets a configurator closure hand its promise back to the test (EmbeddedChannel runs on the test's thread).
final class PromiseBox: @unchecked Sendable {
    var promise: EventLoopPromise<Void>?
}
