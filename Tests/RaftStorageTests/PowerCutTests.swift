import RaftCore
import Testing

@testable import RaftStorage

/// What one run of writes and power cuts on a `PowerCutFileSystem` found.
struct PowerCutOutcome {
    var cuts = 0
    var acknowledged: LogIndex = 0
    var fileSyncs = 0
    /// Opens that repaired a torn tail.
    var tornTailsRepaired = 0
    /// The first cut after which an acknowledged entry was missing or wrong, or the directory did not open.
    var failure: String?
}

/// Issue #15: storage on a disk that loses power. A writer persists batches (DiskFirst, or MemFirst with some
/// batches acknowledging, as a follower's do), takes snapshots and compacts through tiny segments (so segment
/// creation, renames and directory fsyncs happen), and the power is cut at seeded points, each cut dropping the
/// unsynced writes, tearing the last one or keeping a random subset. After every cut the directory must open and
/// hold every acknowledged entry.
func runPowerCuts(seed: UInt64, strategy: PersistenceStrategy, plantedBug: PlantedBug? = nil, cuts: Int = 6)
    -> PowerCutOutcome
{
    var rng = SeededRNG(seed: seed)
    let fs = PowerCutFileSystem(plantedBug: plantedBug)
    var outcome = PowerCutOutcome()
    do {
        try fs.makeDirectory("/disk")
        try fs.syncDirectory("/")
    } catch {
        outcome.failure = "setup: \(error)"
        return outcome
    }
    let options = WAL.Options(segmentSize: 2048)
    var acknowledged: LogIndex = 0
    var written: [LogIndex: Entry] = [:]
    for round in 0...cuts {
        let opened: DataDirectory.Opened
        do {
            opened = try DataDirectory.open(path: "/disk/db", nodeID: 1, walOptions: options, fs: fs)
        } catch {
            outcome.failure = "after cut \(round): the directory does not open: \(error)"
            return outcome
        }
        let wal = opened.wal
        outcome.tornTailsRepaired += opened.warnings.filter { $0.contains("torn tail") }.count
        if wal.lastIndex < acknowledged {
            outcome.failure = "after cut \(round): last index \(wal.lastIndex) < acknowledged \(acknowledged)"
            return outcome
        }
        if acknowledged >= wal.firstIndex {
            let back = (try? wal.entries(from: wal.firstIndex, to: acknowledged)) ?? []
            let expected = (wal.firstIndex...acknowledged).map { written[$0] }
            if back.map(Optional.some) != expected {
                outcome.failure = "after cut \(round): acknowledged entries \(wal.firstIndex)...\(acknowledged) differ"
                return outcome
            }
        }
        if round == cuts { break }
        // Whatever survived beyond the acknowledged index is the log now: continue from its end.
        let writer = LogWriter(wal: wal, strategy: strategy, maxBufferedEntries: 64)
        do {
            try writer.persist(entries: [], hardState: HardState(term: 1, vote: 1, commit: 0), now: 0)
            for step in 0..<Int(5 + rng.next() % 40) {
                let first = wal.lastIndex + 1
                let count = LogIndex(1 + rng.next() % 4)
                let batch = (first..<(first + count)).map { makeEntry($0, term: 1, size: Int(8 + rng.next() % 90)) }
                for entry in batch { written[entry.index] = entry }
                let d = try writer.persist(
                    entries: batch, acknowledges: rng.next() % 3 == 0, now: UInt64(round * 1000 + step))
                acknowledged = max(acknowledged, d.acknowledged)
                if rng.next() % 10 == 0, wal.lastIndex > 10 {
                    let index = wal.lastIndex - 2
                    let meta = SnapshotMetadata(index: index, term: 1, membership: Membership(voters: [1]))
                    if (wal.snapshot?.index ?? 0) < index {
                        _ = try opened.snapshots.save(metadata: meta, data: Array(repeating: UInt8(index % 251), count: 64))
                        try writer.persist(entries: [], snapshot: meta)
                        try writer.compact(before: index - 3)
                        acknowledged = max(acknowledged, writer.durability.acknowledged)
                    }
                }
            }
        } catch {
            outcome.failure = "round \(round): a write failed: \(error)"
            return outcome
        }
        wal.close()
        let cut: PowerCutFileSystem.Cut
        switch rng.next() % 3 {
        case 0: cut = .dropUnsynced
        case 1: cut = .tearLastWrite(seed: rng.next())
        default: cut = .keepRandomSubset(seed: rng.next())
        }
        fs.cutPower(cut)
        outcome.cuts += 1
    }
    outcome.acknowledged = acknowledged
    outcome.fileSyncs = fs.fileSyncs
    return outcome
}

