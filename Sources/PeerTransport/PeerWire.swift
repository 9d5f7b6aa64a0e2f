import NIOCore
import RaftCore

/// The peer protocol's binary codec.
///
/// A peer connection opens with the fixed 8-byte ``preamble`` (its first byte is not ASCII, so it can never be the
/// start of an HTTP request line), then a ``PeerFrame/hello(_:)`` frame, then any number of frames. Every frame is
///
///     [u32 big-endian length][u8 type][payload]      length = 1 + payload.count, at most `maxFrameLength`
///
/// The acceptor answers on the same connection with its own hello frame (no preamble), then with
/// ``PeerFrame/forwardResponse(id:_:)`` frames for forwarded requests and ``PeerFrame/snapshotAck(transfer:offset:)``
/// frames for snapshot transfers (docs/peer-protocol.md).
///
/// All integers are big-endian. Booleans are one byte, 0 or 1. Byte strings and UTF-8 strings are a u32 length then
/// the bytes. Decoding validates everything and throws ``PeerWireError``; it never traps on malformed input and never
/// allocates more than the bytes actually present justify.
public enum PeerWire {
    /// The bytes that open every peer connection: `0xD5 'R' 'A' 'F' 'T' 0x00 0x01 0x0A`.
    public static let preamble: [UInt8] = [0xD5, 0x52, 0x41, 0x46, 0x54, 0x00, 0x01, 0x0A]
    /// The protocol version carried in hello frames.
    public static let protocolVersion: UInt16 = 1
    /// The default cap on a frame's length field (64 MiB): large enough for a snapshot, checked before allocating.
    public static let defaultMaxFrameLength = 64 * 1024 * 1024
    /// Length prefix plus type byte.
    public static let frameHeaderLength = 5

    /// What the first bytes of an accepted connection are.
    public enum Classification: Sendable, Equatable {
        /// The complete preamble: a peer connection.
        case peer
        /// Starts with an HTTP token character: handed to the HTTP server.
        case http
        /// Neither (a non-token first byte, or a preamble that diverges): the connection should be closed.
        case invalid
        /// A strict prefix of the preamble (or nothing yet): wait for more bytes.
        case needMoreBytes
    }

    /// Frame type bytes.
    enum FrameType: UInt8 {
        case hello = 1
        case raft = 2
        case forwardRequest = 3
        case forwardResponse = 4
        case snapshotChunk = 5
        case snapshotAck = 6
    }

    /// Message body tags.
    enum BodyTag: UInt8 {
        case requestVote = 1
        case voteResponse = 2
        case appendEntries = 3
        case appendResponse = 4
        case heartbeat = 5
        case heartbeatResponse = 6
        case installSnapshot = 7
        case timeoutNow = 8
        case readIndex = 9
        case readIndexResponse = 10
    }

    /// Smallest encoding of one entry: term, index, kind, clientID, sequence, data length.
    static let minimumEntryLength = 8 + 8 + 1 + 8 + 8 + 4

    // MARK: - Classification

    /// Decides from the first bytes of a connection whether it is a peer connection, HTTP, or garbage.
    ///
    /// Only the first `preamble.count` bytes are ever examined. An HTTP request starts with a method, i.e. an RFC 9110
    /// token character; the preamble's first byte is not one, so the two can never be confused.
    public static func classify<Bytes: Collection>(_ firstBytes: Bytes) -> Classification where Bytes.Element == UInt8 {
        guard let first = firstBytes.first else { return .needMoreBytes }
        var matched = 0
        for byte in firstBytes.prefix(preamble.count) {
            guard byte == preamble[matched] else { break }
            matched += 1
        }
        if matched == preamble.count { return .peer }
        if matched == min(firstBytes.count, preamble.count) { return .needMoreBytes }
        if first == preamble[0] { return .invalid }
        return isTokenCharacter(first) ? .http : .invalid
    }

