import RaftCore

/// The framing of one WAL record and the encodings of the record payloads.
///
/// ```
/// offset 0  u32  payload length (little-endian)
///        4  u8   record type
///        5  u32  CRC32C over type + payload
///        9  u32  CRC32C over bytes 0..<9 (the header check)
///       13  ...  payload
/// ```
///
/// The header check makes a damaged length field detectable before the length is trusted: without it a flipped bit
/// in a length in the middle of a segment would look like a record running past the end of the file, which recovery
/// must treat as a torn tail.
public enum WALRecord: Sendable, Equatable {
    case entry(Entry)
    case hardState(HardState)
    /// A snapshot was recorded. `keepsLog` is decided when writing (the log held the snapshot's last entry) so that
    /// replay never re-derives it from entries an earlier, deleted segment held; if false the snapshot becomes the
    /// log's base and every entry is discarded.
    case snapshot(SnapshotMetadata, keepsLog: Bool)
    /// The log was compacted: entries `<= index` are gone, the entry at `index` had `term`.
    case compact(index: LogIndex, term: Term)
    /// A segment's prologue: restates the base, snapshot and hard state so that the segments before it can go.
    case checkpoint(baseIndex: LogIndex, baseTerm: Term, snapshot: SnapshotMetadata?, hardState: HardState)
    /// Opens a batch: its segment was fsynced through byte `offset` before the batch was written. Recovery takes the
    /// newest one it can read as the segment's last synced offset: damage after it is a torn tail (the OS may write
    /// unsynced pages in any order), damage before it is corruption.
    case syncMark(offset: UInt64)

    public static let headerSize = 13
    /// Records larger than this are refused when writing and treated as damage when reading.
    public static let maxPayload = 64 << 20

    enum RecordType: UInt8 {
        case entry = 1
        case hardState = 2
        case snapshot = 3
        case compact = 4
        case checkpoint = 5
        case syncMark = 6
    }

    // MARK: encoding

