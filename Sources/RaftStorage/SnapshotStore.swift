import Glibc
import RaftCore

/// A snapshot as stored: its metadata and the state machine's opaque image.
public struct StoredSnapshot: Sendable, Equatable {
    public var metadata: SnapshotMetadata
    public var data: [UInt8]
    /// The file it was read from or written to.
    public var path: String

    public init(metadata: SnapshotMetadata, data: [UInt8], path: String = "") {
        self.metadata = metadata
        self.data = data
        self.path = path
    }
}

/// Snapshot files in one directory (`<db_root_dir>/snapshots`), named `snap-<index>-<term>.snap`.
///
/// File format (little-endian):
/// ```
/// 0   "DSNAP001"  magic
/// 8   u32         format version (1)
/// 12  u32         metadata length m
/// 16  m bytes     metadata: index, term, voters, learners
/// ..  u64         data length d
/// ..  d bytes     the state machine image
/// ..  u32         CRC32C over everything before it
/// ```
///
/// A snapshot is written to `<name>.tmp`, fsynced, renamed into place and the directory fsynced, so a `.snap` file
/// is always complete; `.tmp` files are leftovers of an interrupted save and are removed on open. The newest
/// `retain` snapshots are kept.
///
/// A corrupt newest snapshot is refused (no silent fallback to an older one): the log may already be compacted past
/// the older one, so falling back could silently lose committed state. The operator decides (docs/storage.md).
// @unchecked Sendable: the node serialises every call with its snapshot lock (two threads, never at once).
public final class SnapshotStore: @unchecked Sendable {
    public let directory: String
    /// How many snapshot files to keep (the newest ones).
    public let retain: Int
    /// What `open` cleaned up, for the node to log.
    public private(set) var recoveryWarnings: [String] = []

    static let magic: [UInt8] = Array("DSNAP001".utf8)
    static let version: UInt32 = 1

    /// The file system the snapshot files live on.
    let fs: any StorageFileSystem

    private init(directory: String, retain: Int, fs: any StorageFileSystem) {
        self.directory = directory
        self.retain = max(1, retain)
        self.fs = fs
    }

    /// Opens the snapshot directory, removing temporary files of interrupted saves.
    public static func open(
        directory: String, retain: Int = 3, fs: any StorageFileSystem = POSIXFileSystem()
    ) throws -> SnapshotStore {
        let store = SnapshotStore(directory: directory, retain: retain, fs: fs)
        do {
            for name in try store.fs.list(directory) where name.hasSuffix(".tmp") {
                try store.fs.remove(directory + "/" + name)
                store.recoveryWarnings.append("removed unfinished snapshot file \(directory)/\(name)")
            }
        } catch let io as StorageIOError {
            throw StorageOpenError(io)
        }
        return store
    }

    // MARK: - Names

