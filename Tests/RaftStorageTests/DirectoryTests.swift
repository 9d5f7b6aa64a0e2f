import Foundation
import RaftCore
import Testing

@testable import RaftStorage

@Suite("Data directory: missing, foreign, unreadable, full")
struct DirectoryTests {
    @Test func aRestoredDirectoryKeepsItsClusterID() throws {
        let dir = TempDir("cluster-id")
        defer { dir.cleanup() }
        #expect(try DataDirectory.open(path: dir.dataDir, nodeID: 2, clusterID: 0xABC).clusterID == 0xABC)
        // Reopened (the id given now is ignored: the directory keeps its own).
        #expect(try DataDirectory.open(path: dir.dataDir, nodeID: 2, clusterID: 5).clusterID == 0xABC)
        let plain = dir.path + "/plain"
        #expect(try DataDirectory.open(path: plain, nodeID: 2).clusterID == nil)
        #expect(try DataDirectory.open(path: plain, nodeID: 2, mode: .openExisting).clusterID == nil)
    }

    @Test func missingDirectoryIsRefusedWhenItMustExist() throws {
        let dir = TempDir("dirs")
        defer { dir.cleanup() }
        let error = try #require(throws: StorageOpenError.self) {
            try DataDirectory.open(path: dir.dataDir, nodeID: 1, mode: .openExisting)
        }
        #expect(error.code == .missingDirectory && error.message.contains(dir.dataDir))
        #expect(!FileManager.default.fileExists(atPath: dir.dataDir))
        // The normal start creates it, parents included, and a restart finds it.
        let nested = dir.path + "/a/b/db"
        #expect(try DataDirectory.open(path: nested, nodeID: 7).created)
        #expect(try !DataDirectory.open(path: nested, nodeID: 7, mode: .openExisting).created)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path + "/a/b") == ["db"])
    }

    @Test func foreignDirectoryIsRefusedAndUntouched() throws {
        let dir = TempDir("dirs")
        defer { dir.cleanup() }
        try FileManager.default.createDirectory(atPath: dir.dataDir, withIntermediateDirectories: true)
        writeFile(dir.dataDir + "/important.txt", Array("keep me".utf8))
        let error = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 1) }
        #expect(error.code == .foreignDirectory && error.message.contains("nothing was changed"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.dataDir) == ["important.txt"])
        #expect(readFile(dir.dataDir + "/important.txt") == Array("keep me".utf8))
        // A file where the directory should be.
        let file = dir.path + "/file"
        writeFile(file, [1])
        let notDir = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: file, nodeID: 1) }
        #expect(notDir.code == .notADirectory)
    }

    @Test func anotherNodesDirectoryAndDamagedIdentityAreRefused() throws {
        let dir = TempDir("dirs")
        defer { dir.cleanup() }
        _ = try DataDirectory.open(path: dir.dataDir, nodeID: 2)
        let error = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 1) }
        #expect(error.code == .nodeMismatch && error.message.contains("belongs to node 2"))
        let marker = dir.dataDir + "/DENGINE"
        writeFile(marker, Array(String(decoding: readFile(marker), as: UTF8.self).replacingOccurrences(
            of: "node_id = 2", with: "node_id = 3").utf8))
        let damaged = try #require(throws: StorageOpenError.self) { try DataDirectory.open(path: dir.dataDir, nodeID: 3) }
        #expect(damaged.code == .corruption && damaged.path == marker)
    }

    @Test func fullDiskIsAClearError() throws {
        // /dev/full fails every write with ENOSPC: the error the WAL raises on a full volume.
        let file = try POSIXFile.open("/dev/full", writable: true)
        let error = try #require(throws: StorageIOError.self) { try file.write([1, 2, 3], at: 0) }
        #expect(error.kind == .noSpace)
        #expect(error.description.hasPrefix("disk full:"))
        let fatal = StorageFatalError(error, context: "writing to the log")
        #expect(fatal.code == .noSpace && fatal.message.contains("disk full"))
        let open = StorageOpenError(error)
        #expect(open.code == .noSpace)
    }

    @Test func fatalWriteErrorPoisonsTheWAL() throws {
        let dir = TempDir("poison")
        defer { dir.cleanup() }
        let opened = try DataDirectory.open(path: dir.dataDir, nodeID: 1)
        try opened.wal.append(makeEntries(1...3, term: 1))
        opened.wal.close()
        // Every later call fails the same way instead of writing.
        #expect(throws: StorageFatalError.self) { try opened.wal.append([makeEntry(4, term: 1)]) }
        #expect(throws: StorageFatalError.self) { try opened.wal.sync() }
    }

    /// A permission error gives a clear message and a non-zero exit, through the real executable: as root (where
    /// permission bits do not apply) the check runs `storagebench open` as user `nobody` via setpriv.
    @Test func permissionDeniedExitsNonZeroWithAClearMessage() throws {
        let dir = TempDir("perm")
        defer { dir.cleanup() }
        _ = try DataDirectory.open(path: dir.dataDir, nodeID: 1)
        try FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: dir.dataDir)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.path)
        let binary = productsDirectory().appendingPathComponent("storagebench").path
        let process = Process()
        if geteuid() == 0 {
            let setpriv = "/usr/bin/setpriv"
            try #require(FileManager.default.isExecutableFile(atPath: setpriv), "needs util-linux setpriv")
            // The binary must be reachable by nobody: copy it next to the data.
            let copy = dir.path + "/storagebench"
            try FileManager.default.copyItem(atPath: binary, toPath: copy)
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: copy)
            process.executableURL = URL(fileURLWithPath: setpriv)
            process.arguments = ["--reuid=65534", "--regid=65534", "--clear-groups", copy, "open", dir.dataDir, "1"]
        } else {
            try FileManager.default.setAttributes([.posixPermissions: 0o000], ofItemAtPath: dir.dataDir)
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = ["open", dir.dataDir, "1"]
        }
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir.dataDir)
        #expect(process.terminationStatus != 0)
        #expect(message.contains("permission denied"), "\(message)")
        #expect(message.contains(dir.dataDir))
    }
}

