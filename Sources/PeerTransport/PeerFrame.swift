import RaftCore

// MARK: - Frames

/// One unit of the peer protocol. See ``PeerWire`` for the byte layout.
public enum PeerFrame: Sendable, Equatable, CustomStringConvertible {
    /// The first frame in each direction: who is speaking and which protocol version it speaks.
    case hello(PeerHello)
    /// A Raft message. `snapshotData` carries the bulk data of an `installSnapshot` beside its metadata.
    case raft(Message, snapshotData: [UInt8]?)
    /// A client HTTP request tunnelled from a follower to the leader; answered by a `forwardResponse` with the
    /// same `id` on the same connection.
    case forwardRequest(id: UInt64, TunnelledRequest)
    /// The leader's answer to a `forwardRequest`.
    case forwardResponse(id: UInt64, TunnelledResponse)
    /// One piece of a snapshot too large for one frame; the last piece carries its `installSnapshot` message.
    case snapshotChunk(SnapshotChunk)
    /// Receiver to sender, on the sender's connection: "I already hold bytes `0..<offset` of `transfer`; continue
    /// from there" (the answer to a transfer restarted at offset 0 after a reconnect; see ``SnapshotChunk``).
    case snapshotAck(transfer: UInt64, offset: UInt64)

    /// A stable one-line description, used by logs and tests.
    public var description: String {
        switch self {
        case .hello(let hello): return "Hello node=\(hello.nodeID) v\(hello.version)"
        case .raft(let message, let data):
            return data.map { "Raft \(message) data=\($0.count)B" } ?? "Raft \(message)"
        case .forwardRequest(let id, let request): return "Forward#\(id) \(request.method) \(request.uri)"
        case .forwardResponse(let id, let response): return "ForwardResp#\(id) \(response.status)"
        case .snapshotChunk(let chunk):
            return "SnapshotChunk#\(chunk.transfer) \(chunk.offset)+\(chunk.data.count)/\(chunk.total)"
                + (chunk.message.map { " \($0)" } ?? "")
        case .snapshotAck(let transfer, let offset): return "SnapshotAck#\(transfer) have=\(offset)"
        }
    }
}

/// The hello frame's content.
public struct PeerHello: Sendable, Equatable {
    public var nodeID: NodeID
    public var version: UInt16
    /// The sender's cluster id (a restored cluster's, from its data directory), 0 for none: sent only when not 0,
    /// so the hellos of clusters without one are unchanged. Peers with different ids refuse each other.
    public var clusterID: UInt64

    public init(nodeID: NodeID, version: UInt16 = PeerWire.protocolVersion, clusterID: UInt64 = 0) {
        self.nodeID = nodeID
        self.version = version
        self.clusterID = clusterID
    }
}

// MARK: - Forwarded HTTP

/// A client HTTP request that a follower tunnels to the leader.
public struct TunnelledRequest: Sendable, Equatable {
    public var method: String
    public var uri: String
    /// Header fields in order; names may repeat.
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(method: String, uri: String, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.method = method
        self.uri = uri
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: TunnelledRequest, rhs: TunnelledRequest) -> Bool {
        lhs.method == rhs.method && lhs.uri == rhs.uri && lhs.body == rhs.body
            && headersEqual(lhs.headers, rhs.headers)
    }
}

/// The leader's answer to a ``TunnelledRequest``, relayed to the client by the follower. `status` travels as a u16.
public struct TunnelledResponse: Sendable, Equatable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public static func == (lhs: TunnelledResponse, rhs: TunnelledResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && headersEqual(lhs.headers, rhs.headers)
    }
}

func headersEqual(_ lhs: [(String, String)], _ rhs: [(String, String)]) -> Bool {
    lhs.count == rhs.count && zip(lhs, rhs).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
}

// MARK: - Errors

