import ClusterClient
import Foundation
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A tmux server of its own (`tmux -L <unique socket>`) running one command in a detached session, for driving
/// dtop as a user would: read the screen with `capture-pane`, type with `send-keys`, resize the window.
///
/// The pane stays after the command exits (`remain-on-exit`), so a test can read its exit status and the screen
/// it left behind. `kill()` ends the server; call it in every path (it is idempotent and `deinit` calls it too).
final class TmuxSession: @unchecked Sendable {
    let socket: String
    let session = "dtop"
    private let lock = NSLock()
    private var killed = false
    private static let counter = Counter()

    struct CommandFailed: Error, CustomStringConvertible {
        var arguments: [String]
        var status: Int32
        var output: String
        var description: String { "tmux \(arguments.joined(separator: " ")) exited \(status): \(output)" }
    }

    /// Starts `command` (run by the shell) in a `width` x `height` window.
    init(command: String, width: Int, height: Int) throws {
        socket = "dtop-test-\(getpid())-\(Self.counter.next())"
        try run([
            "-f", "/dev/null", "new-session", "-d", "-s", session, "-x", "\(width)", "-y", "\(height)", command,
            ";", "set-option", "-t", session, "remain-on-exit", "on",
        ])
    }

    deinit { kill() }

    /// Runs `tmux -L <socket> arguments...` and returns its output.
    ///
    /// The client is started with `posix_spawn` and reaped with `waitpid`. Its output goes to a temporary file, not
    /// a pipe: the server that `new-session` forks keeps the client's descriptors, so a pipe would never reach
    /// end-of-file. The signal mask is emptied, so the server and dtop start as a shell would start them (the test
    /// runner's threads block SIGTERM, SIGWINCH and others, and children inherit that).
    @discardableResult
    func run(_ arguments: [String]) throws -> String {
        let outputPath = NSTemporaryDirectory() + "\(socket)-\(UUID().uuidString).out"
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let status = try Self.spawnAndWait(["tmux", "-L", socket] + arguments, outputPath: outputPath)
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard status == 0 else { throw CommandFailed(arguments: arguments, status: status, output: text) }
        return text
    }

    private static func spawnAndWait(_ argv: [String], outputPath: String) throws -> Int32 {
        let environment = ProcessInfo.processInfo.environment.filter { $0.key != "TMUX" }
        do {
            let child = try ChildProcess.launch(
                argv[0], arguments: Array(argv.dropFirst()), environment: environment,
                stdout: .truncate(outputPath), newProcessGroup: false)
            return child.waitUntilExit().shellCode
        } catch {
            throw CommandFailed(arguments: argv, status: -1, output: error.description)
        }
    }

    /// The visible screen, one line per row, trailing blanks trimmed.
    /// With `history`, the lines scrolled off the top come first (a resize can push a line there).
    func capture(history: Bool = false) throws -> String {
        try run(["capture-pane", "-p", "-t", session] + (history ? ["-S", "-"] : []))
    }

    /// Polls the screen until `condition` holds; returns that screen. On timeout the error shows the last screen.
    @discardableResult
    func waitForScreen(
        _ what: String, timeout: Duration = .seconds(10), history: Bool = false,
        _ condition: @escaping (String) -> Bool
    ) async throws -> String {
        var last = ""
        do {
            return try await waitFor(what, timeout: timeout, interval: .milliseconds(50)) { () -> String? in
                last = try self.capture(history: history)
                return condition(last) ? last : nil
            }
        } catch {
            throw ScreenTimeout(what: what, underlying: error, screen: last)
        }
    }

    struct ScreenTimeout: Error, CustomStringConvertible {
        var what: String
        var underlying: any Error
        var screen: String
        var description: String { "\(underlying)\n--- last screen ---\n\(screen)\n---" }
    }

    func sendKeys(_ keys: String...) throws {
        try run(["send-keys", "-t", session] + keys)
    }

    func resize(width: Int, height: Int) throws {
        try run(["resize-window", "-t", session, "-x", "\(width)", "-y", "\(height)"])
    }

    /// The pane's process id (the shell running the command).
    func panePID() throws -> Int32? {
        let text = try run(["display-message", "-p", "-t", session, "#{pane_pid}"])
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Ends the tmux server (and whatever still runs in it).
    func kill() {
        let first = lock.withLock { () -> Bool in
            defer { killed = true }
            return !killed
        }
        if first { _ = try? run(["kill-server"]) }
    }

    /// Whether a `tmux` executable is on the PATH.
    static var available: Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/tmux")
        }
    }
}

/// Single-quotes `text` for `sh`.
func shellQuoted(_ text: String) -> String {
    "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// The screen's lines.
func screenLines(_ screen: String) -> [String] {
    screen.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
}
