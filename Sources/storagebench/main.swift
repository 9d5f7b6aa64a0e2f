/// storagebench: the storage benchmark (`make bench-storage`) and the helper processes of the crash tests.
///
/// ```
/// storagebench [--dir DIR] [--seconds S]           benchmark table (Markdown) on stdout
/// storagebench crash-child DIR diskfirst|memfirst BATCH [snapshots]
///                                                  append until killed, one "ack N" line per batch
/// storagebench open DIR NODE                       open a data directory; exit 0, or 1 with the error on stderr
/// ```
import Foundation
import RaftCore
import RaftStorage
import SystemClock

// MARK: - Shared

/// The entry the crash child writes at `index`: the crash tests regenerate it to check what they read back.
func childEntry(_ index: LogIndex) -> Entry {
    var data = Array("entry-\(index)-".utf8)
    while data.count < 100 { data.append(UInt8(truncatingIfNeeded: index &* 131 &+ UInt64(data.count))) }
    return Entry(term: 1, index: index, data: data)
}

/// The snapshot image the crash child saves at `index` (64 KiB, so that saving takes a while).
func childSnapshotData(_ index: LogIndex) -> [UInt8] {
    (0..<65_536).map { UInt8(truncatingIfNeeded: UInt64($0) &* 7 &+ index) }
}

func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(code)
}

