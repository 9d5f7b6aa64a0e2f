import DashboardCore
import Foundation

/// What the curses layer draws from: live polls (`Poller`) or a recording (`ReplayPlayer`).
protocol DashboardSource: AnyObject, Sendable {
    /// The model to draw and a number that changes whenever it does.
    var latest: (model: DashboardModel, version: Int) { get }
    var interval: UInt64 { get set }
    /// The frame's time: `nil` for the wall clock (live), the recorded time in a replay.
    var frameTimeMs: UInt64? { get }
    /// `replay 12/40 x1.0 playing` for the status line, in a replay.
    var replayStatus: String? { get }
    func start()
    func stop()
    /// An action's result line, into the events pane.
    func recordAction(_ message: String)
    /// A replay's own keys (space pause, +/- speed, arrows seek); `false` when not handled.
    func replayKey(_ key: Character) -> Bool
}

/// `dtop --replay FILE`: plays a recording at `speed`, with pause and seek; the model at each moment is the
/// recording's lines up to that recorded time applied in order (`Recording.model(after:)`), so frames are the ones
/// dtop drew when it recorded.
// @unchecked Sendable: the clock and the cached model are under `lock`.
final class ReplayPlayer: DashboardSource, @unchecked Sendable {
    private let lock = NSLock()
    private let recording: Recording
    private var clock: ReplayClock
    private var cached: (count: Int, model: DashboardModel)
    private let intervalMs: UInt64

    init(recording: Recording, speed: Double, intervalMs: UInt64) {
        self.recording = recording
        self.intervalMs = intervalMs
        clock = ReplayClock(
            startMs: recording.startMs, endMs: recording.endMs, speed: speed, realMs: Self.realMs())
        cached = (0, recording.model(after: 0))
    }

    static func realMs() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
    }

    var latest: (model: DashboardModel, version: Int) {
        lock.withLock {
            let due = recording.linesDue(at: clock.recordedMs(realMs: Self.realMs()))
            if due != cached.count {
                if due > cached.count {
                    var model = cached.model
                    for line in recording.lines[cached.count..<due] { line.apply(to: &model) }
                    cached = (due, model)
                } else {
                    cached = (due, recording.model(after: due))
                }
            }
            return (cached.model, cached.count)
        }
    }

    var interval: UInt64 {
        get { intervalMs }
        set {}
    }

    var frameTimeMs: UInt64? {
        lock.withLock { clock.recordedMs(realMs: Self.realMs()) }
    }

    var replayStatus: String? {
        lock.withLock {
            let due = recording.linesDue(at: clock.recordedMs(realMs: Self.realMs()))
            let speed = clock.speed >= 1 ? "x\(Int(clock.speed))" : "x1/\(Int((1 / clock.speed).rounded()))"
            return "REPLAY \(due)/\(recording.lines.count) \(speed) \(clock.paused ? "paused" : "playing")"
        }
    }

    func start() {}
    func stop() {}
    func recordAction(_ message: String) {}

    func replayKey(_ key: Character) -> Bool {
        let now = Self.realMs()
        return lock.withLock {
            switch key {
            case " ", "p": clock.togglePause(realMs: now)
            case "+", "=": clock.setSpeed(clock.speed * 2, realMs: now)
            case "-", "_": clock.setSpeed(clock.speed / 2, realMs: now)
            case "]": clock.seek(by: 10_000, realMs: now)
            case "[": clock.seek(by: -10_000, realMs: now)
            case "}": clock.seek(by: 60_000, realMs: now)
            case "{": clock.seek(by: -60_000, realMs: now)
            case "0": clock.seek(by: -Int64(clock.endMs - clock.startMs), realMs: now)
            default: return false
            }
            return true
        }
    }
}
