import Glibc

// MARK: - The file system as a parameter

/// An open file as storage uses it: positional reads and writes, fsync, truncation. Failures are `StorageIOError`s
/// naming the path. Not thread-safe; the owner closes it.
public protocol StorageFile: AnyObject {
    var path: String { get }
    func close()
    func write(_ bytes: [UInt8], at offset: Int) throws
    /// Reads `count` bytes at `offset`; fewer only at end of file.
    func read(count: Int, at offset: Int) throws -> [UInt8]
    func size() throws -> Int
    func sync() throws
    func truncate(to length: Int) throws
}

extension StorageFile {
    public func readAll() throws -> [UInt8] { try read(count: try size(), at: 0) }
}

/// What a path is.
public enum FileKind: Sendable { case missing, file, directory, other }

/// The file system the storage code (WAL, hard state, snapshots, data directory) runs on: POSIX files in production
/// (`POSIXFileSystem`), a disk that can lose power in tests (`PowerCutFileSystem`).
public protocol StorageFileSystem: Sendable {
    func kind(of path: String) throws -> FileKind
    /// The names in `path`, without `.` and `..`, sorted.
    func list(_ path: String) throws -> [String]
    func makeDirectory(_ path: String) throws
    /// fsyncs a directory so that creations, renames and unlinks in it are durable.
    func syncDirectory(_ path: String) throws
    func rename(_ from: String, _ to: String) throws
    /// Removes a file; a missing one is not an error.
    func remove(_ path: String) throws
    /// Removes an empty directory.
    func removeDirectory(_ path: String) throws
    /// Opens `path`; `create` creates it and fails if it exists.
    func open(_ path: String, writable: Bool, create: Bool) throws -> any StorageFile
}

extension StorageFileSystem {
    func open(_ path: String, writable: Bool) throws -> any StorageFile { try open(path, writable: writable, create: false) }

    /// Creates `path` and its missing parents, each creation made durable by an fsync of the directory holding it
    /// (else a power cut could take a new data directory away after the node voted from it). Another process may
    /// create the same directory between the check and `mkdir` (three nodes started at once under one new `db/`):
    /// a directory found there after a failed `mkdir` is taken as made, and its parent is still fsynced.
    func makeDirectories(_ path: String) throws {
        if try kind(of: path) == .directory { return }
        let parent = FileSystem.parentDirectory(of: path)
        if parent != path, try kind(of: parent) == .missing { try makeDirectories(parent) }
        if try kind(of: path) != .directory {
            do {
                try makeDirectory(path)
            } catch {
                guard try kind(of: path) == .directory else { throw error }
            }
            try syncDirectory(parent)
        }
    }

    /// Removes a directory tree (used only for our own half-built temporary directories).
    func removeTree(_ path: String) throws {
        switch try kind(of: path) {
        case .missing: return
        case .directory:
            for name in try list(path) { try removeTree(path + "/" + name) }
            try removeDirectory(path)
        case .file, .other: try remove(path)
        }
    }

    /// Writes `bytes` to a new file at `path` through `path.tmp`: write, fsync, rename, fsync the directory.
    func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let tmp = path + ".tmp"
        try remove(tmp)
        let file = try open(tmp, writable: true, create: true)
        try file.write(bytes, at: 0)
        try file.sync()
        file.close()
        try rename(tmp, path)
        try syncDirectory(FileSystem.parentDirectory(of: path))
    }
}

/// The production file system: POSIX calls.
public struct POSIXFileSystem: StorageFileSystem {
    public init() {}
    public func kind(of path: String) throws -> FileKind { try FileSystem.kind(of: path) }
    public func list(_ path: String) throws -> [String] { try FileSystem.list(path) }
    public func makeDirectory(_ path: String) throws { try FileSystem.makeDirectory(path) }
    public func syncDirectory(_ path: String) throws { try FileSystem.syncDirectory(path) }
    public func rename(_ from: String, _ to: String) throws { try FileSystem.rename(from, to) }
    public func remove(_ path: String) throws { try FileSystem.remove(path) }
    public func removeDirectory(_ path: String) throws {
        guard rmdir(path) == 0 else { throw StorageIOError(errno: errno, operation: "rmdir", path: path) }
    }
    public func open(_ path: String, writable: Bool, create: Bool) throws -> any StorageFile {
        try POSIXFile.open(path, writable: writable, create: create)
    }
}

