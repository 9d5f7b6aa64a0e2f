import Foundation
import RaftCore
import Testing

@testable import RaftStorage

/// Seeded fuzzing of the decoders: random bytes and mutations of valid encodings. Passing means no trap and no hang
/// (each input is bounded, and the decoders must return or throw).
@Suite("Decoder fuzzing")
struct FuzzTests {
    static func mutate(_ bytes: [UInt8], _ rng: inout SeededRNG) -> [UInt8] {
        var out = bytes
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            guard !out.isEmpty else { break }
            switch Int.random(in: 0..<5, using: &rng) {
            case 0: out[Int.random(in: 0..<out.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: out[Int.random(in: 0..<out.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            case 2: out.removeLast(Int.random(in: 0...out.count, using: &rng))
            case 3: out.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...out.count, using: &rng))
            default:
                // Set a 4-byte field to an extreme (lengths, counts).
                let at = Int.random(in: 0..<out.count, using: &rng)
                for k in at..<min(out.count, at + 4) { out[k] = 0xFF }
            }
        }
        return out
    }

    @Test(arguments: [UInt64(11), 12])
    func recordDecoder(seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        let members = Membership(voters: [1, 2, 3], learners: [4])
        let valid: [[UInt8]] = [
            WALRecord.entry(makeEntry(5, term: 2, size: 30)).framed,
            WALRecord.hardState(HardState(term: 3, vote: 1, commit: 9)).framed,
            WALRecord.snapshot(SnapshotMetadata(index: 9, term: 2, membership: members), keepsLog: true).framed,
            WALRecord.compact(index: 4, term: 1).framed,
            WALRecord.checkpoint(
                baseIndex: 4, baseTerm: 1, snapshot: SnapshotMetadata(index: 4, term: 1, membership: members),
                hardState: HardState(term: 3)
            ).framed,
        ]
        for bytes in valid {
            guard case .record(_, let length) = WALRecord.parse(bytes[...]) else {
                Issue.record("valid record did not parse")
                return
            }
            #expect(length == bytes.count)
        }
        var accepted = 0
        for i in 0..<20_000 {
            let input: [UInt8] =
                i % 4 == 0
                ? (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                : Self.mutate(valid[i % valid.count], &rng)
            if case .record(let record, let length) = WALRecord.parse(input[...]) {
                accepted += 1
                // Whatever is accepted re-encodes to the same bytes.
                #expect(record.framed == Array(input.prefix(length)))
            }
            _ = try? SegmentHeader.decode(input[...])
        }
        #expect(accepted < 20_000 / 2, "checksums reject most mutations")
    }

    @Test(arguments: [UInt64(21), 22])
    func snapshotDecoder(seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        let meta = SnapshotMetadata(index: 77, term: 3, membership: Membership(voters: [1, 2], learners: [5]))
        let valid = SnapshotStore.encode(metadata: meta, data: Array(repeating: 7, count: 300))
        let decoded = try SnapshotStore.decode(valid)
        #expect(decoded.0 == meta && decoded.1.count == 300)
        var accepted = 0
        for i in 0..<5_000 {
            let input: [UInt8] =
                i % 5 == 0
                ? (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
                : Self.mutate(valid, &rng)
            if (try? SnapshotStore.decode(input)) != nil { accepted += 1 }
        }
        #expect(accepted < 50, "CRC32C rejects damaged snapshots (\(accepted) accepted)")
    }

    @Test func crc32cKnownAnswers() {
        // RFC 3720 B.4 test vectors.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum(Array(0...31) as [UInt8]) == 0x46DD_794E)
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        #expect(CRC32C.checksum(data[500...], continuing: CRC32C.checksum(data[..<500])) == CRC32C.checksum(data))
    }
}
