import RaftCore

/// A disk that can lose power, for tests: an in-memory `StorageFileSystem` that keeps what was written apart from what
/// was made durable, the way a kernel's page cache and a disk do.
///
/// - A file's writes and truncations are visible at once and become durable at its `sync()` (fsync). A power cut
///   (`cutPower(_:)`) drops what was not synced: all of it, all but a torn prefix of the last write, or a random
///   subset (the kernel writes dirty pages back in any order).
/// - A directory's entries (creations, renames, removals) become durable only when that directory is synced
///   (`syncDirectory`); a power cut forgets the rest. A file's fsync does not make its name durable.
/// - `plantedBug` turns a fsync into a no-op: `.skipWALFsync` for WAL segments (`*.seg`) once created, `.skipDirFsync`
///   for directories; tests use it to show that they catch a missing fsync.
///
/// Paths are absolute (`/a/b`); the root always exists. Single-threaded: one test drives it.
// @unchecked Sendable: a test double driven by one test thread (see above).
public final class PowerCutFileSystem: StorageFileSystem, @unchecked Sendable {
    /// What a power cut keeps of the writes since each file's last fsync.
    public enum Cut: Sendable, Equatable, CustomStringConvertible {
        /// Nothing.
        case dropUnsynced
        /// Every unsynced write but the last, and of that one a prefix (`seed` picks its length).
        case tearLastWrite(seed: UInt64)
        /// Each unsynced write with probability 1/2, in order (`seed` picks them).
        case keepRandomSubset(seed: UInt64)

        public var description: String {
            switch self {
            case .dropUnsynced: return "drop-unsynced"
            case .tearLastWrite(let seed): return "tear-last-write(\(seed))"
            case .keepRandomSubset(let seed): return "keep-random-subset(\(seed))"
            }
        }
    }

    enum Operation {
        case write(offset: Int, bytes: [UInt8])
        case truncate(length: Int)

        func apply(to content: inout [UInt8]) {
            switch self {
            case .write(let offset, let bytes):
                if content.count < offset + bytes.count {
                    content.append(contentsOf: [UInt8](repeating: 0, count: offset + bytes.count - content.count))
                }
                content.replaceSubrange(offset..<(offset + bytes.count), with: bytes)
            case .truncate(let length):
                if length < content.count {
                    content.removeLast(content.count - length)
                } else {
                    content.append(contentsOf: [UInt8](repeating: 0, count: length - content.count))
                }
            }
        }
    }

    final class Inode {
        var content: [UInt8] = []
        var durable: [UInt8] = []
        var pending: [Operation] = []
    }

    final class Directory {
        var entries: [String: Node] = [:]
        var durableEntries: [String: Node] = [:]
    }

    enum Node {
        case file(Inode)
        case directory(Directory)
    }

    public let plantedBug: PlantedBug?
    private let root = Directory()
    /// fsyncs that reached the (simulated) disk, files and directories.
    public private(set) var fileSyncs = 0
    public private(set) var directorySyncs = 0

    /// A full disk: the total size of all files may not exceed this; a write past it stores what fits and throws
    /// ENOSPC (as write(2) does). `nil`: unlimited. Settable at any time (an operator freeing space).
    public var capacityBytes: Int?

    public init(plantedBug: PlantedBug? = nil) { self.plantedBug = plantedBug }

    /// The bytes held by every file.
    public var usedBytes: Int {
        func size(_ directory: Directory) -> Int {
            directory.entries.values.reduce(0) { total, node in
                switch node {
                case .file(let inode): return total + inode.content.count
                case .directory(let child): return total + size(child)
                }
            }
        }
        return size(root)
    }

    // MARK: - Power

    /// Cuts the power: every directory keeps only its synced entries, every file its synced content plus what `cut`
    /// lets through of the rest. Open files stay usable objects but the paths now lead to what survived.
    public func cutPower(_ cut: Cut) {
        var rng = SplitMix64(seed: {
            switch cut {
            case .dropUnsynced: return 0
            case .tearLastWrite(let seed), .keepRandomSubset(let seed): return seed
            }
        }())
        var seen = Set<ObjectIdentifier>()
        func restore(_ dir: Directory) {
            guard seen.insert(ObjectIdentifier(dir)).inserted else { return }
            dir.entries = dir.durableEntries
            for node in dir.entries.values {
                switch node {
                case .directory(let child): restore(child)
                case .file(let inode):
                    guard seen.insert(ObjectIdentifier(inode)).inserted else { continue }
                    var content = inode.durable
                    for (k, op) in inode.pending.enumerated() {
                        switch cut {
                        case .dropUnsynced:
                            break
                        case .keepRandomSubset:
                            if rng.next() % 2 == 0 { op.apply(to: &content) }
                        case .tearLastWrite:
                            if k < inode.pending.count - 1 {
                                op.apply(to: &content)
                            } else if case .write(let offset, let bytes) = op, !bytes.isEmpty {
                                Operation.write(offset: offset, bytes: Array(bytes.prefix(Int(rng.next() % UInt64(bytes.count)))))
                                    .apply(to: &content)
                            }
                        }
                    }
                    inode.content = content
                    inode.durable = content
                    inode.pending = []
                }
            }
        }
        restore(root)
    }

    // MARK: - Paths

