import ClusterAPI
import Foundation

/// One line of a flight recording (`dtop --record FILE`): a poll round (every endpoint's status or failure, and its
/// new events) or a console action, with the wall-clock time dtop applied it. Compact JSON, one object per line.
///
/// Replaying the lines in order through `DashboardModel.apply` rebuilds exactly the models dtop showed, so a replay
/// draws the same frames (at the recorded times).
public struct RecordedLine: Sendable, Hashable, Codable {
    public struct Result: Sendable, Hashable, Codable {
        public var endpoint: String
        public var status: NodeStatus?
        public var error: String?
        public var events: NodeEventsResponse?
    }

    /// The format of the file; a reader refuses a newer one.
    public static let currentVersion = 1

    public var version: Int
    public var atMs: UInt64
    /// A poll round; absent on an action line.
    public var results: [Result]?
    /// A console action's line for the events pane; absent on a round.
    public var action: String?

    enum CodingKeys: String, CodingKey {
        case version = "v"
        case atMs = "at_ms"
        case results, action
    }

    public init(round: [PollResult], atMs: UInt64) {
        version = Self.currentVersion
        self.atMs = atMs
        action = nil
        results = round.map { result in
            switch result.outcome {
            case .status(let status):
                return Result(endpoint: result.endpoint.description, status: status, error: nil, events: result.events)
            case .failure(let why):
                return Result(endpoint: result.endpoint.description, status: nil, error: why, events: result.events)
            }
        }
    }

    public init(action: String, atMs: UInt64) {
        version = Self.currentVersion
        self.atMs = atMs
        self.action = action
        results = nil
    }

    /// The round's poll results; `nil` for an action line or an endpoint that does not parse.
    public var pollResults: [PollResult]? {
        guard let results else { return nil }
        var out: [PollResult] = []
        for result in results {
            guard let endpoint = try? Endpoint.parseList(result.endpoint).first else { return nil }
            let outcome: PollOutcome = result.status.map { .status($0) } ?? .failure(result.error ?? "no answer")
            out.append(PollResult(endpoint: endpoint, outcome: outcome, events: result.events))
        }
        return out
    }

    /// Applies the line to `model`.
    public func apply(to model: inout DashboardModel) {
        if let action {
            model.recordAction(action, atMs: atMs)
        } else if let round = pollResults {
            model.apply(round, nowMs: atMs)
        }
    }

    /// One compact JSON line (no trailing newline).
    public func encodedLine() throws -> String {
        String(decoding: try WireJSON.encode(self), as: UTF8.self)
    }
}

/// Why a recording cannot be replayed.
public struct RecordingError: Error, CustomStringConvertible, Sendable {
    public var description: String
}

/// A loaded recording, and the model at any point of it (`dtop --replay`). Pure.
public struct Recording: Sendable {
    public var endpoints: [Endpoint]
    /// The poll interval of the recorded session (shown in the replay's header).
    public var intervalMs: UInt64 = 1000
    public var lines: [RecordedLine]

    /// Parses a recording: the first line names the endpoints (`{"v":1,"endpoints":[...]}`), the rest are
    /// `RecordedLine`s. Blank lines are skipped; a line that does not parse is an error naming it.
    public static func parse(_ text: String) throws -> Recording {
        var endpoints: [Endpoint]?
        var intervalMs: UInt64 = 1000
        var lines: [RecordedLine] = []
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty { continue }
            let data = Data(trimmed.utf8)
            if endpoints == nil {
                guard let header = try? WireJSON.decode(RecordingHeader.self, from: data) else {
                    throw RecordingError(description: "line \(number + 1): not a dtop recording header")
                }
                guard header.version <= RecordedLine.currentVersion else {
                    throw RecordingError(description: "recording format \(header.version) is newer than this dtop reads")
                }
                endpoints = try Endpoint.parseList(header.endpoints.joined(separator: ","))
                intervalMs = header.intervalMs
                continue
            }
            do {
                lines.append(try WireJSON.decode(RecordedLine.self, from: data))
            } catch {
                throw RecordingError(description: "line \(number + 1): \(error)")
            }
        }
        guard let endpoints else { throw RecordingError(description: "the recording is empty") }
        return Recording(endpoints: endpoints, intervalMs: intervalMs, lines: lines)
    }

    /// The model after the first `count` lines.
    public func model(after count: Int) -> DashboardModel {
        var model = DashboardModel(endpoints: endpoints)
        for line in lines.prefix(count) { line.apply(to: &model) }
        return model
    }

    /// How many lines are due at `atMs` (recorded time).
    public func linesDue(at atMs: UInt64) -> Int {
        lines.firstIndex { $0.atMs > atMs } ?? lines.count
    }

    public var startMs: UInt64 { lines.first?.atMs ?? 0 }
    public var endMs: UInt64 { lines.last?.atMs ?? 0 }
}

/// The first line of a recording.
public struct RecordingHeader: Sendable, Hashable, Codable {
    public var version: Int
    public var endpoints: [String]
    public var intervalMs: UInt64

    public init(endpoints: [Endpoint], intervalMs: UInt64) {
        version = RecordedLine.currentVersion
        self.endpoints = endpoints.map(\.description)
        self.intervalMs = intervalMs
    }

    enum CodingKeys: String, CodingKey {
        case version = "v"
        case endpoints
        case intervalMs = "interval_ms"
    }
}

/// Where a replay is: recorded time advancing at `speed` while playing, still while paused; seeking jumps.
/// Pure: the shell passes its own monotonic milliseconds.
public struct ReplayClock: Sendable, Hashable {
    public var speed: Double
    public private(set) var paused = false
    /// Recorded time at `anchorRealMs`.
    private var anchorRecordedMs: UInt64
    private var anchorRealMs: UInt64
    public let startMs: UInt64
    public let endMs: UInt64

    public init(startMs: UInt64, endMs: UInt64, speed: Double, realMs: UInt64) {
        self.startMs = startMs
        self.endMs = max(endMs, startMs)
        self.speed = speed
        anchorRecordedMs = startMs
        anchorRealMs = realMs
    }

    /// The recorded time to show at real time `realMs`, within the recording.
    public func recordedMs(realMs: UInt64) -> UInt64 {
        guard !paused else { return anchorRecordedMs }
        let elapsed = Double(realMs - min(anchorRealMs, realMs)) * speed
        return min(endMs, anchorRecordedMs + UInt64(max(elapsed, 0)))
    }

    public mutating func togglePause(realMs: UInt64) {
        anchorRecordedMs = recordedMs(realMs: realMs)
        anchorRealMs = realMs
        paused.toggle()
    }

    public mutating func setSpeed(_ speed: Double, realMs: UInt64) {
        anchorRecordedMs = recordedMs(realMs: realMs)
        anchorRealMs = realMs
        self.speed = min(max(speed, 0.125), 64)
    }

    /// Moves by `deltaMs` of recorded time (negative: back), within the recording.
    public mutating func seek(by deltaMs: Int64, realMs: UInt64) {
        let now = Int64(recordedMs(realMs: realMs))
        anchorRecordedMs = UInt64(min(max(now + deltaMs, Int64(startMs)), Int64(endMs)))
        anchorRealMs = realMs
    }
}