/// A thin owner of a POSIX file descriptor: positional reads and writes, fsync, truncation. Every failure is a
/// `StorageIOError` naming the path. Not thread-safe; the owner closes it.
final class POSIXFile: StorageFile {
    let path: String
    private(set) var fd: Int32

    private init(path: String, fd: Int32) {
        self.path = path
        self.fd = fd
    }

    deinit { if fd >= 0 { _ = Glibc.close(fd) } }

    /// Opens `path`; `create` adds `O_CREAT | O_EXCL` so that an existing file is never overwritten.
    static func open(_ path: String, writable: Bool, create: Bool = false) throws -> POSIXFile {
        var flags: Int32 = writable ? O_RDWR : O_RDONLY
        flags |= O_CLOEXEC
        if create { flags |= O_CREAT | O_EXCL }
        let fd = Glibc.open(path, flags, 0o644)
        guard fd >= 0 else { throw StorageIOError(errno: errno, operation: "open", path: path) }
        return POSIXFile(path: path, fd: fd)
    }

    func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    /// Writes all of `bytes` at `offset`, looping over short writes and EINTR.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw StorageIOError(errno: errno, operation: "write", path: path)
            }
            if n == 0 { throw StorageIOError(errno: EIO, operation: "write", path: path) }
            done += n
        }
    }

    func write(_ bytes: [UInt8], at offset: Int) throws {
        guard !bytes.isEmpty else { return }
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Reads `count` bytes at `offset`; fewer only at end of file.
    func read(count: Int, at offset: Int) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        try buffer.withUnsafeMutableBytes { raw in
            while done < count {
                let n = Glibc.pread(fd, raw.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw StorageIOError(errno: errno, operation: "read", path: path)
                }
                if n == 0 { break }
                done += n
            }
        }
        if done < count { buffer.removeLast(count - done) }
        return buffer
    }

    func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw StorageIOError(errno: errno, operation: "stat", path: path) }
        return Int(st.st_size)
    }

    func sync() throws {
        while fsync(fd) != 0 {
            if errno == EINTR { continue }  // not a failed flush: the call was interrupted before it ran
            throw StorageIOError(errno: errno, operation: "fsync", path: path)
        }
    }

    func truncate(to length: Int) throws {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw StorageIOError(errno: errno, operation: "truncate", path: path)
        }
    }
}

// MARK: - Directory helpers

enum FileSystem {
    typealias Kind = FileKind

    static func kind(of path: String) throws -> Kind {
        var st = stat()
        if stat(path, &st) != 0 {
            if errno == ENOENT || errno == ENOTDIR { return .missing }
            throw StorageIOError(errno: errno, operation: "stat", path: path)
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: return .directory
        case S_IFREG: return .file
        default: return .other
        }
    }

    /// The names in `path`, without `.` and `..`, sorted.
    static func list(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else { throw StorageIOError(errno: errno, operation: "opendir", path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw StorageIOError(errno: errno, operation: "readdir", path: path) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    static func makeDirectory(_ path: String) throws {
        guard mkdir(path, 0o755) == 0 else { throw StorageIOError(errno: errno, operation: "mkdir", path: path) }
    }

    /// fsyncs a directory so that creations, renames and unlinks in it are durable.
    static func syncDirectory(_ path: String) throws {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw StorageIOError(errno: errno, operation: "open", path: path) }
        defer { _ = Glibc.close(fd) }
        guard fsync(fd) == 0 else { throw StorageIOError(errno: errno, operation: "fsync", path: path) }
    }

    static func rename(_ from: String, _ to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw StorageIOError(errno: errno, operation: "rename", path: to) }
    }

    static func remove(_ path: String) throws {
        guard unlink(path) == 0 || errno == ENOENT else {
            throw StorageIOError(errno: errno, operation: "unlink", path: path)
        }
    }

    static func parentDirectory(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        if slash == trimmed.startIndex { return "/" }
        return String(trimmed[..<slash])
    }

    static func lastComponent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return String(trimmed) }
        return String(trimmed[trimmed.index(after: slash)...])
    }
}