/// An existing empty directory (a mount point cannot be renamed onto) is filled in place; a cut at any step of that
/// leaves either a complete directory or one the next start clears and fills again.
@Suite("Data directory: created in place")
struct InPlaceCreationTests {
    @Test func anEmptyDirectoryWithLostAndFoundIsFilledInPlaceAndSurvivesACut() throws {
        let fs = PowerCutFileSystem()
        try fs.makeDirectories("/mnt/db")
        try fs.makeDirectory("/mnt/db/lost+found")
        try fs.syncDirectory("/mnt/db")
        let opened = try DataDirectory.open(path: "/mnt/db", nodeID: 4, fs: fs)
        #expect(opened.created)
        try LogWriter(wal: opened.wal, strategy: .diskFirst).persist(
            entries: [], hardState: HardState(term: 2, vote: 4, commit: 0))
        opened.wal.close()
        fs.cutPower(.dropUnsynced)
        let reopened = try DataDirectory.open(path: "/mnt/db", nodeID: 4, mode: .openExisting, fs: fs)
        #expect(reopened.wal.hardState.term == 2 && reopened.wal.hardState.vote == 4)
        #expect(try fs.list("/mnt/db").contains("lost+found"))
        #expect(try !fs.list("/mnt/db").contains(DataDirectory.inPlaceMarkerName))
    }

    @Test(arguments: 0..<40)
    func aCutAtAnyStepOfTheCreationLeavesAStartableDirectory(step: Int) throws {
        let disk = PowerCutFileSystem()
        try disk.makeDirectories("/mnt/db")
        let failing = FailingFileSystem(disk, failAfter: step)
        let first = Result { try DataDirectory.open(path: "/mnt/db", nodeID: 1, fs: failing) }
        if case .success(let opened) = first { opened.wal.close() }
        disk.cutPower(.dropUnsynced)
        let again = try DataDirectory.open(path: "/mnt/db", nodeID: 1, fs: disk)
        #expect(again.wal.hardState.term == 0 && again.wal.hardState.commit == 0)
        #expect(try !disk.list("/mnt/db").contains(DataDirectory.inPlaceMarkerName))
    }
}

