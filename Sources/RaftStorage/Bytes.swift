/// Little-endian byte encoding helpers shared by the WAL records, segment headers and snapshot files.

// MARK: - Writing

/// Appends fixed-width little-endian integers and raw bytes to a growing buffer.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// A writer that appends to `bytes` (taken without a copy, left empty); `give(to:)` hands them back.
    public init(taking bytes: inout [UInt8]) {
        self.bytes = []
        swap(&self.bytes, &bytes)
    }

    /// Hands the bytes to `destination` without a copy (this writer is left empty).
    public mutating func give(to destination: inout [UInt8]) {
        destination = []
        swap(&bytes, &destination)
    }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { for s in 0..<2 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * s))) } }
    public mutating func u32(_ v: UInt32) { for s in 0..<4 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * s))) } }
    public mutating func u64(_ v: UInt64) { for s in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * s))) } }
    public mutating func raw<C: Collection<UInt8>>(_ v: C) { bytes.append(contentsOf: v) }
    /// A u32 length followed by the bytes.
    public mutating func blob<C: Collection<UInt8>>(_ v: C) {
        u32(UInt32(v.count))
        raw(v)
    }
    /// Overwrites four bytes at `offset` (used to patch a checksum or length in place).
    public mutating func patchU32(_ v: UInt32, at offset: Int) {
        for s in 0..<4 { bytes[offset + s] = UInt8(truncatingIfNeeded: v >> (8 * s)) }
    }
}

// MARK: - Reading

/// Why bytes could not be decoded. Decoders throw this; they never trap on bad input.
public struct DecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Reads fixed-width little-endian integers from a byte slice, throwing `DecodeError` past the end.
public struct ByteReader {
    public let bytes: ArraySlice<UInt8>
    public private(set) var position: Int

    public init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        self.position = bytes.startIndex
    }

    public init(_ bytes: [UInt8]) { self.init(bytes[...]) }

    public var remaining: Int { bytes.endIndex - position }
    public var isAtEnd: Bool { position == bytes.endIndex }

    private mutating func need(_ n: Int, _ what: String) throws {
        guard n >= 0, remaining >= n else {
            throw DecodeError("truncated: need \(n) bytes for \(what), \(remaining) left")
        }
    }

    public mutating func u8(_ what: String = "u8") throws -> UInt8 {
        try need(1, what)
        defer { position += 1 }
        return bytes[position]
    }

    public mutating func u16(_ what: String = "u16") throws -> UInt16 { UInt16(try fixed(2, what)) }
    public mutating func u32(_ what: String = "u32") throws -> UInt32 { UInt32(try fixed(4, what)) }
    public mutating func u64(_ what: String = "u64") throws -> UInt64 { try fixed(8, what) }

    private mutating func fixed(_ n: Int, _ what: String) throws -> UInt64 {
        try need(n, what)
        var v: UInt64 = 0
        for s in 0..<n { v |= UInt64(bytes[position + s]) << (8 * UInt64(s)) }
        position += n
        return v
    }

    public mutating func raw(_ n: Int, _ what: String = "bytes") throws -> ArraySlice<UInt8> {
        try need(n, what)
        defer { position += n }
        return bytes[position..<position + n]
    }

    /// A u32 length followed by that many bytes; the length is checked against what is left before allocating.
    public mutating func blob(_ what: String = "blob") throws -> [UInt8] {
        let n = Int(try u32("\(what) length"))
        return Array(try raw(n, what))
    }

    public mutating func rest() -> ArraySlice<UInt8> {
        defer { position = bytes.endIndex }
        return bytes[position...]
    }

    public func expectEnd(_ what: String) throws {
        guard isAtEnd else { throw DecodeError("\(remaining) trailing bytes after \(what)") }
    }
}