    /// RFC 9110 `tchar`.
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"),
            UInt8(ascii: "'"), UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."),
            UInt8(ascii: "^"), UInt8(ascii: "_"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    // MARK: - Encoding

    /// Writes the preamble.
    public static func writePreamble(into buffer: inout ByteBuffer) {
        buffer.writeBytes(preamble)
    }

    /// Encodes `frame` (length prefix included) into a new buffer sized exactly for it.
    public static func encode(_ frame: PeerFrame, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer
    {
        var buffer = allocator.buffer(capacity: frameHeaderLength + payloadLength(of: frame))
        encode(frame, into: &buffer)
        return buffer
    }

    /// Appends `frame` (length prefix included) to `buffer`. One capacity reservation, no intermediate copies.
    public static func encode(_ frame: PeerFrame, into buffer: inout ByteBuffer) {
        let payload = payloadLength(of: frame)
        buffer.reserveCapacity(minimumWritableBytes: frameHeaderLength + payload)
        let start = buffer.writerIndex
        buffer.writeInteger(UInt32(truncatingIfNeeded: 1 + payload))
        switch frame {
        case .hello(let hello):
            buffer.writeInteger(FrameType.hello.rawValue)
            buffer.writeInteger(hello.nodeID)
            buffer.writeInteger(hello.version)
            if hello.clusterID != 0 { buffer.writeInteger(hello.clusterID) }
        case .raft(let message, let snapshotData):
            buffer.writeInteger(FrameType.raft.rawValue)
            writeMessage(message, into: &buffer)
            if let data = snapshotData {
                buffer.writeInteger(UInt8(1))
                writeBytesField(data, into: &buffer)
            } else {
                buffer.writeInteger(UInt8(0))
            }
        case .forwardRequest(let id, let request):
            buffer.writeInteger(FrameType.forwardRequest.rawValue)
            buffer.writeInteger(id)
            writeString(request.method, into: &buffer)
            writeString(request.uri, into: &buffer)
            writeHeaders(request.headers, into: &buffer)
            writeBytesField(request.body, into: &buffer)
        case .forwardResponse(let id, let response):
            buffer.writeInteger(FrameType.forwardResponse.rawValue)
            buffer.writeInteger(id)
            buffer.writeInteger(UInt16(clamping: response.status))
            writeHeaders(response.headers, into: &buffer)
            writeBytesField(response.body, into: &buffer)
        case .snapshotChunk(let chunk):
            buffer.writeInteger(FrameType.snapshotChunk.rawValue)
            buffer.writeInteger(chunk.transfer)
            buffer.writeInteger(chunk.offset)
            buffer.writeInteger(chunk.total)
            buffer.writeInteger(chunk.checksum)
            writeBytesField(chunk.data, into: &buffer)
            if let message = chunk.message {
                buffer.writeInteger(UInt8(1))
                writeMessage(message, into: &buffer)
            } else {
                buffer.writeInteger(UInt8(0))
            }
        case .snapshotAck(let transfer, let offset):
            buffer.writeInteger(FrameType.snapshotAck.rawValue)
            buffer.writeInteger(transfer)
            buffer.writeInteger(offset)
        }
        assert(buffer.writerIndex - start == frameHeaderLength + payload, "payloadLength(of:) disagrees with encode")
    }

    /// The exact payload length (after the type byte) of `frame`.
    static func payloadLength(of frame: PeerFrame) -> Int {
        switch frame {
        case .hello(let hello):
            return 8 + 2 + (hello.clusterID != 0 ? 8 : 0)
        case .raft(let message, let snapshotData):
            return messageLength(message) + 1 + (snapshotData.map { 4 + $0.count } ?? 0)
        case .forwardRequest(_, let request):
            return 8 + 4 + request.method.utf8.count + 4 + request.uri.utf8.count + headersLength(request.headers)
                + 4 + request.body.count
        case .forwardResponse(_, let response):
            return 8 + 2 + headersLength(response.headers) + 4 + response.body.count
        case .snapshotChunk(let chunk):
            return 8 * 4 + 4 + chunk.data.count + 1 + (chunk.message.map(messageLength) ?? 0)
        case .snapshotAck:
            return 8 + 8
        }
    }

    static func messageLength(_ message: Message) -> Int {
        let head = 8 + 8 + 8 + 1
        switch message.body {
        case .requestVote: return head + 8 + 8 + 1
        case .voteResponse: return head + 1
        case .appendEntries(_, _, let entries, _, _):
            var total = head + 8 + 8 + 8 + 8 + 4
            for entry in entries { total += minimumEntryLength + entry.data.count }
            return total
        case .appendResponse(.success, _): return head + 8 + 1 + 8
        case .appendResponse(.reject(_, let conflictTerm, _), _):
            return head + 8 + 1 + 8 + 1 + (conflictTerm == nil ? 0 : 8) + 8
        case .heartbeat: return head + 8 + 8
        case .heartbeatResponse: return head + 8
        case .installSnapshot(let meta):
            return head + 8 + 8 + 4 + 8 * meta.membership.voters.count + 4 + 8 * meta.membership.learners.count
                + 4 + meta.membership.encodedAddresses.count
        case .timeoutNow: return head
        case .readIndex: return head + 8 + 1
        case .readIndexResponse(_, let index): return head + 8 + 1 + (index == nil ? 0 : 8)
        }
    }

    static func headersLength(_ headers: [(String, String)]) -> Int {
        var total = 4
        for (name, value) in headers { total += 8 + name.utf8.count + value.utf8.count }
        return total
    }

    static func writeMessage(_ message: Message, into buffer: inout ByteBuffer) {
        buffer.writeInteger(message.from)
        buffer.writeInteger(message.to)
        buffer.writeInteger(message.term)
        switch message.body {
        case .requestVote(let lastIndex, let lastTerm, let preVote, let transfer):
            buffer.writeInteger(BodyTag.requestVote.rawValue)
            buffer.writeInteger(lastIndex)
            buffer.writeInteger(lastTerm)
            buffer.writeInteger(flags(preVote, transfer))
        case .voteResponse(let granted, let preVote):
            buffer.writeInteger(BodyTag.voteResponse.rawValue)
            buffer.writeInteger(flags(granted, preVote))
        case .appendEntries(let prevIndex, let prevTerm, let entries, let commit, let round):
            buffer.writeInteger(BodyTag.appendEntries.rawValue)
            buffer.writeInteger(prevIndex)
            buffer.writeInteger(prevTerm)
            buffer.writeInteger(commit)
            buffer.writeInteger(round)
            buffer.writeInteger(UInt32(truncatingIfNeeded: entries.count))
            for entry in entries {
                buffer.writeInteger(entry.term)
                buffer.writeInteger(entry.index)
                buffer.writeInteger(entry.kind.rawValue)
                buffer.writeInteger(entry.clientID)
                buffer.writeInteger(entry.sequence)
                writeBytesField(entry.data, into: &buffer)
            }
        case .appendResponse(let result, let round):
            buffer.writeInteger(BodyTag.appendResponse.rawValue)
            buffer.writeInteger(round)
            switch result {
            case .success(let matchIndex):
                buffer.writeInteger(UInt8(0))
                buffer.writeInteger(matchIndex)
            case .reject(let rejectedIndex, let conflictTerm, let conflictIndex):
                buffer.writeInteger(UInt8(1))
                buffer.writeInteger(rejectedIndex)
                if let conflictTerm {
                    buffer.writeInteger(UInt8(1))
                    buffer.writeInteger(conflictTerm)
                } else {
                    buffer.writeInteger(UInt8(0))
                }
                buffer.writeInteger(conflictIndex)
            }
        case .heartbeat(let commit, let round):
            buffer.writeInteger(BodyTag.heartbeat.rawValue)
            buffer.writeInteger(commit)
            buffer.writeInteger(round)
        case .heartbeatResponse(let round):
            buffer.writeInteger(BodyTag.heartbeatResponse.rawValue)
            buffer.writeInteger(round)
        case .installSnapshot(let meta):
            buffer.writeInteger(BodyTag.installSnapshot.rawValue)
            buffer.writeInteger(meta.index)
            buffer.writeInteger(meta.term)
            for set in [meta.membership.voters, meta.membership.learners] {
                buffer.writeInteger(UInt32(truncatingIfNeeded: set.count))
                for id in set.sorted() { buffer.writeInteger(id) }
            }
            writeBytesField(meta.membership.encodedAddresses, into: &buffer)
        case .timeoutNow:
            buffer.writeInteger(BodyTag.timeoutNow.rawValue)
        case .readIndex(let batch, let lease):
            buffer.writeInteger(BodyTag.readIndex.rawValue)
            buffer.writeInteger(batch)
            buffer.writeInteger(flags(lease, false))
        case .readIndexResponse(let batch, let index):
            buffer.writeInteger(BodyTag.readIndexResponse.rawValue)
            buffer.writeInteger(batch)
            if let index {
                buffer.writeInteger(UInt8(1))
                buffer.writeInteger(index)
            } else {
                buffer.writeInteger(UInt8(0))
            }
        }
    }

    @inline(__always)
    static func flags(_ bit0: Bool, _ bit1: Bool) -> UInt8 {
        (bit0 ? 1 : 0) | (bit1 ? 2 : 0)
    }

    @inline(__always)
    static func writeBytesField(_ bytes: [UInt8], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(truncatingIfNeeded: bytes.count))
        buffer.writeBytes(bytes)
    }

    @inline(__always)
    static func writeString(_ string: String, into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(truncatingIfNeeded: string.utf8.count))
        buffer.writeString(string)
    }