@Suite("Power cuts (PowerCutFileSystem)")
struct PowerCutTests {
    static let strategies: [PersistenceStrategy] = [.diskFirst, .memFirst(threshold: 8, intervalMs: 1_000_000)]

    @Test(arguments: strategies)
    func everyAcknowledgedWriteSurvivesAnyCut(strategy: PersistenceStrategy) {
        var cuts = 0
        var repaired = 0
        for seed in UInt64(1)...40 {
            let outcome = runPowerCuts(seed: seed, strategy: strategy)
            #expect(outcome.failure == nil, "seed \(seed): \(outcome.failure ?? "")")
            #expect(outcome.acknowledged > 0 && outcome.fileSyncs > 0)
            cuts += outcome.cuts
            repaired += outcome.tornTailsRepaired
        }
        #expect(cuts == 40 * 6)
        // Cuts that keep a random subset of unsynced writes leave damage followed by valid records: repaired.
        #expect(repaired > 0)
    }

    /// The same runs with a planted fsync bug lose acknowledged writes: the WAL's fsync skipped drops them from the
    /// page cache; the directory fsync skipped forgets segments and snapshot files whose renames were not durable.
    @Test(arguments: [PlantedBug.skipWALFsync, .skipDirFsync])
    func aMissingFsyncIsCaught(bug: PlantedBug) {
        let failures = (UInt64(1)...40).compactMap { runPowerCuts(seed: $0, strategy: .diskFirst, plantedBug: bug).failure }
        #expect(!failures.isEmpty, "\(bug.rawValue) survived 40 seeds")
        #expect(failures.contains { $0.contains("acknowledged") }, "\(failures.prefix(3))")
    }

    /// A data directory created under missing parents survives a cut right after the node voted from it.
    @Test func aNewDataDirectoryAndItsParentsAreDurable() throws {
        let fs = PowerCutFileSystem()
        let opened = try DataDirectory.open(path: "/new/parents/db", nodeID: 1, fs: fs)
        let writer = LogWriter(wal: opened.wal, strategy: .diskFirst)
        try writer.persist(entries: [], hardState: HardState(term: 3, vote: 2, commit: 0))
        opened.wal.close()
        fs.cutPower(.dropUnsynced)
        let reopened = try DataDirectory.open(path: "/new/parents/db", nodeID: 1, mode: .openExisting, fs: fs)
        #expect(reopened.wal.hardState.term == 3 && reopened.wal.hardState.vote == 2)
    }

    @Test func theFileSystemModelsPageCacheAndDirectoryEntries() throws {
        let fs = PowerCutFileSystem()
        try fs.makeDirectory("/d")
        try fs.syncDirectory("/")
        let file = try fs.open("/d/f", writable: true, create: true)
        try file.write([1, 2, 3], at: 0)
        try file.sync()
        try file.write([4, 5], at: 3)
        // The file's data is synced, its name is not: the cut forgets the file.
        fs.cutPower(.dropUnsynced)
        #expect(try fs.kind(of: "/d/f") == .missing)
        let again = try fs.open("/d/f", writable: true, create: true)
        try again.write([1, 2, 3], at: 0)
        try again.sync()
        try fs.syncDirectory("/d")
        try again.write([4, 5], at: 3)
        fs.cutPower(.dropUnsynced)
        #expect(try fs.open("/d/f", writable: false).readAll() == [1, 2, 3])
        // A rename is durable only once its directory is synced.
        try fs.rename("/d/f", "/d/g")
        fs.cutPower(.dropUnsynced)
        #expect(try fs.list("/d") == ["f"])
    }
}