/// Why bytes from a peer were rejected. The connection that produced them is closed.
public enum PeerWireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The bytes end inside a field, or a count promises more data than the frame holds.
    case truncated
    /// The connection did not open with ``PeerWire/preamble``.
    case badPreamble
    /// A frame's length field is zero (every frame has at least a type byte).
    case emptyFrame
    /// A frame's length field exceeds the cap; rejected before any allocation.
    case frameTooLarge(length: UInt32, limit: Int)
    /// An unknown frame type byte.
    case badFrameType(UInt8)
    /// An enum tag, boolean or flag byte out of range.
    case invalidValue(field: String, value: UInt64)
    /// A string field that is not valid UTF-8.
    case invalidUTF8(field: String)
    /// Bytes left in a frame after its last field.
    case trailingBytes(Int)
    /// The peer speaks a protocol version this node does not.
    case unsupportedVersion(UInt16)
    /// A well-formed frame that the protocol does not allow here (e.g. anything before hello).
    case unexpectedFrame(String)

    /// A stable machine-readable code.
    public var code: String {
        switch self {
        case .truncated: return "truncated"
        case .badPreamble: return "bad_preamble"
        case .emptyFrame: return "empty_frame"
        case .frameTooLarge: return "frame_too_large"
        case .badFrameType: return "bad_frame_type"
        case .invalidValue: return "invalid_value"
        case .invalidUTF8: return "invalid_utf8"
        case .trailingBytes: return "trailing_bytes"
        case .unsupportedVersion: return "unsupported_version"
        case .unexpectedFrame: return "unexpected_frame"
        }
    }

    public var description: String {
        switch self {
        case .truncated: return "truncated: the input ends inside a field"
        case .badPreamble: return "bad preamble"
        case .emptyFrame: return "empty frame"
        case .frameTooLarge(let length, let limit): return "frame length \(length) exceeds the limit \(limit)"
        case .badFrameType(let type): return "unknown frame type \(type)"
        case .invalidValue(let field, let value): return "invalid value \(value) for \(field)"
        case .invalidUTF8(let field): return "\(field) is not valid UTF-8"
        case .trailingBytes(let count): return "\(count) trailing bytes after the last field"
        case .unsupportedVersion(let version): return "unsupported protocol version \(version)"
        case .unexpectedFrame(let what): return "unexpected frame: \(what)"
        }
    }
}

// MARK: - Snapshot chunks

/// A slice of a snapshot's bulk data. A transfer is the chunks of one snapshot, in order, from offset 0 to `total`;
/// each is checked by its own FNV-1a-64 checksum, and the last one carries the `installSnapshot` message. The
/// receiver stages them in a file per sender (``SnapshotStaging``). A chunk that leaves a gap, or a bad one, drops
/// the transfer; a chunk below what the receiver holds is a duplicate and is ignored. After a reconnect the sender
/// restarts at offset 0; a receiver that holds more of the same transfer (same id, total and first-chunk checksum)
/// answers ``PeerFrame/snapshotAck(transfer:offset:)`` and the sender continues from that offset.
public struct SnapshotChunk: Sendable, Equatable {
    public var transfer: UInt64
    public var offset: UInt64
    public var total: UInt64
    public var checksum: UInt64
    public var data: [UInt8]
    public var message: Message?

    public init(transfer: UInt64, offset: UInt64, total: UInt64, data: [UInt8], message: Message? = nil) {
        self.transfer = transfer
        self.offset = offset
        self.total = total
        self.data = data
        self.checksum = SnapshotChunk.fnv1a(data)
        self.message = message
    }

    init(transfer: UInt64, offset: UInt64, total: UInt64, checksum: UInt64, data: [UInt8], message: Message?) {
        self.transfer = transfer
        self.offset = offset
        self.total = total
        self.checksum = checksum
        self.data = data
        self.message = message
    }

    /// FNV-1a, 64 bits.
    public static func fnv1a(_ bytes: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        bytes.withUnsafeBufferPointer { buffer in
            for byte in buffer {
                hash ^= UInt64(byte)
                hash = hash &* 0x0000_0100_0000_01B3
            }
        }
        return hash
    }

    /// Splits `data` into chunks of at most `size` bytes; the last carries `message`.
    public static func split(_ data: [UInt8], message: Message, transfer: UInt64, size: Int) -> [SnapshotChunk] {
        precondition(size > 0)
        var chunks: [SnapshotChunk] = []
        var offset = 0
        repeat {
            let end = min(data.count, offset + size)
            chunks.append(
                SnapshotChunk(
                    transfer: transfer, offset: UInt64(offset), total: UInt64(data.count), data: Array(data[offset..<end]),
                    message: end == data.count ? message : nil))
            offset = end
        } while offset < data.count
        return chunks
    }
}