    static func writeHeaders(_ headers: [(String, String)], into buffer: inout ByteBuffer) {
        buffer.writeInteger(UInt32(truncatingIfNeeded: headers.count))
        for (name, value) in headers {
            writeString(name, into: &buffer)
            writeString(value, into: &buffer)
        }
    }

    // MARK: - Decoding

    /// Checks and consumes the preamble. Returns `false` when fewer than `preamble.count` bytes are readable.
    public static func readPreamble(from buffer: inout ByteBuffer) throws(PeerWireError) -> Bool {
        guard let bytes = buffer.getBytes(at: buffer.readerIndex, length: preamble.count) else { return false }
        guard bytes == preamble else { throw .badPreamble }
        buffer.moveReaderIndex(forwardBy: preamble.count)
        return true
    }

    /// Decodes one complete frame from the front of `buffer`, or returns `nil` (consuming nothing) when the frame is
    /// not complete yet. A length over `maxFrameLength` is rejected as soon as the 4-byte prefix is readable.
    public static func decodeFrame(
        from buffer: inout ByteBuffer, maxFrameLength: Int = defaultMaxFrameLength
    ) throws(PeerWireError) -> PeerFrame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, as: UInt32.self) else { return nil }
        guard length > 0 else { throw .emptyFrame }
        guard UInt64(length) <= UInt64(max(maxFrameLength, 0)) else {
            throw .frameTooLarge(length: length, limit: maxFrameLength)
        }
        guard buffer.readableBytes >= 4 + Int(length) else { return nil }
        buffer.moveReaderIndex(forwardBy: 4)
        guard var payload = buffer.readSlice(length: Int(length)), let type = payload.readInteger(as: UInt8.self) else {
            throw .truncated
        }
        return try decodePayload(type: type, payload: &payload)
    }

    /// Decodes a whole frame body (the bytes after the length prefix) and requires that nothing is left over.
    public static func decodeFrameBody(_ body: ByteBuffer) throws(PeerWireError) -> PeerFrame {
        var body = body
        guard let type = body.readInteger(as: UInt8.self) else { throw .emptyFrame }
        return try decodePayload(type: type, payload: &body)
    }

    static func decodePayload(type: UInt8, payload: inout ByteBuffer) throws(PeerWireError) -> PeerFrame {
        guard let frameType = FrameType(rawValue: type) else { throw .badFrameType(type) }
        let frame: PeerFrame
        switch frameType {
        case .hello:
            let nodeID = try payload.wireU64()
            let version = try payload.wireU16()
            let clusterID = payload.readableBytes >= 8 ? try payload.wireU64() : 0
            frame = .hello(PeerHello(nodeID: nodeID, version: version, clusterID: clusterID))
        case .raft:
            let message = try readMessage(from: &payload)
            let snapshotData = try payload.wireBool(field: "snapshotData.present") ? try payload.wireBytes() : nil
            frame = .raft(message, snapshotData: snapshotData)
        case .forwardRequest:
            let id = try payload.wireU64()
            let method = try payload.wireString(field: "method")
            let uri = try payload.wireString(field: "uri")
            let headers = try payload.wireHeaders()
            let body = try payload.wireBytes()
            frame = .forwardRequest(id: id, TunnelledRequest(method: method, uri: uri, headers: headers, body: body))
        case .forwardResponse:
            let id = try payload.wireU64()
            let status = Int(try payload.wireU16())
            let headers = try payload.wireHeaders()
            let body = try payload.wireBytes()
            frame = .forwardResponse(id: id, TunnelledResponse(status: status, headers: headers, body: body))
        case .snapshotChunk:
            let transfer = try payload.wireU64()
            let offset = try payload.wireU64()
            let total = try payload.wireU64()
            let checksum = try payload.wireU64()
            let data = try payload.wireBytes()
            let message = try payload.wireBool(field: "snapshotChunk.message.present") ? try readMessage(from: &payload) : nil
            frame = .snapshotChunk(
                SnapshotChunk(
                    transfer: transfer, offset: offset, total: total, checksum: checksum, data: data, message: message))
        case .snapshotAck:
            frame = .snapshotAck(transfer: try payload.wireU64(), offset: try payload.wireU64())
        }
        guard payload.readableBytes == 0 else { throw .trailingBytes(payload.readableBytes) }
        return frame
    }

    static func readMessage(from buffer: inout ByteBuffer) throws(PeerWireError) -> Message {
        let from = try buffer.wireU64()
        let to = try buffer.wireU64()
        let term = try buffer.wireU64()
        let rawTag = try buffer.wireU8()
        guard let tag = BodyTag(rawValue: rawTag) else { throw .invalidValue(field: "body", value: UInt64(rawTag)) }
        let body: Message.Body
        switch tag {
        case .requestVote:
            let lastIndex = try buffer.wireU64()
            let lastTerm = try buffer.wireU64()
            let (preVote, transfer) = try buffer.wireFlags(field: "requestVote.flags")
            body = .requestVote(lastIndex: lastIndex, lastTerm: lastTerm, preVote: preVote, transfer: transfer)
        case .voteResponse:
            let (granted, preVote) = try buffer.wireFlags(field: "voteResponse.flags")
            body = .voteResponse(granted: granted, preVote: preVote)
        case .appendEntries:
            let prevIndex = try buffer.wireU64()
            let prevTerm = try buffer.wireU64()
            let commit = try buffer.wireU64()
            let round = try buffer.wireU64()
            let count = Int(try buffer.wireU32())
            guard count <= buffer.readableBytes / minimumEntryLength else { throw .truncated }
            var entries: [Entry] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let entryTerm = try buffer.wireU64()
                let index = try buffer.wireU64()
                let rawKind = try buffer.wireU8()
                guard let kind = EntryKind(rawValue: rawKind) else {
                    throw .invalidValue(field: "entry.kind", value: UInt64(rawKind))
                }
                let clientID = try buffer.wireU64()
                let sequence = try buffer.wireU64()
                let data = try buffer.wireBytes()
                entries.append(
                    Entry(term: entryTerm, index: index, kind: kind, clientID: clientID, sequence: sequence, data: data)
                )
            }
            body = .appendEntries(
                prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit, round: round)
        case .appendResponse:
            let round = try buffer.wireU64()
            let resultTag = try buffer.wireU8()
            switch resultTag {
            case 0:
                body = .appendResponse(.success(matchIndex: try buffer.wireU64()), round: round)
            case 1:
                let rejectedIndex = try buffer.wireU64()
                let conflictTerm =
                    try buffer.wireBool(field: "reject.conflictTerm.present") ? try buffer.wireU64() : nil
                let conflictIndex = try buffer.wireU64()
                let result = Message.AppendResult.reject(
                    rejectedIndex: rejectedIndex, conflictTerm: conflictTerm, conflictIndex: conflictIndex
                )
                body = .appendResponse(result, round: round)
            default:
                throw .invalidValue(field: "appendResponse.result", value: UInt64(resultTag))
            }
        case .heartbeat:
            let commit = try buffer.wireU64()
            body = .heartbeat(commit: commit, round: try buffer.wireU64())
        case .heartbeatResponse:
            body = .heartbeatResponse(round: try buffer.wireU64())
        case .installSnapshot:
            let index = try buffer.wireU64()
            let snapshotTerm = try buffer.wireU64()
            let voters = try buffer.wireNodeSet()
            let learners = try buffer.wireNodeSet()
            let table = try buffer.wireBytes()
            var offset = 0
            guard let addresses = Membership.decodeAddresses(table, at: &offset), offset == table.count else {
                throw .invalidValue(field: "installSnapshot.addresses", value: UInt64(table.count))
            }
            let membership = Membership(voters: voters, learners: learners, addresses: addresses)
            body = .installSnapshot(SnapshotMetadata(index: index, term: snapshotTerm, membership: membership))
        case .timeoutNow:
            body = .timeoutNow
        case .readIndex:
            let batch = try buffer.wireU64()
            body = .readIndex(batch: batch, lease: try buffer.wireBool(field: "readIndex.lease"))
        case .readIndexResponse:
            let batch = try buffer.wireU64()
            let index = try buffer.wireBool(field: "readIndexResponse.index.present") ? try buffer.wireU64() : nil
            body = .readIndexResponse(batch: batch, index: index)
        }
        return Message(from: from, to: to, term: term, body: body)
    }
}

