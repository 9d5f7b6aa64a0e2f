import Foundation
import RaftCore
import Testing

@testable import RaftStorage

/// The storage conformance suite: the same checks against the in-memory reference and the WAL.
enum StorageKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case memory
    case wal

    var testDescription: String { rawValue }
}

/// A storage under test plus a way to "restart" it (reopen from disk for the WAL).
final class Subject {
    let kind: StorageKind
    let dir = TempDir("conformance")
    var storage: any LogStorage
    let segmentSize: Int

    init(_ kind: StorageKind, segmentSize: Int = 64 << 20) throws {
        self.kind = kind
        self.segmentSize = segmentSize
        switch kind {
        case .memory: storage = MemoryStorage()
        case .wal:
            storage = try DataDirectory.open(
                path: dir.dataDir, nodeID: 1, walOptions: WAL.Options(segmentSize: segmentSize)
            ).wal
        }
    }

    /// Restarts: the WAL is closed and reopened from its files; memory is unchanged.
    func reopen() throws {
        guard kind == .wal, let wal = storage as? WAL else { return }
        try wal.sync()
        wal.close()
        // The WAL alone: these tests record snapshot metadata without snapshot files.
        let reopened = try WAL.open(directory: dir.dataDir + "/wal", options: WAL.Options(segmentSize: segmentSize))
        #expect(reopened.recoveryWarnings.isEmpty, "\(reopened.recoveryWarnings)")
        storage = reopened
    }

    deinit { dir.cleanup() }
}

/// Everything observable through `LogStorage`, for comparing a storage with the model.
struct Observed: Equatable, CustomStringConvertible {
    var hardState: HardState
    var snapshot: SnapshotMetadata?
    var first: LogIndex
    var last: LogIndex
    var terms: [Term?]
    var entries: [Entry]

    init(_ s: any LogStorage) throws {
        hardState = s.hardState
        snapshot = s.snapshot
        first = s.firstIndex
        last = s.lastIndex
        let lo = s.firstIndex > 1 ? s.firstIndex - 2 : 0
        terms = (lo...(s.lastIndex + 1)).map { s.term(at: $0) }
        entries = try s.entries(from: s.firstIndex, to: s.lastIndex)
    }

    var description: String { "hs=\(hardState) snap=\(snapshot.map { "\($0)" } ?? "-") [\(first)...\(last)]" }
}

@Suite("LogStorage conformance")
struct ConformanceTests {
    @Test(arguments: StorageKind.allCases)
    func emptyStorage(kind: StorageKind) throws {
        let s = try Subject(kind)
        #expect(s.storage.firstIndex == 1)
        #expect(s.storage.lastIndex == 0)
        #expect(s.storage.term(at: 0) == 0)
        #expect(s.storage.term(at: 1) == nil)
        #expect(s.storage.hardState == HardState())
        #expect(s.storage.snapshot == nil)
        #expect(try s.storage.entries(from: 1, to: 0).isEmpty)
        #expect(throws: (any Error).self) { try s.storage.entries(from: 1, to: 1) }
    }

    @Test(arguments: StorageKind.allCases)
    func appendReadAndReopen(kind: StorageKind) throws {
        let s = try Subject(kind)
        try s.storage.append(makeEntries(1...10, term: 1))
        try s.storage.append(makeEntries(11...12, term: 2))
        try s.storage.setHardState(HardState(term: 2, vote: 3, commit: 9))
        try s.reopen()
        #expect(s.storage.lastIndex == 12)
        #expect(s.storage.term(at: 10) == 1)
        #expect(s.storage.term(at: 11) == 2)
        #expect(s.storage.term(at: 13) == nil)
        #expect(try s.storage.entries(from: 3, to: 12) == makeEntries(3...10, term: 1) + makeEntries(11...12, term: 2))
        #expect(s.storage.hardState == HardState(term: 2, vote: 3, commit: 9))
    }

    @Test(arguments: StorageKind.allCases)
    func conflictTruncation(kind: StorageKind) throws {  // Raft §5.3
        let s = try Subject(kind)
        try s.storage.append(makeEntries(1...10, term: 1))
        try s.storage.append(makeEntries(6...7, term: 3))
        #expect(s.storage.lastIndex == 7)
        #expect(s.storage.term(at: 8) == nil)
        try s.reopen()
        #expect(s.storage.lastIndex == 7)
        #expect(try s.storage.entries(from: 5, to: 7) == [makeEntry(5, term: 1)] + makeEntries(6...7, term: 3))
    }