/// Delegates to a disk, failing every mutation after the first `failAfter` (a process that died mid-way).
private final class FailingFileSystem: StorageFileSystem, @unchecked Sendable {
    // @unchecked Sendable: used from one test thread only.
    let disk: PowerCutFileSystem
    var remaining: Int

    init(_ disk: PowerCutFileSystem, failAfter: Int) {
        self.disk = disk
        self.remaining = failAfter
    }

    struct Died: Error {}

    private func mutate() throws {
        guard remaining > 0 else { throw Died() }
        remaining -= 1
    }

    func kind(of path: String) throws -> FileKind { try disk.kind(of: path) }
    func list(_ path: String) throws -> [String] { try disk.list(path) }
    func makeDirectory(_ path: String) throws { try mutate(); try disk.makeDirectory(path) }
    func syncDirectory(_ path: String) throws { try mutate(); try disk.syncDirectory(path) }
    func rename(_ from: String, _ to: String) throws { try mutate(); try disk.rename(from, to) }
    func remove(_ path: String) throws { try mutate(); try disk.remove(path) }
    func removeDirectory(_ path: String) throws { try mutate(); try disk.removeDirectory(path) }
    func open(_ path: String, writable: Bool, create: Bool) throws -> any StorageFile {
        if writable { try mutate() }
        return try disk.open(path, writable: writable, create: create)
    }
}

/// POSIX, except that the first `mkdir` of `contested` finds that another process created it a moment earlier: the
/// directory is made, then `mkdir` fails with EEXIST, as when three nodes start at once under one new `db/`.
private struct LosesTheMkdirRace: StorageFileSystem {
    let contested: String
    let lost = LockedFlag()
    private let posix = POSIXFileSystem()

    final class LockedFlag: @unchecked Sendable {  // @unchecked Sendable: `value` is read and written under `lock`.
        private let lock = NSLock()
        private var value = false
        func takeFirst() -> Bool { lock.withLock { defer { value = true }; return !value } }
    }

    func kind(of path: String) throws -> FileKind { try posix.kind(of: path) }
    func list(_ path: String) throws -> [String] { try posix.list(path) }
    func makeDirectory(_ path: String) throws {
        if path == contested, lost.takeFirst() {
            try posix.makeDirectory(path)
            throw StorageIOError(errno: EEXIST, operation: "mkdir", path: path)
        }
        try posix.makeDirectory(path)
    }
    func syncDirectory(_ path: String) throws { try posix.syncDirectory(path) }
    func rename(_ from: String, _ to: String) throws { try posix.rename(from, to) }
    func remove(_ path: String) throws { try posix.remove(path) }
    func removeDirectory(_ path: String) throws { try posix.removeDirectory(path) }
    func open(_ path: String, writable: Bool, create: Bool) throws -> any StorageFile {
        try posix.open(path, writable: writable, create: create)
    }
}

extension DirectoryTests {
    @Test func aParentCreatedConcurrentlyByAnotherNodeIsNotAnError() throws {
        let dir = TempDir("dirs")
        defer { dir.cleanup() }
        let shared = dir.path + "/db"
        let fs = LosesTheMkdirRace(contested: shared)
        #expect(try DataDirectory.open(path: shared + "/3", nodeID: 3, fs: fs).created)
        #expect(try FileManager.default.contentsOfDirectory(atPath: shared) == ["3"])
        // A file where the directory should be is still an error.
        let blocked = dir.path + "/blocked"
        writeFile(blocked, [1])
        #expect(throws: (any Error).self) { try LosesTheMkdirRace(contested: blocked + "/x").makeDirectories(blocked + "/x/y") }
    }
}