// MARK: - Checked reads

extension ByteBuffer {
    @inline(__always)
    fileprivate mutating func wireU8() throws(PeerWireError) -> UInt8 {
        guard let value = readInteger(as: UInt8.self) else { throw .truncated }
        return value
    }

    @inline(__always)
    fileprivate mutating func wireU16() throws(PeerWireError) -> UInt16 {
        guard let value = readInteger(as: UInt16.self) else { throw .truncated }
        return value
    }

    @inline(__always)
    fileprivate mutating func wireU32() throws(PeerWireError) -> UInt32 {
        guard let value = readInteger(as: UInt32.self) else { throw .truncated }
        return value
    }

    @inline(__always)
    fileprivate mutating func wireU64() throws(PeerWireError) -> UInt64 {
        guard let value = readInteger(as: UInt64.self) else { throw .truncated }
        return value
    }

    fileprivate mutating func wireBool(field: String) throws(PeerWireError) -> Bool {
        let byte = try wireU8()
        switch byte {
        case 0: return false
        case 1: return true
        default: throw .invalidValue(field: field, value: UInt64(byte))
        }
    }

    /// Two booleans packed in bits 0 and 1; any other bit set is invalid.
    fileprivate mutating func wireFlags(field: String) throws(PeerWireError) -> (Bool, Bool) {
        let byte = try wireU8()
        guard byte & ~0b11 == 0 else { throw .invalidValue(field: field, value: UInt64(byte)) }
        return (byte & 1 != 0, byte & 2 != 0)
    }

