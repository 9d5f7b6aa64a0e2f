import Foundation
import RaftCore
import Testing

@testable import RaftStorage

/// Mirrors `childEntry` in Sources/storagebench: the entry the crash child writes at `index`.
func childEntry(_ index: LogIndex) -> Entry {
    var data = Array("entry-\(index)-".utf8)
    while data.count < 100 { data.append(UInt8(truncatingIfNeeded: index &* 131 &+ UInt64(data.count))) }
    return Entry(term: 1, index: index, data: data)
}

func childSnapshotData(_ index: LogIndex) -> [UInt8] {
    (0..<65_536).map { UInt8(truncatingIfNeeded: UInt64($0) &* 7 &+ index) }
}

/// Runs `storagebench crash-child`, reads its report lines until `lines` "ack" lines arrived, then SIGKILLs it.
/// Returns every line read before the kill.
func runAndKill(_ arguments: [String], afterAcks lines: Int) throws -> [String] {
    let binary = productsDirectory().appendingPathComponent("storagebench")
    #expect(FileManager.default.isExecutableFile(atPath: binary.path), "build storagebench first: \(binary.path)")
    let process = Process()
    process.executableURL = binary
    process.arguments = ["crash-child"] + arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    var buffer = Data()
    var received: [String] = []
    var acks = 0
    let handle = out.fileHandleForReading
    while acks < lines {
        let chunk = handle.availableData  // blocks until the child writes or exits
        if chunk.isEmpty { break }
        buffer.append(chunk)
        while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
            let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
            buffer.removeSubrange(buffer.startIndex...newline)
            received.append(line)
            if line.hasPrefix("ack ") { acks += 1 }
        }
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    #expect(process.terminationReason == .uncaughtSignal, "the child must die by SIGKILL, not exit on its own")
    return received
}

@Suite("Crash: kill -9 in the middle of appends and snapshots")
struct CrashTests {
    /// DiskFirst: everything reported durable is there. MemFirst: everything written to the OS is there
    /// (a process kill leaves the page cache intact). Three kills each, at different points, on the same directory.
    @Test(arguments: ["diskfirst", "memfirst"], [1, 7])
    func everythingAcknowledgedSurvives(strategy: String, batch: Int) throws {
        let dir = TempDir("crash")
        defer { dir.cleanup() }
        var reported: LogIndex = 0
        for round in 1...3 {
            let lines = try runAndKill([dir.dataDir, strategy, String(batch)], afterAcks: 40 * round)
            let acked = lines.compactMap { $0.hasPrefix("ack ") ? LogIndex($0.dropFirst(4)) : nil }.max() ?? 0
            #expect(acked > reported, "the child made progress in round \(round)")
            reported = acked
            let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            #expect(opened.wal.lastIndex >= acked, "\(strategy) lost acknowledged entries: \(opened.wal.lastIndex) < \(acked)")
            let entries = try opened.wal.entries(from: 1, to: opened.wal.lastIndex)
            #expect(entries == (1...max(1, opened.wal.lastIndex)).prefix(entries.count).map(childEntry))
            #expect(opened.wal.hardState.term == 1 && opened.wal.hardState.vote == 1)
            #expect(opened.wal.hardState.commit <= opened.wal.lastIndex)
            opened.wal.close()
        }
    }

    /// Killed while saving snapshots and compacting: the directory opens, the newest snapshot is whole and the log
    /// still covers everything acknowledged after it.
    @Test(arguments: ["diskfirst", "memfirst"])
    func snapshotsSurviveKill(strategy: String) throws {
        let dir = TempDir("crashsnap")
        defer { dir.cleanup() }
        for round in 1...3 {
            let lines = try runAndKill([dir.dataDir, strategy, "3", "snapshots"], afterAcks: 60 * round)
            let acked = lines.compactMap { $0.hasPrefix("ack ") ? LogIndex($0.dropFirst(4)) : nil }.max() ?? 0
            let snapped = lines.compactMap { $0.hasPrefix("snap ") ? LogIndex($0.dropFirst(5)) : nil }.max() ?? 0
            let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
            let snapshot = try #require(opened.latestSnapshot)
            #expect(snapshot.metadata.index >= snapped)
            #expect(snapshot.data == childSnapshotData(snapshot.metadata.index))
            #expect(opened.wal.snapshot?.index == snapshot.metadata.index)
            #expect(opened.wal.firstIndex <= snapshot.metadata.index + 1)
            #expect(opened.wal.lastIndex >= acked)
            let entries = try opened.wal.entries(from: opened.wal.firstIndex, to: opened.wal.lastIndex)
            #expect(entries == (opened.wal.firstIndex...max(opened.wal.firstIndex, opened.wal.lastIndex))
                .prefix(entries.count).map(childEntry))
            #expect(try opened.snapshots.list().count <= 3)
            opened.wal.close()
        }
    }
}
