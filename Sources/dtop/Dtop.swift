import ArgumentParser
import DashboardCore
import Foundation

/// `dtop`: the live dashboard of the cluster. See docs/dtop.md.
@main
struct Dtop: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dtop",
        abstract: "Live dashboard of a dengine cluster: leader, terms, indexes, replication lag, events.",
        discussion: """
            Polls GET /status on every metrics endpoint (and on members it discovers) in parallel.
            Keys: q quit, p pause, +/- interval, s sort, l sparkline source, e events pane, ? help; Up/Down or a \
            click selects a row, Enter opens its node's detail, Esc returns; g perspective grid, T election \
            timeline; t transfer leadership, P promote, r remove (each asks first; --read-only disables them).
            --record FILE appends every round and event (JSON lines); --replay FILE plays it back: space pause, \
            +/- speed, [ ] seek 10 s, { } seek 1 min, 0 restart.
            With --once, prints one frame without curses and exits: 0 healthy, 2 degraded, 4 unavailable.
            Usage errors exit 64. NO_COLOR disables colour (every colour also has a word or symbol).
            """
    )

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    @Option(
        name: .long,
        help: "Metrics endpoints, comma-separated host:port (env DTOP_ENDPOINTS; default the local cluster).")
    var endpoints: String?

    @Option(name: .long, help: "Poll interval, 100ms to 10s (e.g. 250ms, 1s, 2.5s; a bare number is seconds).")
    var interval: String = "1s"

    @Flag(name: .long, help: "Print one frame without curses and exit (for scripts).")
    var once = false

    @Option(name: .shortAndLong, help: "Output of --once: text or json.")
    var output: OutputFormat = .text

    @Option(name: .customShort("n"), help: "Exit after N frames.")
    var frames: Int?

    @Option(help: "Config dir: its nodes' metrics addresses, and its TLS settings when it is secure (config/secure).")
    var configDir: String?

    @Option(help: "Secure cluster: the CA certificate (env DCTL_CACERT).")
    var cacert: String?

    @Option(help: "Client certificate (env DCTL_CERT; default client.admin.crt beside a secure config's CA).")
    var cert: String?

    @Option(help: "Client certificate's key (env DCTL_KEY).")
    var key: String?

    @Option(help: "Bearer token (env DCTL_TOKEN).")
    var token: String?

    @Flag(name: .long, help: "Disable the actions (t transfer, P promote, r remove).")
    var readOnly = false

    @Option(name: .long, help: "Append every polled status and event to FILE (compact JSON lines).")
    var record: String?

    @Option(name: .long, help: "Play back a recording made with --record instead of polling.")
    var replay: String?

    @Option(name: .long, help: "Replay speed (e.g. 0.5, 1, 4).")
    var speed: Double = 1

    @Flag(name: .long, help: "With --replay: print every frame of the recording as text and exit.")
    var framesText = false

    static let defaultEndpoints = "127.0.0.1:8081,127.0.0.1:8082,127.0.0.1:8083"
    static let intervalRange: ClosedRange<UInt64> = 100...10_000

    func validate() throws {
        _ = try parsedEndpoints()
        _ = try parsedInterval()
        if let frames, frames < 1 { throw ValidationError("-n must be at least 1") }
        if output == .json && !once { throw ValidationError("-o json needs --once") }
        if record != nil && replay != nil { throw ValidationError("--record and --replay exclude each other") }
        if framesText && replay == nil { throw ValidationError("--frames-text needs --replay") }
        if !(speed > 0 && speed <= 64) { throw ValidationError("--speed must be above 0 and at most 64") }
    }

    func parsedEndpoints() throws -> [Endpoint] {
        let text = endpoints ?? ProcessInfo.processInfo.environment["DTOP_ENDPOINTS"] ?? Self.defaultEndpoints
        do {
            let list = try Endpoint.parseList(text)
            guard !list.isEmpty else { throw ValidationError("--endpoints is empty") }
            return list
        } catch let error as EndpointListError {
            throw ValidationError(error.description)
        }
    }

    func parsedInterval() throws -> UInt64 {
        guard let ms = Self.parseDuration(interval) else {
            throw ValidationError("invalid --interval '\(interval)' (e.g. 250ms, 1s)")
        }
        guard Self.intervalRange.contains(ms) else {
            throw ValidationError("--interval must be between 100ms and 10s, not \(interval)")
        }
        return ms
    }

    /// `250ms`, `1s`, `1.5s`, `2` (seconds) to milliseconds.
    static func parseDuration(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        let (number, scale): (Substring, Double)
        if trimmed.hasSuffix("ms") {
            (number, scale) = (trimmed.dropLast(2), 1)
        } else if trimmed.hasSuffix("s") {
            (number, scale) = (trimmed.dropLast(1), 1000)
        } else {
            (number, scale) = (Substring(trimmed), 1000)
        }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        return UInt64((value * scale).rounded())
    }

    func run() throws {
        let configured: [String]
        do {
            configured = try SecureFetch.configure(configDir: configDir, cacert: cacert, cert: cert, key: key, token: token)
        } catch {
            FileHandle.standardError.write(Data("dtop: TLS settings: \(error)\n".utf8))
            throw ExitCode(64)
        }
        var endpoints = try parsedEndpoints()
        // Without --endpoints or DTOP_ENDPOINTS, a config dir names the nodes.
        if !configured.isEmpty, self.endpoints == nil, ProcessInfo.processInfo.environment["DTOP_ENDPOINTS"] == nil {
            endpoints = try Endpoint.parseList(configured.joined(separator: ","))
        }
        let intervalMs = try parsedInterval()
        if let replay {
            let recording: Recording
            do {
                recording = try Recording.parse(try String(contentsOfFile: replay, encoding: .utf8))
            } catch {
                FileHandle.standardError.write(Data("dtop: cannot replay \(replay): \(error)\n".utf8))
                throw ExitCode(66)
            }
            if framesText || once {
                print(Self.replayFrames(recording, intervalMs: recording.intervalMs, lastOnly: once), terminator: "")
                return
            }
            try runCurses(ReplayPlayer(recording: recording, speed: speed, intervalMs: recording.intervalMs))
            return
        }
        var recorder: FileHandle?
        if let record {
            if !FileManager.default.fileExists(atPath: record) {
                FileManager.default.createFile(atPath: record, contents: nil)
            }
            guard let handle = FileHandle(forWritingAtPath: record) else {
                FileHandle.standardError.write(Data("dtop: cannot write the recording \(record)\n".utf8))
                throw ExitCode(73)
            }
            handle.seekToEndOfFile()
            recorder = handle
        }
        let poller = Poller(endpoints: endpoints, intervalMs: intervalMs, clock: wallClockMs, recorder: recorder)
        if once {
            throw ExitCode(runOnce(poller, intervalMs: intervalMs))
        }
        try runCurses(poller)
    }

    /// Every frame of a recording as plain text, each at its recorded time (UTC), with a separator line; or the last.
    static func replayFrames(_ recording: Recording, intervalMs: UInt64, lastOnly: Bool) -> String {
        var model = DashboardModel(endpoints: recording.endpoints)
        var out = ""
        for (index, line) in recording.lines.enumerated() {
            line.apply(to: &model)
            if lastOnly && index < recording.lines.count - 1 { continue }
            var options = FrameOptions(
                width: 120, height: nil, nowMs: line.atMs, utcOffsetSeconds: 0, intervalMs: intervalMs)
            options.interactive = false
            options.unicode = false
            out += "=== frame \(index + 1)/\(recording.lines.count) at \(FrameRenderer.clock(line.atMs, offset: 0)) UTC ===\n"
            out += FrameRenderer.plainText(model, options)
        }
        return out
    }

    private func runCurses(_ source: any DashboardSource) throws {
        guard isatty(STDOUT_FILENO) == 1, isatty(STDIN_FILENO) == 1 else {
            FileHandle.standardError.write(Data("dtop: not a terminal; use --once [-o json] for scripts\n".utf8))
            throw ExitCode(64)
        }
        let ui = CursesUI(poller: source, frameLimit: frames, color: Self.colorAllowed, readOnly: readOnly)
        let code = ui.run()
        if code > 128 {
            // The terminal is restored; now die of the signal, as the parent (a shell, tmux) expects.
            signal(code - 128, SIG_DFL)
            raise(code - 128)
        }
        if code != 0 { throw ExitCode(code) }
    }

    static var colorAllowed: Bool {
        let value = ProcessInfo.processInfo.environment["NO_COLOR"] ?? ""
        return value.isEmpty
    }

    private func runOnce(_ poller: Poller, intervalMs: UInt64) -> Int32 {
        poller.pollOnce()
        // Members discovered in the first round are polled too, so the one frame shows them.
        if poller.latest.model.pollTargets.count > (try? parsedEndpoints().count) ?? 0 { poller.pollOnce() }
        let model = poller.latest.model
        let now = wallClockMs()
        switch output {
        case .json:
            do {
                print(try JSONFrame(model, nowMs: now).encoded())
            } catch {
                FileHandle.standardError.write(Data("dtop: cannot encode the frame: \(error)\n".utf8))
                return 1
            }
        case .text:
            var options = FrameOptions(
                width: Self.terminalWidth(), height: nil, nowMs: now,
                utcOffsetSeconds: TimeZone.current.secondsFromGMT(), intervalMs: intervalMs)
            options.interactive = false
            options.unicode = false
            print(FrameRenderer.plainText(model, options), terminator: "")
        }
        switch model.summary.health {
        case .healthy: return 0
        case .degraded: return 2
        case .unavailable: return 4
        }
    }

    /// The width of the terminal on stdout, else `COLUMNS`, else 120.
    static func terminalWidth() -> Int {
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        if let columns = ProcessInfo.processInfo.environment["COLUMNS"].flatMap({ Int($0) }), columns > 0 {
            return columns
        }
        return 120
    }
}

/// Milliseconds since the Unix epoch.
@Sendable func wallClockMs() -> UInt64 {
    UInt64(max(Date().timeIntervalSince1970, 0) * 1000)
}
