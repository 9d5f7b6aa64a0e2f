import Foundation

/// The node's log file (`<log_dir>/d.log`) and stderr mirror. Levels from `LOG_LEVEL` (default `warn`); role
/// changes are written at every level. Thread-safe; one `write(2)` per line.
// @unchecked Sendable: `write` holds `lock` around the one mutable thing, the file offset; the rest are `let`s.
public final class NodeLog: @unchecked Sendable {
    public enum Level: Int, Comparable, Sendable {
        case trace, debug, info, warn, error

        public init?(name: String) {
            switch name.lowercased() {
            case "trace": self = .trace
            case "debug": self = .debug
            case "info": self = .info
            case "warn", "warning": self = .warn
            case "error": self = .error
            default: return nil
            }
        }

        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
        var label: String { ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"][rawValue] }
    }

    public let level: Level
    private let fd: Int32
    private let lock = NSLock()
    private let mirrorToStderr: Bool

    /// Opens (creating directories) `<directory>/d.log` for appending. Lines are mirrored to stderr only when it is a
    /// terminal (a node run in the foreground): a node started in the background has its stderr in
    /// `logs/N/stdout.log`, and each line must be in one file only (`grep -r "Became leader" logs/` finds it once).
    public init(directory: String, level: Level, mirrorToStderr: Bool = isatty(2) != 0) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = (directory as NSString).appendingPathComponent("d.log")
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw NodeStartupError("cannot open log file \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = fd
        self.level = level
        self.mirrorToStderr = mirrorToStderr
    }

    deinit { close(fd) }

    public func trace(_ message: @autoclosure () -> String) { log(.trace, message()) }
    public func debug(_ message: @autoclosure () -> String) { log(.debug, message()) }
    public func info(_ message: @autoclosure () -> String) { log(.info, message()) }
    public func warn(_ message: @autoclosure () -> String) { log(.warn, message()) }
    public func error(_ message: @autoclosure () -> String) { log(.error, message()) }

    /// Role changes and other lines an operator always needs, whatever the level.
    public func always(_ message: String) { write(.info, message) }

    private func log(_ l: Level, _ message: @autoclosure () -> String) {
        guard l >= level else { return }
        write(l, message())
    }

    private func write(_ l: Level, _ message: String) {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var tm = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &tm)
        let stamp = String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
            tm.tm_min, tm.tm_sec, now.tv_nsec / 1_000_000)
        let line = "\(stamp) \(l.label) \(message)\n"
        lock.lock()
        defer { lock.unlock() }
        line.utf8CString.withUnsafeBufferPointer { buffer in
            _ = Glibc.write(fd, buffer.baseAddress, buffer.count - 1)
            if mirrorToStderr { _ = Glibc.write(2, buffer.baseAddress, buffer.count - 1) }
        }
    }
}

/// A start-up problem that stops the node with a clear message and a non-zero exit.
public struct NodeStartupError: Error, CustomStringConvertible, Sendable {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}
