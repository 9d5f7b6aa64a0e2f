import Foundation
import Glibc
import RaftCore

/// A node's data directory (`db_root_dir`): its identity file, the WAL and the snapshots.
///
/// ```
/// <db_root_dir>/DENGINE         identity: format version, node id and (a restored cluster's) cluster id, checksummed
/// <db_root_dir>/wal/*.seg       log segments (see `WAL`)
/// <db_root_dir>/snapshots/*.snap
/// ```
///
/// A new directory is built under a hidden temporary name next to it and renamed into place, so a directory with
/// a `DENGINE` file is always complete. An existing empty directory (a mount point, say, which cannot be renamed
/// onto) is filled in place instead: `.dengine-init` first, `DENGINE` last, then `.dengine-init` removed; a start
/// that finds `.dengine-init` without `DENGINE` clears what the interrupted creation left and starts over. A
/// directory that exists, is not empty (`lost+found` aside) and has no `DENGINE` file is foreign and refused; nothing
/// in it is touched.
public enum DataDirectory {
    public static let markerName = "DENGINE"
    /// Present while an existing empty directory is being filled in place.
    static let inPlaceMarkerName = ".dengine-init"
    public static let formatVersion = 1

    public enum Mode: Sendable, Equatable {
        /// Create the directory (and its parents) when it is missing or empty. A node's normal start.
        case createIfMissing
        /// Refuse a missing directory.
        case openExisting
    }

    /// Everything a node needs from its data directory at boot.
    // @unchecked Sendable: handed once from the opening thread to the node, which confines WAL and store (below).
    public struct Opened: @unchecked Sendable {
        public var path: String
        public var wal: WAL
        public var snapshots: SnapshotStore
        /// The newest snapshot, to restore the state machine from; `nil` on a fresh node.
        public var latestSnapshot: StoredSnapshot?
        /// True when this call created the directory.
        public var created: Bool
        /// Repairs made while opening (torn tails truncated, temporary files removed), for the node to log.
        public var warnings: [String]
        /// The cluster this directory belongs to, when it was written for a restored cluster (`dctl snapshot
        /// restore`); `nil` for a cluster bootstrapped from config files. Peers only talk to peers with the same id.
        public var clusterID: UInt64? = nil
    }

    /// Opens (or creates) the data directory of node `nodeID` at `path`.
    ///
    /// Throws `StorageOpenError` with a message fit for an operator: missing, not a directory, foreign, belonging
    /// to another node, unsupported format, permission denied, disk full, corruption (file and offset).
    ///
    /// `clusterID` is written into the identity of a directory this call creates (a restore); an existing
    /// directory keeps its own.
    public static func open(
        path: String, nodeID: NodeID, mode: Mode = .createIfMissing, walOptions: WAL.Options = WAL.Options(),
        retainSnapshots: Int = 3, fs: any StorageFileSystem = POSIXFileSystem(), clusterID: UInt64? = nil
    ) throws -> Opened {
        var created = false
        var identity: UInt64?
        do {
            switch try fs.kind(of: path) {
            case .missing:
                guard mode == .createIfMissing else {
                    throw StorageOpenError(
                        .missingDirectory, "data directory \(path) does not exist (db_root_dir); nothing was created",
                        path: path)
                }
                try create(path: path, nodeID: nodeID, clusterID: clusterID, fs: fs)
                created = true
            case .file, .other:
                throw StorageOpenError(
                    .notADirectory, "data directory \(path) exists but is not a directory; nothing was changed",
                    path: path)
            case .directory:
                var names = try fs.list(path)
                if !names.contains(markerName), names.contains(inPlaceMarkerName) {
                    // An in-place creation was interrupted: only its own files are here; clear them.
                    for sub in ["wal", "snapshots"] { try fs.removeTree(path + "/" + sub) }
                    try fs.remove(path + "/" + inPlaceMarkerName)
                    names = try fs.list(path)
                }
                if names.contains(markerName), names.contains(inPlaceMarkerName) {
                    // Complete (the identity file is written last); only the flag's removal was lost.
                    try fs.remove(path + "/" + inPlaceMarkerName)
                    try fs.syncDirectory(path)
                }
                if !names.contains(markerName) {
                    guard names.allSatisfy({ $0 == "lost+found" }) else {
                        throw StorageOpenError(
                            .foreignDirectory,
                            "data directory \(path) is not empty and has no \(markerName) file: it is not a dengine "
                                + "data directory (or belongs to another program); refusing to use it, nothing was "
                                + "changed. Point db_root_dir at an empty or new directory",
                            path: path)
                    }
                    guard mode == .createIfMissing else {
                        throw StorageOpenError(
                            .missingDirectory, "data directory \(path) is empty (no \(markerName) file)", path: path)
                    }
                    try createInPlace(path: path, nodeID: nodeID, clusterID: clusterID, fs: fs)
                    created = true
                }
            }
            identity = try checkIdentity(path: path, nodeID: nodeID, fs: fs)
            for sub in ["wal", "snapshots"] where try fs.kind(of: path + "/" + sub) != .directory {
                throw StorageOpenError(
                    .missingFiles, "\(path)/\(sub) is missing: the data directory is incomplete; refusing to start",
                    path: path + "/" + sub)
            }
        } catch let io as StorageIOError {
            throw StorageOpenError(io)
        }
        let wal = try WAL.open(directory: path + "/wal", options: walOptions, fs: fs)
        let snapshots = try SnapshotStore.open(directory: path + "/snapshots", retain: retainSnapshots, fs: fs)
        let latest = try snapshots.loadLatest()
        var warnings = wal.recoveryWarnings + snapshots.recoveryWarnings
        // Reconcile: the WAL must never refer to a snapshot that is not on disk.
        if let logged = wal.snapshot, (latest?.metadata.index ?? 0) < logged.index {
            throw StorageOpenError(
                .missingFiles,
                "the log was compacted to snapshot \(logged.index) but no snapshot file at or after that index is in "
                    + "\(path)/snapshots; refusing to start", path: path + "/snapshots")
        }
        if let latest, latest.metadata.index > (wal.snapshot?.index ?? 0) {
            // Saved, then the node stopped before the WAL recorded it: record it now.
            do {
                try wal.applySnapshot(latest.metadata)
                try wal.sync()
            } catch let fatal as StorageFatalError {
                throw StorageOpenError(.ioError, fatal.message, path: path + "/wal")
            }
            warnings.append("recorded snapshot \(latest.metadata.index) in the log (saved just before a stop)")
        }
        return Opened(
            path: path, wal: wal, snapshots: snapshots, latestSnapshot: latest, created: created, warnings: warnings,
            clusterID: identity)
    }