    /// Appends the framed record to `out`; returns the offset of the payload inside `out`.
    @discardableResult
    public func frame(into out: inout [UInt8]) -> Int {
        // Written in place: a header placeholder, then the payload straight into `out`, then the header patched.
        // No intermediate payload or header array: `out` only grows (geometrically) when the caller did not reserve.
        let start = out.count
        var payload = ByteWriter(taking: &out)
        for _ in 0..<Self.headerSize { payload.u8(0) }
        let payloadOffset = start + Self.headerSize
        let type: RecordType
        switch self {
        case .entry(let e):
            type = .entry
            payload.u64(e.term)
            payload.u64(e.index)
            payload.u8(e.kind.rawValue)
            payload.u64(e.clientID)
            payload.u64(e.sequence)
            payload.raw(e.data)
        case .hardState(let hs):
            type = .hardState
            payload.u64(hs.term)
            payload.u8(hs.vote == nil ? 0 : 1)
            payload.u64(hs.vote ?? 0)
            payload.u64(hs.commit)
        case .snapshot(let meta, let keepsLog):
            type = .snapshot
            Self.encode(meta, into: &payload)
            payload.u8(keepsLog ? 1 : 0)
        case .compact(let index, let term):
            type = .compact
            payload.u64(index)
            payload.u64(term)
        case .checkpoint(let baseIndex, let baseTerm, let snapshot, let hs):
            type = .checkpoint
            payload.u64(baseIndex)
            payload.u64(baseTerm)
            payload.u64(hs.term)
            payload.u8(hs.vote == nil ? 0 : 1)
            payload.u64(hs.vote ?? 0)
            payload.u64(hs.commit)
            payload.u8(snapshot == nil ? 0 : 1)
            if let snapshot { Self.encode(snapshot, into: &payload) }
        case .syncMark(let offset):
            type = .syncMark
            payload.u64(offset)
        }
        payload.give(to: &out)
        let bodyCount = out.count - payloadOffset
        let typeCRC = withUnsafeBytes(of: type.rawValue) { CRC32C.checksum($0) }
        let bodyCRC = out.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[payloadOffset...]), continuing: typeCRC)
        }
        out.withUnsafeMutableBytes { bytes in
            func put32(_ v: UInt32, at offset: Int) {
                for s in 0..<4 { bytes[start + offset + s] = UInt8(truncatingIfNeeded: v >> (8 * s)) }
            }
            put32(UInt32(bodyCount), at: 0)
            bytes[start + 4] = type.rawValue
            put32(bodyCRC, at: 5)
            put32(CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + 9)])), at: 9)
        }
        return payloadOffset
    }

    /// The framed size of an entry record exactly; an estimate for the rest (a buffer reservation).
    var estimatedFrameSize: Int {
        if case .entry(let e) = self { return Self.headerSize + 33 + e.data.count }
        return Self.headerSize + 64
    }

    public var framed: [UInt8] {
        var out: [UInt8] = []
        frame(into: &out)
        return out
    }

    /// Set in the voter count when an address table follows the learners. Records written before addresses were
    /// replicated never set it (counts are far below 2^31), so they still decode.
    static let addressTableFlag: UInt32 = 0x8000_0000

    static func encode(_ meta: SnapshotMetadata, into w: inout ByteWriter) {
        w.u64(meta.index)
        w.u64(meta.term)
        let hasAddresses = !meta.membership.addresses.isEmpty
        w.u32(UInt32(meta.membership.voters.count) | (hasAddresses ? addressTableFlag : 0))
        for id in meta.membership.voters.sorted() { w.u64(id) }
        w.u32(UInt32(meta.membership.learners.count))
        for id in meta.membership.learners.sorted() { w.u64(id) }
        if hasAddresses { w.blob(meta.membership.encodedAddresses) }
    }

    static func decodeSnapshotMetadata(_ r: inout ByteReader) throws -> SnapshotMetadata {
        let index = try r.u64("snapshot index")
        let term = try r.u64("snapshot term")
        var hasAddresses = false
        func ids(_ what: String, flagged: Bool = false) throws -> Set<NodeID> {
            var n = Int(try r.u32("\(what) count"))
            if flagged && n & Int(addressTableFlag) != 0 {
                hasAddresses = true
                n &= ~Int(addressTableFlag)
            }
            guard n <= r.remaining / 8 else { throw DecodeError("\(what) count \(n) exceeds the record") }
            var set = Set<NodeID>()
            for _ in 0..<n { set.insert(try r.u64(what)) }
            return set
        }
        let voters = try ids("voters", flagged: true)
        let learners = try ids("learners")
        var addresses: [NodeID: String] = [:]
        if hasAddresses {
            let table = try r.blob("address table")
            var offset = 0
            guard let decoded = Membership.decodeAddresses(table, at: &offset), offset == table.count else {
                throw DecodeError("malformed address table")
            }
            addresses = decoded
        }
        return SnapshotMetadata(
            index: index, term: term, membership: Membership(voters: voters, learners: learners, addresses: addresses))
    }

    // MARK: decoding

    /// The result of looking at the bytes at one offset of a segment.
    public enum Parse: Equatable {
        /// A whole, valid record of `length` bytes (header included).
        case record(WALRecord, length: Int)
        /// The bytes end before the header or the payload does.
        case incomplete
        /// The header check failed: the length cannot be trusted.
        case badHeader
        /// The header is sound, the payload checksum is not; the record spans `length` bytes.
        case badPayload(length: Int)
        /// Checksums match but the payload does not decode (an encoder bug or a foreign file).
        case malformed(String, length: Int)
    }

    /// Parses the record at the start of `bytes`. Never traps, never reads past `bytes`.
    public static func parse(_ bytes: ArraySlice<UInt8>) -> Parse {
        guard bytes.count >= headerSize else { return .incomplete }
        var r = ByteReader(bytes)
        // The reads below cannot fail: 13 bytes are present.
        let length = Int((try? r.u32()) ?? 0)
        let type = (try? r.u8()) ?? 0
        let dataCRC = (try? r.u32()) ?? 0
        let headerCRC = (try? r.u32()) ?? 0
        let start = bytes.startIndex
        guard CRC32C.checksum(bytes[start..<start + 9]) == headerCRC else { return .badHeader }
        guard length <= maxPayload else { return .malformed("record length \(length) exceeds the limit", length: 0) }
        guard bytes.count - headerSize >= length else { return .incomplete }
        let payload = bytes[(start + headerSize)..<(start + headerSize + length)]
        guard CRC32C.checksum(payload, continuing: withUnsafeBytes(of: type) { CRC32C.checksum($0) }) == dataCRC else {
            return .badPayload(length: headerSize + length)
        }
        do {
            return .record(try decodePayload(type: type, payload), length: headerSize + length)
        } catch {
            return .malformed("\(error)", length: headerSize + length)
        }
    }

    static func decodeHardState(_ r: inout ByteReader) throws -> HardState {
        let term = try r.u64("term")
        let hasVote = try r.u8("vote flag")
        let vote = try r.u64("vote")
        let commit = try r.u64("commit")
        guard hasVote <= 1 else { throw DecodeError("bad vote flag \(hasVote)") }
        return HardState(term: term, vote: hasVote == 1 ? vote : nil, commit: commit)
    }

    static func decodePayload(type: UInt8, _ payload: ArraySlice<UInt8>) throws -> WALRecord {
        var r = ByteReader(payload)
        switch RecordType(rawValue: type) {
        case .entry:
            let term = try r.u64("term")
            let index = try r.u64("index")
            let rawKind = try r.u8("kind")
            guard let kind = EntryKind(rawValue: rawKind) else { throw DecodeError("unknown entry kind \(rawKind)") }
            let client = try r.u64("client id")
            let sequence = try r.u64("sequence")
            let data = Array(r.rest())
            return .entry(Entry(term: term, index: index, kind: kind, clientID: client, sequence: sequence, data: data))
        case .hardState:
            let hs = try decodeHardState(&r)
            try r.expectEnd("hard state")
            return .hardState(hs)
        case .checkpoint:
            let baseIndex = try r.u64("base index")
            let baseTerm = try r.u64("base term")
            let hs = try decodeHardState(&r)
            let hasSnapshot = try r.u8("snapshot flag")
            guard hasSnapshot <= 1 else { throw DecodeError("bad snapshot flag \(hasSnapshot)") }
            let snapshot = hasSnapshot == 1 ? try decodeSnapshotMetadata(&r) : nil
            try r.expectEnd("checkpoint")
            return .checkpoint(baseIndex: baseIndex, baseTerm: baseTerm, snapshot: snapshot, hardState: hs)
        case .snapshot:
            let meta = try decodeSnapshotMetadata(&r)
            let keeps = try r.u8("keeps-log flag")
            guard keeps <= 1 else { throw DecodeError("bad keeps-log flag \(keeps)") }
            try r.expectEnd("snapshot record")
            return .snapshot(meta, keepsLog: keeps == 1)
        case .compact:
            let index = try r.u64("index")
            let term = try r.u64("term")
            try r.expectEnd("compact record")
            return .compact(index: index, term: term)
        case .syncMark:
            let offset = try r.u64("synced offset")
            try r.expectEnd("sync mark")
            return .syncMark(offset: offset)
        case nil:
            throw DecodeError("unknown record type \(type)")
        }
    }
}

