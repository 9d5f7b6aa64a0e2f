import Glibc

// MARK: - I/O errors

/// A failed system call on a storage file, classified so that a full disk and a permission problem read differently.
public struct StorageIOError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// ENOSPC or EDQUOT: the disk (or quota) is full.
        case noSpace = "no_space"
        /// EACCES, EPERM or EROFS.
        case permissionDenied = "permission_denied"
        /// ENOENT.
        case notFound = "not_found"
        /// EMFILE or ENFILE: no file descriptor left (the process's or the system's limit).
        case noDescriptors = "no_descriptors"
        /// Anything else (EIO, ...).
        case other = "io_error"
    }

    public var kind: Kind
    public var errno: Int32
    /// The operation, e.g. `write`, `fsync`, `open`.
    public var operation: String
    public var path: String

    public init(errno code: Int32, operation: String, path: String) {
        self.errno = code
        self.operation = operation
        self.path = path
        switch code {
        case ENOSPC, EDQUOT: kind = .noSpace
        case EACCES, EPERM, EROFS: kind = .permissionDenied
        case ENOENT: kind = .notFound
        case EMFILE, ENFILE: kind = .noDescriptors
        default: kind = .other
        }
    }

    public var description: String {
        let reason = String(cString: strerror(errno))
        switch kind {
        case .noSpace:
            return "disk full: \(operation) \(path) failed: \(reason) (errno \(errno)); free space on the volume and restart"
        case .permissionDenied:
            return "permission denied: \(operation) \(path) failed: \(reason) (errno \(errno)); the node's user needs "
                + "read and write access to the data directory"
        case .notFound, .noDescriptors, .other:
            return "\(operation) \(path) failed: \(reason) (errno \(errno))"
        }
    }
}

// MARK: - A full disk

/// A write found the disk full (ENOSPC, EDQUOT) and was undone: nothing of it is in the log, the log is usable, and
/// the same write may be tried again once there is space. (An fsync that fails is always fatal instead.)
public struct StorageNoSpaceError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(message: String) { self.message = message }

    init(_ io: StorageIOError, context: String) {
        message = "disk full while \(context): \(io.operation) \(io.path) failed (errno \(io.errno)); nothing was written"
    }

    public var description: String { message }
}

// MARK: - No descriptor left

/// Opening a file found no descriptor left (EMFILE, ENFILE) and nothing was changed: the same operation may be tried
/// again once connections have closed. (The WAL keeps a spare descriptor for its next segment, so a log write rarely
/// sees this; a snapshot may.)
public struct StorageNoDescriptorsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    init(_ io: StorageIOError, context: String) {
        message = "no file descriptor left while \(context): \(io.operation) \(io.path) failed (errno \(io.errno)); "
            + "nothing was written"
    }

    public var description: String { message }
}

// MARK: - Fatal runtime errors

/// An error after which the node must stop: a failed write or fsync of the log or a snapshot.
///
/// A failed fsync is never retried: Linux may have dropped the dirty pages and marked them clean, so a later
/// successful fsync would not mean the data is on disk. Every later call on the same `WAL` throws this error again.
public struct StorageFatalError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: StorageIOError.Kind
    public var message: String

    public init(code: StorageIOError.Kind, message: String) {
        self.code = code
        self.message = message
    }

    init(_ io: StorageIOError, context: String) {
        code = io.kind
        if io.operation == "fsync" {
            message = "fatal: \(context): \(io); fsync is never retried (the kernel may have dropped the dirty pages); "
                + "the node must stop and recover from its log on restart"
        } else {
            message = "fatal: \(context): \(io)"
        }
    }

    public var description: String { message }
}

// MARK: - Open errors

/// Why a data directory could not be opened. The message names the file and, for corruption, the byte offset, and
/// says what an operator can do. Nothing is created or modified when this is thrown, except where `code` says so.
public struct StorageOpenError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        case missingDirectory = "missing_directory"
        case notADirectory = "not_a_directory"
        case foreignDirectory = "foreign_directory"
        case nodeMismatch = "node_mismatch"
        case unsupportedFormat = "unsupported_format"
        case missingFiles = "missing_files"
        case corruption = "corruption"
        case permissionDenied = "permission_denied"
        case noSpace = "no_space"
        case ioError = "io_error"
    }

    public var code: Code
    public var message: String
    /// The file at fault, when there is one.
    public var path: String?
    /// The byte offset of a corrupt record or header.
    public var offset: Int?

    public init(_ code: Code, _ message: String, path: String? = nil, offset: Int? = nil) {
        self.code = code
        self.message = message
        self.path = path
        self.offset = offset
    }

    init(_ io: StorageIOError) {
        let code: Code
        switch io.kind {
        case .noSpace: code = .noSpace
        case .permissionDenied: code = .permissionDenied
        case .notFound: code = .missingFiles
        case .noDescriptors, .other: code = .ioError
        }
        self.init(code, io.description, path: io.path)
    }

    static func corruption(path: String, offset: Int, _ detail: String) -> StorageOpenError {
        StorageOpenError(
            .corruption,
            "checksum mismatch in \(path) at offset \(offset): \(detail); refusing to start. To recover: stop the "
                + "node, move its data directory aside (keep it for analysis), start the node with an empty data "
                + "directory and let it catch up from the leader by snapshot (see docs/storage.md)",
            path: path, offset: offset)
    }

    public var description: String { message }
}