    @Test(arguments: StorageKind.allCases)
    func appendPreconditions(kind: StorageKind) throws {
        let s = try Subject(kind)
        try s.storage.append(makeEntries(1...3, term: 1))
        #expect(throws: (any Error).self) { try s.storage.append(makeEntries(5...6, term: 1)) }
        #expect(throws: (any Error).self) {
            try s.storage.append([makeEntry(4, term: 1), makeEntry(6, term: 1)])
        }
        #expect(s.storage.lastIndex == 3)
    }

    @Test(arguments: StorageKind.allCases)
    func snapshotAndCompaction(kind: StorageKind) throws {
        let s = try Subject(kind)
        try s.storage.append(makeEntries(1...20, term: 1))
        let members = Membership(voters: [1, 2, 3], addresses: [1: "127.0.0.1:9081", 3: "node3.example:9083"])
        // A local snapshot that matches the log keeps it.
        try s.storage.applySnapshot(SnapshotMetadata(index: 15, term: 1, membership: members))
        #expect(s.storage.lastIndex == 20)
        #expect(s.storage.firstIndex == 1)
        // Compaction is clamped to the snapshot.
        try s.storage.compact(before: 100)
        #expect(s.storage.firstIndex == 16)
        #expect(s.storage.term(at: 15) == 1)
        #expect(s.storage.term(at: 14) == nil)
        #expect(throws: (any Error).self) { try s.storage.entries(from: 15, to: 16) }
        // An older snapshot is refused.
        #expect(throws: (any Error).self) {
            try s.storage.applySnapshot(SnapshotMetadata(index: 10, term: 1, membership: members))
        }
        try s.reopen()
        #expect(s.storage.firstIndex == 16)
        #expect(s.storage.lastIndex == 20)
        #expect(s.storage.snapshot == SnapshotMetadata(index: 15, term: 1, membership: members))
        // A received snapshot that does not match discards the whole log.
        try s.storage.applySnapshot(SnapshotMetadata(index: 30, term: 4, membership: members))
        #expect(s.storage.firstIndex == 31)
        #expect(s.storage.lastIndex == 30)
        #expect(s.storage.term(at: 30) == 4)
        try s.reopen()
        #expect(s.storage.firstIndex == 31)
        #expect(s.storage.term(at: 30) == 4)
        try s.storage.append(makeEntries(31...32, term: 4))
        #expect(try s.storage.entries(from: 31, to: 32) == makeEntries(31...32, term: 4))
    }

    /// Random operation sequences checked against `MemoryStorage` as the model, with restarts in between.
    @Test(arguments: StorageKind.allCases, [UInt64(1), 2, 3, 4, 5, 6, 7, 8])
    func randomOperationsMatchModel(kind: StorageKind, seed: UInt64) throws {
        var rng = SeededRNG(seed: seed)
        let s = try Subject(kind, segmentSize: 700)  // tiny segments: rotation and deletion happen often
        var model = MemoryStorage()
        var term: Term = 1
        let trace = ProcessInfo.processInfo.environment["TRACE_CONFORMANCE"] != nil
        for step in 0..<300 {
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<45:
                // Append, sometimes overwriting a suffix (conflict).
                // Raft never truncates committed entries, and the snapshot is committed: start after it.
                let lo = max(model.firstIndex, (model.snapshot?.index ?? 0) + 1)
                let hi = model.lastIndex + 1
                let start = hi > lo && Bool.random(using: &rng) ? LogIndex.random(in: lo...hi, using: &rng) : hi
                if Int.random(in: 0..<4, using: &rng) == 0 { term += 1 }
                let count = LogIndex.random(in: 1...6, using: &rng)
                let batch = makeEntries(start...(start + count - 1), term: term, size: Int.random(in: 0...60, using: &rng))
                try model.append(batch)
                try s.storage.append(batch)
                if trace { print("seed \(seed) \(kind) append \(start)...\(start + count - 1) t\(term)") }
            case 45..<60:
                let hs = HardState(
                    term: term, vote: Bool.random(using: &rng) ? NodeID.random(in: 1...3, using: &rng) : nil,
                    commit: LogIndex.random(in: 0...model.lastIndex, using: &rng))
                try model.setHardState(hs)
                try s.storage.setHardState(hs)
            case 60..<72:
                // A snapshot: local (matching) or received (beyond the log or a different term).
                let current = model.snapshot?.index ?? 0
                let index = current + LogIndex.random(in: 1...12, using: &rng)
                let snapTerm = model.term(at: index).map { Bool.random(using: &rng) ? $0 : term + 1 } ?? term
                term = max(term, snapTerm)
                let meta = SnapshotMetadata(index: index, term: snapTerm, membership: Membership(voters: [1, 2, 3]))
                try model.applySnapshot(meta)
                try s.storage.applySnapshot(meta)
            case 72..<85:
                let at = LogIndex.random(in: 0...(model.lastIndex + 2), using: &rng)
                try model.compact(before: at)
                try s.storage.compact(before: at)
                if trace { print("seed \(seed) \(kind) compact \(at) segs \((s.storage as? WAL)?.segmentCount ?? 0)") }
            case 85..<93:
                if trace { print("seed \(seed) \(kind) reopen") }
                try s.reopen()
            default:
                try s.storage.sync()
            }
            if ProcessInfo.processInfo.environment["TRACE_CONFORMANCE"] != nil {
                print("seed \(seed) \(kind) step \(step): \(try Observed(model))")
            }
            let expected = try Observed(model)
            let actual = try Observed(s.storage)
            #expect(actual == expected, "seed \(seed) step \(step)")
            if actual != expected { return }
        }
        try s.reopen()
        #expect(try Observed(s.storage) == Observed(model))
        if let wal = s.storage as? WAL {
            // Old segments are deleted after compaction: the oldest one kept holds the first live entry.
            try wal.compact(before: wal.lastIndex + 1)
            #expect(wal.oldestSegmentIsNeeded, "\(wal.segmentCount) segments kept")
        }
    }
}