    static func fileName(index: LogIndex, term: Term) -> String {
        func pad(_ v: UInt64) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, 20 - s.count)) + s
        }
        return "snap-\(pad(index))-\(pad(term)).snap"
    }

    static func parseFileName(_ name: String) -> (LogIndex, Term)? {
        guard name.hasPrefix("snap-"), name.hasSuffix(".snap") else { return nil }
        let parts = name.dropFirst(5).dropLast(5).split(separator: "-")
        guard parts.count == 2, let index = UInt64(parts[0]), let term = UInt64(parts[1]) else { return nil }
        return (index, term)
    }

    /// The snapshot files present, oldest first, as (index, term, path).
    public func list() throws -> [(index: LogIndex, term: Term, path: String)] {
        do {
            return try fs.list(directory).compactMap { name in
                Self.parseFileName(name).map { ($0.0, $0.1, directory + "/" + name) }
            }.sorted { $0.index < $1.index }
        } catch let io as StorageIOError {
            throw StorageOpenError(io)
        }
    }

    // MARK: - Encoding

    public static func encode(metadata: SnapshotMetadata, data: [UInt8]) -> [UInt8] {
        var meta = ByteWriter()
        WALRecord.encode(metadata, into: &meta)
        var w = ByteWriter(capacity: data.count + meta.bytes.count + 32)
        w.raw(magic)
        w.u32(version)
        w.blob(meta.bytes)
        w.u64(UInt64(data.count))
        w.raw(data)
        w.u32(CRC32C.checksum(w.bytes))
        return w.bytes
    }

    /// Decodes a snapshot file's bytes. Throws `DecodeError` on anything but a whole, checksum-valid file.
    public static func decode(_ bytes: [UInt8]) throws -> (SnapshotMetadata, [UInt8]) {
        guard bytes.count >= 8 + 4 + 4 + 8 + 4 else { throw DecodeError("snapshot file too short (\(bytes.count) bytes)") }
        let stored = UInt32(bytes[bytes.count - 4]) | UInt32(bytes[bytes.count - 3]) << 8
            | UInt32(bytes[bytes.count - 2]) << 16 | UInt32(bytes[bytes.count - 1]) << 24
        guard CRC32C.checksum(bytes[..<(bytes.count - 4)]) == stored else {
            throw DecodeError("snapshot checksum mismatch")
        }
        var r = ByteReader(bytes[..<(bytes.count - 4)])
        guard Array(try r.raw(8, "magic")) == magic else { throw DecodeError("not a snapshot file (bad magic)") }
        let version = try r.u32("version")
        guard version == Self.version else { throw DecodeError("unsupported snapshot format version \(version)") }
        let metaBytes = try r.blob("metadata")
        var mr = ByteReader(metaBytes)
        let metadata = try WALRecord.decodeSnapshotMetadata(&mr)
        try mr.expectEnd("snapshot metadata")
        let length = try r.u64("data length")
        guard length <= UInt64(r.remaining) else { throw DecodeError("data length \(length) exceeds the file") }
        let data = Array(try r.raw(Int(length), "data"))
        try r.expectEnd("snapshot")
        return (metadata, data)
    }

    // MARK: - Save and load

    /// Writes a snapshot durably (temp file, fsync, rename, directory fsync), then deletes all but the newest
    /// `retain` snapshots. Any failure is fatal for the node (an fsync is never retried).
    @discardableResult
    public func save(metadata: SnapshotMetadata, data: [UInt8]) throws -> StoredSnapshot {
        let path = directory + "/" + Self.fileName(index: metadata.index, term: metadata.term)
        do {
            try fs.writeAtomically(Self.encode(metadata: metadata, data: data), to: path)
        } catch let io as StorageIOError {
            try? fs.remove(path + ".tmp")
            // A full disk before the rename leaves only the temporary file, now removed: nothing changed.
            if io.kind == .noSpace, io.operation != "fsync" {
                throw StorageNoSpaceError(io, context: "saving snapshot \(path)")
            }
            if io.kind == .noDescriptors, io.operation != "fsync" {
                throw StorageNoDescriptorsError(io, context: "saving snapshot \(path)")
            }
            throw StorageFatalError(io, context: "saving snapshot \(path)")
        }
        try prune()
        return StoredSnapshot(metadata: metadata, data: data, path: path)
    }

    private func prune() throws {
        do {
            let files = try list()
            guard files.count > retain else { return }
            for file in files.prefix(files.count - retain) { try fs.remove(file.path) }
            try fs.syncDirectory(directory)
        } catch let io as StorageIOError {
            throw StorageFatalError(io, context: "deleting old snapshots in \(directory)")
        }
    }

    /// Reads and verifies one snapshot file.
    public static func load(path: String, fs: any StorageFileSystem = POSIXFileSystem()) throws -> StoredSnapshot {
        let bytes: [UInt8]
        do {
            let file = try fs.open(path, writable: false)
            bytes = try file.readAll()
        } catch let io as StorageIOError {
            throw StorageOpenError(io)
        }
        do {
            let (metadata, data) = try decode(bytes)
            guard let (index, term) = parseFileName(FileSystem.lastComponent(of: path)),
                index == metadata.index, term == metadata.term
            else {
                throw DecodeError("file name does not match the metadata \(metadata)")
            }
            return StoredSnapshot(metadata: metadata, data: data, path: path)
        } catch {
            throw StorageOpenError(
                .corruption,
                "snapshot \(path) is damaged: \(error); refusing to start (an older snapshot is not used silently: "
                    + "the log may be compacted past it). To recover: move the data directory aside and let the node "
                    + "catch up from the leader, or move only this file aside if the log still covers an older "
                    + "snapshot (see docs/storage.md)",
                path: path, offset: 0)
        }
    }

    /// The newest snapshot, verified; `nil` when there is none.
    public func loadLatest() throws -> StoredSnapshot? {
        guard let newest = try list().last else { return nil }
        return try Self.load(path: newest.path, fs: fs)
    }
}