    fileprivate mutating func wireBytes() throws(PeerWireError) -> [UInt8] {
        let length = Int(try wireU32())
        guard let bytes = readBytes(length: length) else { throw .truncated }
        return bytes
    }

    fileprivate mutating func wireString(field: String) throws(PeerWireError) -> String {
        let length = Int(try wireU32())
        guard length <= readableBytes else { throw .truncated }
        let string: String?
        do {
            string = try readUTF8ValidatedString(length: length)
        } catch {
            throw .invalidUTF8(field: field)
        }
        guard let string else { throw .truncated }
        return string
    }

    fileprivate mutating func wireHeaders() throws(PeerWireError) -> [(String, String)] {
        let count = Int(try wireU32())
        guard count <= readableBytes / 8 else { throw .truncated }
        var headers: [(String, String)] = []
        headers.reserveCapacity(count)
        for _ in 0..<count {
            let name = try wireString(field: "header.name")
            let value = try wireString(field: "header.value")
            headers.append((name, value))
        }
        return headers
    }

    fileprivate mutating func wireNodeSet() throws(PeerWireError) -> Set<NodeID> {
        let count = Int(try wireU32())
        guard count <= readableBytes / 8 else { throw .truncated }
        var ids = Set<NodeID>(minimumCapacity: count)
        for _ in 0..<count { ids.insert(try wireU64()) }
        return ids
    }
}