// MARK: - Segment header

/// The 32-byte header at the start of every segment file.
///
/// ```
/// 0  "DWALSEG1"   magic
/// 8  u32          format version (1; 2: batches open with a sync mark, so recovery knows the synced offset)
/// 12 u64          segment sequence number
/// 20 u64          index of the first entry written to it (lastIndex + 1 at creation)
/// 28 u32          CRC32C over bytes 0..<28
/// ```
struct SegmentHeader: Equatable {
    static let size = 32
    static let magic: [UInt8] = Array("DWALSEG1".utf8)
    static let version: UInt32 = 2

    var sequence: UInt64
    var firstIndex: LogIndex
    var version: UInt32 = SegmentHeader.version

    var encoded: [UInt8] {
        var w = ByteWriter(capacity: Self.size)
        w.raw(Self.magic)
        w.u32(version)
        w.u64(sequence)
        w.u64(firstIndex)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    static func decode(_ bytes: ArraySlice<UInt8>) throws -> SegmentHeader {
        guard bytes.count >= size else { throw DecodeError("segment header truncated (\(bytes.count) bytes)") }
        var r = ByteReader(bytes.prefix(size))
        guard Array(try r.raw(8)) == magic else { throw DecodeError("not a WAL segment (bad magic)") }
        let version = try r.u32()
        let sequence = try r.u64()
        let first = try r.u64()
        let crc = try r.u32()
        guard CRC32C.checksum(bytes.prefix(28)) == crc else { throw DecodeError("segment header checksum mismatch") }
        guard version == 1 || version == Self.version else {
            throw DecodeError("unsupported segment format version \(version)")
        }
        return SegmentHeader(sequence: sequence, firstIndex: first, version: version)
    }
}