    // MARK: - Identity

    static func identityBytes(nodeID: NodeID, clusterID: UInt64? = nil) -> [UInt8] {
        var body = "dengine data directory\nformat_version = \(formatVersion)\nnode_id = \(nodeID)\n"
        if let clusterID { body += "cluster_id = \(String(clusterID, radix: 16))\n" }
        let crc = String(CRC32C.checksum(Array(body.utf8)), radix: 16)
        return Array((body + "checksum = \(crc)\n").utf8)
    }

    /// Checks the identity file and returns its cluster id, if it has one.
    private static func checkIdentity(path: String, nodeID: NodeID, fs: any StorageFileSystem) throws -> UInt64? {
        let markerPath = path + "/" + markerName
        let bytes = try fs.open(markerPath, writable: false).readAll()
        let text = String(decoding: bytes, as: UTF8.self)
        var fields: [String: String] = [:]
        var body = ""
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let parts = line.split(separator: "=", maxSplits: 1).map { $0.trimmingSpaces() }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
            if !line.hasPrefix("checksum") && !line.isEmpty { body += line + "\n" }
        }
        guard text.hasPrefix("dengine data directory\n"), let crc = fields["checksum"],
            crc == String(CRC32C.checksum(Array(body.utf8)), radix: 16),
            let version = fields["format_version"].flatMap(Int.init), let owner = fields["node_id"].flatMap(UInt64.init)
        else {
            throw StorageOpenError(
                .corruption, "identity file \(markerPath) is damaged or not a dengine identity file; refusing to start",
                path: markerPath, offset: 0)
        }
        guard version == formatVersion else {
            throw StorageOpenError(
                .unsupportedFormat,
                "\(path) has data format version \(version); this build reads version \(formatVersion)", path: path)
        }
        guard owner == nodeID else {
            throw StorageOpenError(
                .nodeMismatch,
                "data directory \(path) belongs to node \(owner), but this is node \(nodeID); check node_id and "
                    + "db_root_dir in the config", path: path)
        }
        guard let text = fields["cluster_id"] else { return nil }
        guard let clusterID = UInt64(text, radix: 16), clusterID != 0 else {
            throw StorageOpenError(
                .corruption, "identity file \(markerPath) has a malformed cluster_id; refusing to start",
                path: markerPath, offset: 0)
        }
        return clusterID
    }

    /// Builds a complete directory under a temporary sibling name and renames it into place (replacing an empty
    /// directory, which rename(2) allows), then fsyncs the parent.
    private static func create(path: String, nodeID: NodeID, clusterID: UInt64?, fs: any StorageFileSystem) throws {
        let parent = FileSystem.parentDirectory(of: path)
        try fs.makeDirectories(parent)
        let temp = parent + "/." + FileSystem.lastComponent(of: path) + ".init-\(getpid())"
        try fs.removeTree(temp)
        try fs.makeDirectory(temp)
        try fs.makeDirectory(temp + "/wal")
        try fs.makeDirectory(temp + "/snapshots")
        try WAL.initialize(directory: temp + "/wal", fs: fs)
        try fs.syncDirectory(temp + "/snapshots")
        try fs.writeAtomically(identityBytes(nodeID: nodeID, clusterID: clusterID), to: temp + "/" + markerName)
        try fs.syncDirectory(temp)
        try fs.rename(temp, path)
        try fs.syncDirectory(parent)
    }

    /// Fills the existing empty directory `path` (a mount point cannot be renamed onto), marked by
    /// `.dengine-init` until the identity file, written last, makes it complete.
    private static func createInPlace(path: String, nodeID: NodeID, clusterID: UInt64?, fs: any StorageFileSystem) throws {
        let flag = path + "/" + inPlaceMarkerName
        try fs.writeAtomically([], to: flag)
        try fs.makeDirectory(path + "/wal")
        try fs.makeDirectory(path + "/snapshots")
        try WAL.initialize(directory: path + "/wal", fs: fs)
        try fs.syncDirectory(path + "/snapshots")
        try fs.writeAtomically(identityBytes(nodeID: nodeID, clusterID: clusterID), to: path + "/" + markerName)
        try fs.remove(flag)
        try fs.syncDirectory(path)
    }
}

extension Substring {
    fileprivate func trimmingSpaces() -> String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

extension DataDirectory {
    /// The bytes of every regular file under `path` (the log, snapshots, staged transfers): what
    /// `quota_backend_bytes` limits. Unreadable entries count as empty.
    public static func usedBytes(_ path: String) -> UInt64 {
        var total: UInt64 = 0
        guard let enumerator = FileManager.default.enumerator(atPath: path) else { return 0 }
        while let name = enumerator.nextObject() as? String {
            var info = stat()
            if lstat(path + "/" + name, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG {
                total += UInt64(Swift.max(0, info.st_size))
            }
        }
        return total
    }
}