func emit(_ line: String) {
    // One write(2) per line: the parent reads what was reported even if the next instruction is a SIGKILL.
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

// MARK: - Crash child

func crashChild(_ args: [String]) -> Never {
    guard args.count >= 3, let batch = Int(args[2]) else { fail("usage: crash-child DIR diskfirst|memfirst BATCH") }
    let strategy: PersistenceStrategy = args[1] == "diskfirst" ? .diskFirst : .memFirst(threshold: 64, intervalMs: 20)
    let snapshots = args.count > 3 && args[3] == "snapshots"
    do {
        let opened = try DataDirectory.open(path: args[0], nodeID: 1)
        let writer = LogWriter(wal: opened.wal, strategy: strategy, maxBufferedEntries: 1000)
        var next = opened.wal.lastIndex + 1
        try writer.persist(entries: [], hardState: HardState(term: 1, vote: 1, commit: 0))
        emit("ready")
        while next < 1_000_000 {
            let entries = (next..<(next + LogIndex(batch))).map(childEntry)
            let d = try writer.persist(entries: entries, hardState: HardState(term: 1, vote: 1, commit: next - 1))
            next += LogIndex(batch)
            // What must survive a kill -9: DiskFirst what is fsynced; MemFirst everything written to the OS.
            emit("ack \(strategy == .diskFirst ? d.acknowledged : d.written)")
            if snapshots && next % 50 < LogIndex(batch) {
                let index = next - 1
                let meta = SnapshotMetadata(index: index, term: 1, membership: Membership(voters: [1]))
                try opened.snapshots.save(metadata: meta, data: childSnapshotData(index))
                try writer.persist(entries: [], snapshot: meta)
                try writer.compact(before: index + 1 - 20)
                emit("snap \(index)")
            }
        }
        exit(0)
    } catch {
        fail("crash-child: \(error)")
    }
}

// MARK: - Open

func openCommand(_ args: [String]) -> Never {
    guard args.count == 2, let node = UInt64(args[1]) else { fail("usage: open DIR NODE", code: 64) }
    do {
        let opened = try DataDirectory.open(path: args[0], nodeID: node)
        for warning in opened.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
        print("ok first=\(opened.wal.firstIndex) last=\(opened.wal.lastIndex)")
        exit(0)
    } catch {
        fail("error: \(error)")
    }
}

// MARK: - Benchmark

func seconds(since start: UInt64) -> Double { Double(MonotonicClock.nanoseconds() - start) / 1e9 }

/// write 4 KiB + fsync in a loop on a file in `dir`: the disk's raw fsync rate.
func rawFsyncRate(dir: String, duration: Double) -> Double {
    let path = dir + "/raw-fsync"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { fail("open \(path): \(String(cString: strerror(errno)))") }
    defer {
        close(fd)
        unlink(path)
    }
    let block = [UInt8](repeating: 0xAB, count: 4096)
    var count = 0
    let start = MonotonicClock.nanoseconds()
    while seconds(since: start) < duration {
        _ = block.withUnsafeBytes { pwrite(fd, $0.baseAddress, 4096, off_t(count % 256) * 4096) }
        guard fsync(fd) == 0 else { fail("fsync failed: \(String(cString: strerror(errno)))") }
        count += 1
    }
    return Double(count) / seconds(since: start)
}

struct BenchRow {
    var strategy: String
    var batch: Int
    var appendsPerSecond: Double
    var fsyncsPerSecond: Double
}

func benchmark(_ args: [String]) {
    var root = FileManager.default.currentDirectoryPath + "/.bench-storage"
    var duration = 1.5
    var i = 0
    while i < args.count {
        switch args[i] {
        case "--dir" where i + 1 < args.count: root = args[i + 1]; i += 1
        case "--seconds" where i + 1 < args.count: duration = Double(args[i + 1]) ?? duration; i += 1
        default: fail("usage: storagebench [--dir DIR] [--seconds S]", code: 64)
        }
        i += 1
    }
    try? FileManager.default.removeItem(atPath: root)
    try? FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: root) }
    let rawBefore = rawFsyncRate(dir: root, duration: duration)
    var rows: [BenchRow] = []
    let strategies: [(String, PersistenceStrategy)] = [
        ("DiskFirst", .diskFirst), ("MemFirst(100, 20ms)", .memFirst(threshold: 100, intervalMs: 20)),
    ]
    for (name, strategy) in strategies {
        for batch in [1, 10, 100, 1000] {
            let dir = root + "/\(name.prefix(4))-\(batch)"
            do {
                let opened = try DataDirectory.open(path: dir, nodeID: 1)
                let writer = LogWriter(wal: opened.wal, strategy: strategy, maxBufferedEntries: 10_000)
                let syncsBefore = writer.fsyncCount
                var next: LogIndex = 1
                let start = MonotonicClock.nanoseconds()
                while seconds(since: start) < duration {
                    let entries = (next..<(next + LogIndex(batch))).map(childEntry)
                    let now = MonotonicClock.milliseconds()
                    try writer.persist(entries: entries, hardState: HardState(term: 1, vote: 1, commit: next), now: now)
                    _ = try writer.flushIfDue(now: now)
                    next += LogIndex(batch)
                }
                try writer.flush()
                let elapsed = seconds(since: start)
                rows.append(
                    BenchRow(
                        strategy: name, batch: batch, appendsPerSecond: Double(next - 1) / elapsed,
                        fsyncsPerSecond: Double(writer.fsyncCount - syncsBefore) / elapsed))
                opened.wal.close()
            } catch {
                fail("benchmark \(name) batch \(batch): \(error)")
            }
        }
    }
    // Measured before and after the runs: a shared disk's rate drifts.
    let rawAfter = rawFsyncRate(dir: root, duration: duration)
    func fmt(_ v: Double) -> String { String(format: "%.0f", v) }
    print("Raw fsync rate of this disk (4 KiB pwrite + fsync, \(root)): \(fmt(rawBefore)) fsyncs/s before, "
        + "\(fmt(rawAfter)) after\n")
    print("| strategy | batch size | appends/s | fsyncs/s |")
    print("|---|---:|---:|---:|")
    for row in rows {
        print("| \(row.strategy) | \(row.batch) | \(fmt(row.appendsPerSecond)) | \(fmt(row.fsyncsPerSecond)) |")
    }
    print("\nEntries carry 100-byte payloads; each batch is one LogWriter.persist call with a hard state update.")
}

// MARK: - Main

var arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "crash-child": crashChild(Array(arguments.dropFirst()))
case "open": openCommand(Array(arguments.dropFirst()))
default: benchmark(arguments)
}