// MARK: - Frame decoder

/// Splits a byte stream into ``PeerFrame``s. Only framing and decoding: protocol rules (hello first, which frames
/// may arrive in which direction) live in ``PeerConnectionStateMachine``.
///
/// With `expectsPreamble` (accepted connections) the stream must start with ``PeerWire/preamble``.
public struct PeerFrameDecoder: ByteToMessageDecoder {
    public typealias InboundOut = PeerFrame

    private var awaitingPreamble: Bool
    private let maxFrameLength: Int

    public init(expectsPreamble: Bool, maxFrameLength: Int = PeerWire.defaultMaxFrameLength) {
        self.awaitingPreamble = expectsPreamble
        self.maxFrameLength = maxFrameLength
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        if awaitingPreamble {
            guard try PeerWire.readPreamble(from: &buffer) else { return .needMoreData }
            awaitingPreamble = false
        }
        guard let frame = try PeerWire.decodeFrame(from: &buffer, maxFrameLength: maxFrameLength) else {
            return .needMoreData
        }
        context.fireChannelRead(wrapInboundOut(frame))
        return .continue
    }

    public mutating func decodeLast(
        context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool
    ) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        // A partial frame at end of stream is dropped: the sender's connection died mid-frame.
        buffer.moveReaderIndex(to: buffer.writerIndex)
        return .needMoreData
    }
}
