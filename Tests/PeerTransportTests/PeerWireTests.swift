import NIOCore
import NIOEmbedded
import RaftCore
import Testing

@testable import PeerTransport

@Suite("PeerWire codec")
struct PeerWireTests {
    // MARK: Round trips

    @Test("every message kind round-trips, with and without snapshot data", arguments: [1, 2, 3] as [UInt64])
    func messageRoundTrip(seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        for round in 0..<60 {
            let kind = round % Generate.bodyKinds
            let message = Generate.message(kind: kind, using: &rng)
            let data: [UInt8]? =
                Bool.random(using: &rng) ? Generate.bytes(Int.random(in: 0..<300, using: &rng), using: &rng) : nil
            try expectRoundTrip(.raft(message, snapshotData: data))
        }
    }

    @Test("many large entries in one appendEntries")
    func manyEntries() throws {
        var rng = SeededRNG(seed: 42)
        let entries = (0..<5000).map { _ in Generate.entry(using: &rng) }
        let message = Message(
            from: 1, to: 2, term: 7,
            body: .appendEntries(prevIndex: 10, prevTerm: 6, entries: entries, commit: 9, round: 3)
        )
        try expectRoundTrip(.raft(message, snapshotData: nil))
    }

    @Test("hello and forwarded requests and responses round-trip")
    func forwardRoundTrip() throws {
        var rng = SeededRNG(seed: 7)
        try expectRoundTrip(.hello(PeerHello(nodeID: 3)))
        try expectRoundTrip(.hello(PeerHello(nodeID: .max, version: 9)))
        try expectRoundTrip(.hello(PeerHello(nodeID: 3, clusterID: 0xDEAD_BEEF)))
        for _ in 0..<50 {
            let request = TunnelledRequest(
                method: ["GET", "POST", "DELETE"][Int.random(in: 0..<3, using: &rng)],
                uri: "/get?key=k\(rng.next() % 100)&consistency=lease",
                headers: Generate.headers(using: &rng),
                body: Generate.bytes(Int.random(in: 0..<200, using: &rng), using: &rng)
            )
            try expectRoundTrip(.forwardRequest(id: Generate.u64(using: &rng), request))
            let response = TunnelledResponse(
                status: [200, 404, 503, 504][Int.random(in: 0..<4, using: &rng)],
                headers: Generate.headers(using: &rng),
                body: Generate.bytes(Int.random(in: 0..<200, using: &rng), using: &rng)
            )
            try expectRoundTrip(.forwardResponse(id: Generate.u64(using: &rng), response))
        }
    }

