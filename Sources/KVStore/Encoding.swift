/// Compact little-endian encoding helpers for commands, results and snapshots. Decoding throws `KVDecodeError` on
/// garbage; it never traps and never allocates more than the input could hold.

public struct KVDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

struct KVWriter {
    var bytes: [UInt8] = []

    init() {}

    /// A writer with room for `capacity` bytes (one allocation when the estimate holds).
    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u64(_ v: UInt64) { for s in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * s))) } }
    /// A LEB128 varint: small lengths take one byte.
    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }
    mutating func blob(_ v: [UInt8]) {
        varint(UInt64(v.count))
        bytes.append(contentsOf: v)
    }
    mutating func optionalBlob(_ v: [UInt8]?) {
        if let v {
            u8(1)
            blob(v)
        } else {
            u8(0)
        }
    }
}

struct KVReader {
    let bytes: [UInt8]
    var position = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - position }

    mutating func u8(_ what: String) throws -> UInt8 {
        guard remaining >= 1 else { throw KVDecodeError("truncated at \(what)") }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func u64(_ what: String) throws -> UInt64 {
        guard remaining >= 8 else { throw KVDecodeError("truncated at \(what)") }
        var v: UInt64 = 0
        for s in 0..<8 { v |= UInt64(bytes[position + s]) << (8 * UInt64(s)) }
        position += 8
        return v
    }

    mutating func varint(_ what: String) throws -> UInt64 {
        var v: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try u8(what)
            guard shift < 64 else { throw KVDecodeError("varint too long at \(what)") }
            v |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return v }
            shift += 7
        }
    }

    mutating func blob(_ what: String) throws -> [UInt8] {
        let n = try varint("\(what) length")
        guard n <= UInt64(remaining) else { throw KVDecodeError("\(what) length \(n) exceeds the input") }
        defer { position += Int(n) }
        return Array(bytes[position..<position + Int(n)])
    }

    mutating func optionalBlob(_ what: String) throws -> [UInt8]? {
        switch try u8("\(what) flag") {
        case 0: return nil
        case 1: return try blob(what)
        case let f: throw KVDecodeError("bad \(what) flag \(f)")
        }
    }

    /// A count of items each at least `minSize` bytes long, checked against the input before any allocation.
    mutating func count(_ what: String, minSize: Int) throws -> Int {
        let n = try varint("\(what) count")
        guard n <= UInt64(remaining / max(1, minSize)) else { throw KVDecodeError("\(what) count \(n) exceeds the input") }
        return Int(n)
    }

    func expectEnd(_ what: String) throws {
        guard remaining == 0 else { throw KVDecodeError("\(remaining) trailing bytes after \(what)") }
    }
}

/// 64-bit FNV-1a, for the state hash and the snapshot checksum.
struct FNV1a64 {
    private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add(_ bytes: [UInt8]) { for b in bytes { add(b) } }
    mutating func add(_ b: UInt8) {
        value ^= UInt64(b)
        value = value &* 0x0000_0100_0000_01B3
    }
    mutating func add(_ v: UInt64) { for s in 0..<8 { add(UInt8(truncatingIfNeeded: v >> (8 * UInt64(s)))) } }
}