    private func components(_ path: String) -> [String] {
        path.split(separator: "/").map(String.init).filter { $0 != "." }
    }

    private func lookup(_ path: String) -> Node? {
        var node = Node.directory(root)
        for name in components(path) {
            guard case .directory(let dir) = node, let next = dir.entries[name] else { return nil }
            node = next
        }
        return node
    }

    /// The directory holding `path` and the last component.
    private func parent(of path: String) throws -> (Directory, String) {
        let parts = components(path)
        guard let name = parts.last else { throw StorageIOError(errno: 22, operation: "resolve", path: path) }
        guard case .directory(let dir)? = lookup("/" + parts.dropLast().joined(separator: "/")) else {
            throw StorageIOError(errno: 2, operation: "resolve", path: path)  // ENOENT
        }
        return (dir, name)
    }

    private func directory(_ path: String) throws -> Directory {
        guard case .directory(let dir)? = lookup(path) else {
            throw StorageIOError(errno: 20, operation: "opendir", path: path)  // ENOTDIR
        }
        return dir
    }

    // MARK: - StorageFileSystem

    public func kind(of path: String) throws -> FileKind {
        switch lookup(path) {
        case nil: return .missing
        case .file?: return .file
        case .directory?: return .directory
        }
    }

    public func list(_ path: String) throws -> [String] { try directory(path).entries.keys.sorted() }

    public func makeDirectory(_ path: String) throws {
        let (dir, name) = try parent(of: path)
        guard dir.entries[name] == nil else { throw StorageIOError(errno: 17, operation: "mkdir", path: path) }
        dir.entries[name] = .directory(Directory())
    }

    public func syncDirectory(_ path: String) throws {
        let dir = try directory(path)
        guard plantedBug != .skipDirFsync else { return }
        dir.durableEntries = dir.entries
        directorySyncs += 1
    }

    public func rename(_ from: String, _ to: String) throws {
        let (source, oldName) = try parent(of: from)
        let (target, newName) = try parent(of: to)
        guard let node = source.entries[oldName] else { throw StorageIOError(errno: 2, operation: "rename", path: from) }
        if case .directory(let existing)? = target.entries[newName], !existing.entries.isEmpty {
            throw StorageIOError(errno: 39, operation: "rename", path: to)  // ENOTEMPTY
        }
        source.entries[oldName] = nil
        target.entries[newName] = node
    }

    public func remove(_ path: String) throws {
        guard let (dir, name) = try? parent(of: path), case .file? = dir.entries[name] else { return }
        dir.entries[name] = nil
    }

    public func removeDirectory(_ path: String) throws {
        let (dir, name) = try parent(of: path)
        guard case .directory(let child)? = dir.entries[name], child.entries.isEmpty else {
            throw StorageIOError(errno: 39, operation: "rmdir", path: path)
        }
        dir.entries[name] = nil
    }

    public func open(_ path: String, writable: Bool, create: Bool) throws -> any StorageFile {
        if create {
            let (dir, name) = try parent(of: path)
            guard dir.entries[name] == nil else { throw StorageIOError(errno: 17, operation: "open", path: path) }
            let inode = Inode()
            dir.entries[name] = .file(inode)
            return File(path: path, inode: inode, fs: self)
        }
        guard case .file(let inode)? = lookup(path) else { throw StorageIOError(errno: 2, operation: "open", path: path) }
        return File(path: path, inode: inode, fs: self)
    }

    // MARK: - Files

    final class File: StorageFile {
        let path: String
        let inode: Inode
        let fs: PowerCutFileSystem
        private var closed = false

        init(path: String, inode: Inode, fs: PowerCutFileSystem) {
            self.path = path
            self.inode = inode
            self.fs = fs
        }

        private func check(_ operation: String) throws {
            if closed { throw StorageIOError(errno: 9, operation: operation, path: path) }  // EBADF
        }

        func close() { closed = true }

        func write(_ bytes: [UInt8], at offset: Int) throws {
            try check("write")
            guard !bytes.isEmpty else { return }
            var bytes = bytes
            var full = false
            if let capacity = fs.capacityBytes {
                let growth = max(0, offset + bytes.count - inode.content.count)
                let room = max(0, capacity - fs.usedBytes)
                if growth > room {
                    bytes = Array(bytes.prefix(max(0, inode.content.count - offset) + room))
                    full = true
                }
            }
            if !bytes.isEmpty {
                let op = Operation.write(offset: offset, bytes: bytes)
                op.apply(to: &inode.content)
                inode.pending.append(op)
            }
            if full { throw StorageIOError(errno: 28 /* ENOSPC */, operation: "write", path: path) }
        }

        func read(count: Int, at offset: Int) throws -> [UInt8] {
            try check("read")
            guard offset < inode.content.count else { return [] }
            return Array(inode.content[offset..<min(inode.content.count, offset + count)])
        }

        func size() throws -> Int {
            try check("stat")
            return inode.content.count
        }

        func sync() throws {
            try check("fsync")
            guard fs.plantedBug != .skipWALFsync || !path.hasSuffix(".seg") else { return }
            inode.durable = inode.content
            inode.pending = []
            fs.fileSyncs += 1
        }

        func truncate(to length: Int) throws {
            try check("truncate")
            let op = Operation.truncate(length: length)
            op.apply(to: &inode.content)
            inode.pending.append(op)
        }
    }
}