    @Test("snapshot chunks round-trip; the receiver takes them in order only and checks each")
    func snapshotChunks() throws {
        let meta = SnapshotMetadata(index: 9, term: 2, membership: Membership(voters: [1, 2], addresses: [2: "h:2"]))
        let message = Message(from: 1, to: 2, term: 2, body: .installSnapshot(meta))
        let image = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let chunks = SnapshotChunk.split(image, message: message, transfer: 5, size: 3000)
        #expect(chunks.map(\.data.count) == [3000, 3000, 3000, 1000])
        #expect(chunks.map { $0.message != nil } == [false, false, false, true])
        for chunk in chunks { try expectRoundTrip(.snapshotChunk(chunk)) }
        try expectRoundTrip(.snapshotAck(transfer: 5, offset: 9000))

        let assembler = SnapshotStaging(directory: temporaryStagingDirectory(), maxTotal: 1 << 20)
        for chunk in chunks.dropLast() { #expect(isStaged(assembler.accept(chunk, from: 1))) }
        #expect(assembler.accept(chunks[3], from: 1) == .complete(message, image))

        // A gap drops the transfer; so does a damaged chunk; offset 0 starts over and succeeds.
        #expect(isStaged(assembler.accept(chunks[0], from: 1)))
        if case .rejected = assembler.accept(chunks[2], from: 1) {} else { Issue.record("a gap was accepted") }
        if case .rejected = assembler.accept(chunks[1], from: 1) {} else { Issue.record("a chunk after a dropped transfer was accepted") }
        #expect(isStaged(assembler.accept(chunks[0], from: 1)))
        var damaged = chunks[1]
        damaged.data[17] ^= 1
        if case .rejected = assembler.accept(damaged, from: 1) {} else { Issue.record("a damaged chunk was accepted") }
        for chunk in chunks.dropLast() { #expect(isStaged(assembler.accept(chunk, from: 1))) }
        #expect(assembler.accept(chunks[3], from: 1) == .complete(message, image))

        // Too large for the receiver, and a transfer interrupted by another.
        let small = SnapshotStaging(directory: temporaryStagingDirectory(), maxTotal: 5000)
        if case .rejected = small.accept(chunks[0], from: 1) {} else { Issue.record("an oversized transfer was accepted") }
        let other = SnapshotChunk.split(image, message: message, transfer: 6, size: 3000)
        #expect(isStaged(assembler.accept(chunks[0], from: 1)))
        #expect(isStaged(assembler.accept(other[0], from: 1)))
        if case .rejected = assembler.accept(chunks[1], from: 1) {} else { Issue.record("the replaced transfer continued") }
    }

    @Test("a heartbeat encodes to the documented bytes")
    func goldenHeartbeat() {
        let frame = PeerFrame.raft(
            Message(from: 1, to: 2, term: 3, body: .heartbeat(commit: 4, round: 5)), snapshotData: nil)
        let bytes = Array(PeerWire.encode(frame).readableBytesView)
        let expected: [UInt8] =
            [0, 0, 0, 43, 2]  // length = 1 + 42, type raft
            + [0, 0, 0, 0, 0, 0, 0, 1] + [0, 0, 0, 0, 0, 0, 0, 2] + [0, 0, 0, 0, 0, 0, 0, 3]  // from, to, term
            + [5] + [0, 0, 0, 0, 0, 0, 0, 4] + [0, 0, 0, 0, 0, 0, 0, 5]  // heartbeat, commit, round
            + [0]  // no snapshot data
        #expect(bytes == expected)
    }

    @Test("frames concatenated in one buffer decode one by one, and a partial frame waits")
    func streamOfFrames() throws {
        var rng = SeededRNG(seed: 11)
        var buffer = ByteBuffer()
        var frames: [PeerFrame] = []
        for i in 0..<40 {
            let frame = PeerFrame.raft(Generate.message(kind: i % Generate.bodyKinds, using: &rng), snapshotData: nil)
            frames.append(frame)
            PeerWire.encode(frame, into: &buffer)
        }
        var decoded: [PeerFrame] = []
        let total = buffer.readableBytes
        var partial = buffer.getSlice(at: 0, length: total - 1) ?? ByteBuffer()
        while let frame = try PeerWire.decodeFrame(from: &partial) { decoded.append(frame) }
        #expect(decoded == Array(frames.dropLast()))
        #expect(partial.readableBytes > 0)
        while let frame = try PeerWire.decodeFrame(from: &buffer) { decoded.append(frame) }
        #expect(buffer.readableBytes == 0)
    }

    // MARK: Rejections

    @Test("a length over the cap is rejected from the 4-byte prefix alone")
    func lengthOverCap() {
        var buffer = ByteBuffer(bytes: [0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: PeerWireError.frameTooLarge(length: .max, limit: PeerWire.defaultMaxFrameLength)) {
            try PeerWire.decodeFrame(from: &buffer)
        }
        var small = ByteBuffer(bytes: [0, 0, 0, 200])
        #expect(throws: PeerWireError.frameTooLarge(length: 200, limit: 100)) {
            try PeerWire.decodeFrame(from: &small, maxFrameLength: 100)
        }
    }

    @Test("malformed frames throw the matching error")
    func malformed() throws {
        #expect(throws: PeerWireError.emptyFrame) { try decode([0, 0, 0, 0]) }
        #expect(throws: PeerWireError.badFrameType(9)) { try decode([0, 0, 0, 1, 9]) }
        #expect(throws: PeerWireError.truncated) { try decode([0, 0, 0, 3, 1, 0, 0]) }
        // hello with two trailing bytes
        #expect(throws: PeerWireError.trailingBytes(2)) { try decode([0, 0, 0, 13, 1] + zeros(10) + [7, 7]) }
        // raft frame with an unknown body tag
        #expect(throws: PeerWireError.invalidValue(field: "body", value: 99)) {
            try decode([0, 0, 0, 26, 2] + zeros(24) + [99])
        }
        // voteResponse with a flag bit that means nothing
        #expect(throws: PeerWireError.invalidValue(field: "voteResponse.flags", value: 4)) {
            try decode([0, 0, 0, 28, 2] + zeros(24) + [2, 4, 0])
        }
        // snapshot-data presence byte 2
        #expect(throws: PeerWireError.invalidValue(field: "snapshotData.present", value: 2)) {
            try decode([0, 0, 0, 27, 2] + zeros(24) + [8, 2])
        }
        // appendEntries announcing 4 billion entries with none present: no allocation, just truncated
        #expect(throws: PeerWireError.truncated) {
            try decode([0, 0, 0, 63, 2] + zeros(24) + [3] + zeros(32) + [0xFF, 0xFF, 0xFF, 0xFF] + [0])
        }
        // entry kind 7
        let entry = zeros(16) + [7] + zeros(16) + [0, 0, 0, 0]
        #expect(throws: PeerWireError.invalidValue(field: "entry.kind", value: 7)) {
            try decode(
                [0, 0, 0, UInt8(63 + entry.count), 2] + zeros(24) + [3] + zeros(32) + [0, 0, 0, 1] + entry + [0])
        }
        // forwarded request whose method is not UTF-8
        #expect(throws: PeerWireError.invalidUTF8(field: "method")) {
            try decode([0, 0, 0, 15, 3] + zeros(8) + [0, 0, 0, 2, 0xC3, 0x28])
        }
    }

    @Test("the frame decoder handler decodes byte by byte and closes on garbage")
    func decoderHandler() throws {
        let channel = EmbeddedChannel(
            handler: ByteToMessageHandler(PeerFrameDecoder(expectsPreamble: true))
        )
        var stream = ByteBuffer()
        PeerWire.writePreamble(into: &stream)
        let frames: [PeerFrame] = [
            .hello(PeerHello(nodeID: 5)),
            .raft(Message(from: 5, to: 1, term: 2, body: .timeoutNow), snapshotData: [1, 2, 3]),
        ]
        for frame in frames { PeerWire.encode(frame, into: &stream) }
        for byte in stream.readableBytesView { try channel.writeInbound(ByteBuffer(bytes: [byte])) }
        #expect(try channel.readInbound(as: PeerFrame.self) == frames[0])
        #expect(try channel.readInbound(as: PeerFrame.self) == frames[1])
        #expect(try channel.readInbound(as: PeerFrame.self) == nil)
        #expect(throws: PeerWireError.badFrameType(0xEE)) {
            try channel.writeInbound(ByteBuffer(bytes: [0, 0, 0, 1, 0xEE]))
        }
        _ = try? channel.finish()

        let wrongPreamble = EmbeddedChannel(handler: ByteToMessageHandler(PeerFrameDecoder(expectsPreamble: true)))
        #expect(throws: PeerWireError.badPreamble) {
            try wrongPreamble.writeInbound(ByteBuffer(bytes: [0xD5, 0x52, 0x41, 0x46, 0x54, 0x00, 0x02, 0x0A]))
        }
        _ = try? wrongPreamble.finish()
    }

    // MARK: Fuzz

    @Test("random bytes never crash or hang the decoder", arguments: [101, 202] as [UInt64])
    func fuzzRandom(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for _ in 0..<3000 {
            var bytes = Generate.bytes(Int.random(in: 0..<120, using: &rng), using: &rng)
            if bytes.count >= 4, Bool.random(using: &rng) {
                // A plausible length prefix makes the decoder go deeper than the length check.
                let length = UInt32(bytes.count - 4)
                bytes.replaceSubrange(0..<4, with: [0, 0, UInt8(length >> 8), UInt8(length & 0xFF)])
                if bytes.count > 4 { bytes[4] = UInt8.random(in: 1...4, using: &rng) }
            }
            decodeAll(bytes)
        }
    }

    @Test("mutated valid frames never crash or hang the decoder", arguments: [303, 404] as [UInt64])
    func fuzzMutated(seed: UInt64) {
        var rng = SeededRNG(seed: seed)
        for round in 0..<3000 {
            let frame: PeerFrame
            switch round % 4 {
            case 0, 1:
                frame = .raft(Generate.message(kind: round % Generate.bodyKinds, using: &rng), snapshotData: nil)
            case 2:
                frame = .forwardRequest(
                    id: 1, TunnelledRequest(method: "POST", uri: "/put", headers: Generate.headers(using: &rng))
                )
            default:
                frame = .forwardResponse(id: 2, TunnelledResponse(status: 200, headers: Generate.headers(using: &rng)))
            }
            var bytes = Array(PeerWire.encode(frame).readableBytesView)
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let index = Int.random(in: 0..<bytes.count, using: &rng)
                switch UInt8.random(in: 0..<3, using: &rng) {
                case 0: bytes[index] = UInt8.random(in: 0...255, using: &rng)
                case 1: bytes.removeSubrange(index...)
                default: bytes.insert(UInt8.random(in: 0...255, using: &rng), at: index)
                }
                if bytes.isEmpty { break }
            }
            decodeAll(bytes)
        }
    }

    // MARK: Classification

    @Test("HTTP methods classify as HTTP from the first byte")
    func classifyHTTP() {
        for verb in ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "PRI * HTTP/2.0"] {
            #expect(PeerWire.classify(Array("\(verb) / HTTP/1.1\r\n".utf8)) == .http)
            #expect(PeerWire.classify(Array(verb.utf8.prefix(1))) == .http)
        }
    }

    @Test("the preamble, its prefixes, and divergent bytes")
    func classifyPreamble() {
        let preamble = PeerWire.preamble
        #expect(PeerWire.classify([UInt8]()) == .needMoreBytes)
        for length in 1..<preamble.count {
            #expect(PeerWire.classify(Array(preamble.prefix(length))) == .needMoreBytes)
        }
        #expect(PeerWire.classify(preamble) == .peer)
        #expect(PeerWire.classify(preamble + [0, 0, 0, 5]) == .peer)
        #expect(PeerWire.classify([0xD5, 0x52, 0x41, 0x00]) == .invalid)
        #expect(PeerWire.classify([0x16, 0x03, 0x01]) == .invalid)  // a TLS ClientHello
        #expect(PeerWire.classify([0x00]) == .invalid)
        #expect(PeerWire.classify([0xFF, 0xFF]) == .invalid)
        #expect(PeerWire.classify(Array(" GET".utf8)) == .invalid)
    }

    // MARK: Helpers

    private func expectRoundTrip(_ frame: PeerFrame, sourceLocation: SourceLocation = #_sourceLocation) throws {
        var buffer = PeerWire.encode(frame)
        #expect(buffer.readableBytes == PeerWire.frameHeaderLength + PeerWire.payloadLength(of: frame))
        let decoded = try PeerWire.decodeFrame(from: &buffer)
        #expect(decoded == frame, sourceLocation: sourceLocation)
        #expect(buffer.readableBytes == 0, sourceLocation: sourceLocation)
    }

    private func decode(_ bytes: [UInt8]) throws -> PeerFrame? {
        var buffer = ByteBuffer(bytes: bytes)
        return try PeerWire.decodeFrame(from: &buffer)
    }

    private func zeros(_ count: Int) -> [UInt8] {
        [UInt8](repeating: 0, count: count)
    }

    /// Decodes frames until the input is exhausted, incomplete or rejected (typed throws: only `PeerWireError`).
    private func decodeAll(_ bytes: [UInt8]) {
        var buffer = ByteBuffer(bytes: bytes)
        var frames = 0
        do {
            while try PeerWire.decodeFrame(from: &buffer, maxFrameLength: 1 << 16) != nil {
                frames += 1
                #expect(frames <= bytes.count)
            }
        } catch {
            #expect(!error.code.isEmpty)
        }
    }
}
