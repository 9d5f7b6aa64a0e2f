import ClusterAPI

// MARK: - Styled text

/// What a piece of text means; the curses layer maps it to colour and attributes, plain text drops it.
/// Every style's meaning is also carried by a word or symbol, so monochrome and `NO_COLOR` lose nothing.
public enum TextStyle: Sendable, Hashable {
    case normal
    case title
    case heading
    case good
    case warn
    case bad
    case leader
    case dim
    case alert
    /// The selected row (reverse video; the `>` marker carries it without attributes).
    case selected
}

public struct Span: Sendable, Hashable {
    public var text: String
    public var style: TextStyle

    public init(_ text: String, _ style: TextStyle = .normal) {
        self.text = text
        self.style = style
    }
}

/// One screen line.
public struct StyledLine: Sendable, Hashable {
    public var spans: [Span]

    public init(_ spans: [Span] = []) { self.spans = spans }

    public var text: String { spans.map(\.text).joined() }

    /// The line cut to `width` characters.
    func clipped(to width: Int) -> StyledLine {
        var remaining = width
        var out: [Span] = []
        for span in spans where remaining > 0 {
            let count = span.text.count
            if count <= remaining {
                out.append(span)
                remaining -= count
            } else {
                out.append(Span(String(span.text.prefix(remaining)), span.style))
                remaining = 0
            }
        }
        return StyledLine(out)
    }
}

// MARK: - Options

/// Everything about a frame that is not the model.
public struct FrameOptions: Sendable {
    public var width: Int
    /// `nil` lays out every row and event (the `--once` text frame).
    public var height: Int?
    /// Wall-clock time of the frame, ms since the Unix epoch.
    public var nowMs: UInt64
    /// Local time zone offset, for the clock and event times.
    public var utcOffsetSeconds: Int
    public var intervalMs: UInt64
    public var sort: SortKey = .id
    public var spark: SparkSource = .ops
    public var showEvents = true
    public var showHelp = false
    /// The display is frozen by `p`; `nowMs` is the frame time, the model is the frozen one.
    public var paused = false
    /// Block characters for the sparkline; ASCII when the locale is not UTF-8.
    public var unicode = true
    /// Hides the key hints (the `--once` frame has no keys).
    public var interactive = true
    /// The screen shown.
    public var view: DashboardView = .table
    /// The selected row of the table (an index into the sorted rows), when the table has a selection.
    public var selectedRow: Int?
    /// Events pane lines scrolled past (0: the newest at the top).
    public var eventsScroll = 0
    /// A confirmation or notice shown in place of the events pane (actions).
    public var prompt: [StyledLine] = []
    /// Actions are disabled (`--read-only`).
    public var readOnly = false
    /// Replaying a recording: `replay 3/120 x2.0` in the status line.
    public var replay: String?

    public init(width: Int, height: Int?, nowMs: UInt64, utcOffsetSeconds: Int = 0, intervalMs: UInt64) {
        self.width = width
        self.height = height
        self.nowMs = nowMs
        self.utcOffsetSeconds = utcOffsetSeconds
        self.intervalMs = intervalMs
    }
}

// MARK: - Renderer

/// Lays out a frame: header, node table, events pane. Pure; the same lines are drawn by curses and printed by
/// `--once`.
public enum FrameRenderer {
    /// The data is stale when no round finished for this long.
    public static func staleAfterMs(intervalMs: UInt64) -> UInt64 { max(3 * intervalMs, intervalMs + 1500) }

    public static func render(_ model: DashboardModel, _ options: FrameOptions) -> [StyledLine] {
        let width = max(options.width, 20)
        var lines: [StyledLine] = []
        lines.append(header(model, options))
        lines.append(statusLine(model, options))
        lines += alarmLines(model)
        lines.append(StyledLine())
        switch options.view {
        case .table: break
        case .detail(let id): return fit(lines + detailLines(model, nodeID: id, options), options, width: width)
        case .grid: return fit(lines + gridLines(model, options), options, width: width)
        case .timeline: return fit(lines + timelineLines(model, options), options, width: width)
        }
        let columns = Column.fitting(width: width)
        lines.append(StyledLine([Span(Column.headings(columns), .heading)]))
        let rows = model.rows(nowMs: options.nowMs, order: options.sort)
        var rowLines = rows.enumerated().map { index, row in
            var line = rowLine(row, columns: columns, options: options)
            if index == options.selectedRow, let first = line.spans.first {
                line.spans[0] = Span(">" + first.text.dropFirst(), .selected)
            }
            return line
        }
        var tail: [StyledLine] = []
        if !options.prompt.isEmpty {
            tail = options.prompt
        } else if options.showHelp {
            tail = helpLines()
        } else if options.showEvents {
            let events = model.paneEvents
            let source = model.nodesReportEvents ? "from the nodes" : "inferred from polls"
            let scroll = min(options.eventsScroll, max(events.count - 1, 0))
            let scrolled = scroll > 0 ? ", scrolled \(scroll)" : ""
            tail.append(StyledLine([Span("EVENTS (newest first, \(source)\(scrolled))", .heading)]))
            if events.isEmpty { tail.append(StyledLine([Span("  none yet", .dim)])) }
            tail += events.dropFirst(scroll).map { paneLine($0, options) }
        }
        if let height = options.height {
            let available = max(height - lines.count, 0)
            if rowLines.count > available {
                let hidden = rowLines.count - max(available - 1, 0)
                rowLines = Array(rowLines.prefix(max(available - 1, 0)))
                rowLines.append(StyledLine([Span("... \(hidden) more rows (enlarge the window)", .dim)]))
            }
            let left = height - lines.count - rowLines.count - 1
            tail = left > 0 ? Array(tail.prefix(left)) : []
        }
        lines += rowLines
        if !tail.isEmpty {
            lines.append(StyledLine())
            lines += tail
        }
        if let height = options.height { lines = Array(lines.prefix(height)) }
        return lines.map { $0.clipped(to: width) }
    }

    /// The frame as plain text, one line per row, trailing spaces trimmed.
    public static func plainText(_ model: DashboardModel, _ options: FrameOptions) -> String {
        render(model, options).map { line in
            var text = line.text
            while text.last == " " { text.removeLast() }
            return text
        }.joined(separator: "\n") + "\n"
    }

    // MARK: Header

    static func header(_ model: DashboardModel, _ options: FrameOptions) -> StyledLine {
        let summary = model.summary
        var spans = [Span("dtop ", .title)]
        switch summary.health {
        case .healthy: spans.append(Span("[HEALTHY]", .good))
        case .degraded: spans.append(Span("[DEGRADED]", .warn))
        case .unavailable: spans.append(Span("[UNAVAILABLE]", .bad))
        }
        spans.append(Span("  leader "))
        spans.append(summary.leaderID.map { Span("\($0)", .leader) } ?? Span("none", .bad))
        spans.append(Span("  term \(summary.term.map { "\($0)" } ?? "-")"))
        let tolerates =
            summary.voters.isEmpty ? "" : summary.tolerates >= 0 ? ", tolerates \(summary.tolerates)" : ", NO QUORUM"
        spans.append(
            Span(
                "  voters \(summary.votersUp)/\(summary.voters.count) up\(tolerates)",
                summary.voters.isEmpty || summary.tolerates < 0 ? .bad : .normal))
        spans.append(Span("  learners \(summary.learners.count)"))
        switch summary.security {
        case "tls": spans.append(Span("  TLS", .good))
        case "insecure": spans.append(Span("  [INSECURE: plaintext, no auth]", .bad))
        default: break
        }
        spans.append(Span("  poll \(formatDuration(ms: options.intervalMs))"))
        spans.append(Span("  " + clock(options.nowMs, offset: options.utcOffsetSeconds)))
        return StyledLine(spans)
    }

    static func statusLine(_ model: DashboardModel, _ options: FrameOptions) -> StyledLine {
        var spans: [Span] = []
        if options.paused {
            let at = model.lastRoundMs.map { clock($0, offset: options.utcOffsetSeconds) } ?? "-"
            spans.append(Span("** PAUSED: display frozen at \(at), press p to resume **", .alert))
        } else if let last = model.lastRoundMs {
            let age = options.nowMs - min(last, options.nowMs)
            if age >= staleAfterMs(intervalMs: options.intervalMs) {
                spans.append(Span("** STALE: no poll has finished for \(formatDuration(ms: age)) **", .alert))
            }
        } else {
            spans.append(Span("** waiting for the first poll **", .alert))
        }
        if !spans.isEmpty { spans.append(Span("  ")) }
        var info = "sort \(options.sort.rawValue)  trend \(options.spark.rawValue)  rounds \(model.rounds)"
        if let replay = options.replay { info = "\(replay)  " + info }
        if options.interactive {
            info += options.view == .table
                ? "  keys: q quit  p pause  Enter detail  g grid  T timeline  \(options.readOnly ? "" : "t/P/r actions  ")? help"
                : "  view \(options.view.name)  keys: Esc back  q quit  ? help"
        }
        spans.append(Span(info, .dim))
        return StyledLine(spans)
    }

    // MARK: Table

    static func rowLine(_ row: NodeRow, columns: [Column], options: FrameOptions) -> StyledLine {
        let marker: String
        let style: TextStyle
        let role: String
        switch row.state {
        case .up:
            marker = row.isLeader ? "*" : row.role == .candidate ? "?" : " "
            style = row.isLeader ? .leader : .normal
            role = row.isLeader ? "LEADER" : Self.roleText(row)
        case .down:
            (marker, style, role) = ("x", .dim, "DOWN")
        case .pending:
            (marker, style, role) = (".", .dim, "polling")
        case .unpolled:
            (marker, style, role) = ("-", .dim, "no-metrics")
        }
        var spans: [Span] = []
        var first = true
        for column in columns {
            if !first { spans.append(Span(" ")) }
            first = false
            switch column {
            case .id:
                spans.append(Span(column.pad(marker + (row.nodeID.map { "\($0)" } ?? "?")), style))
            case .address:
                spans.append(Span(column.pad(row.address), style))
            case .role:
                spans.append(Span(column.pad(role), roleStyle(row)))
            default:
                if row.isUp {
                    spans.append(cell(column, row, options))
                } else {
                    // The rest of an unreachable row is its reason, dimmed, in place of stale numbers.
                    spans.append(Span(reason(row), .dim))
                    return StyledLine(spans)
                }
            }
        }
        return StyledLine(spans)
    }

    /// The role; a learner that is still behind with its catch-up percentage (`learner 87%`, floored, at most 99):
    /// plain `learner` once it holds the leader's whole log.
    static func roleText(_ row: NodeRow) -> String {
        guard let role = row.role else { return "-" }
        guard role == .learner, let view = row.replication, view.lagEntries > 0 else { return role.rawValue }
        return "learner \(min(99, Int(view.catchUpPercent.rounded(.down))))%"
    }

    private static func reason(_ row: NodeRow) -> String {
        let seen = row.lastSeenMsAgo.map { "last seen \(formatDuration(ms: $0)) ago" } ?? "never seen"
        switch row.state {
        case .down(let why):
            var text = "unreachable: \(why); \(seen)"
            if let status = row.status { text += " (term \(status.term), commit \(status.commitIndex))" }
            return text
        case .pending:
            return "first poll in flight"
        case .unpolled:
            var text = "metrics address unknown; leader's view:"
            if let view = row.replication {
                text += " match \(view.matchIndex), lag \(view.lagEntries), \(view.state.rawValue)"
            } else {
                text += " none"
            }
            return text
        case .up:
            return ""
        }
    }

    private static func roleStyle(_ row: NodeRow) -> TextStyle {
        switch row.state {
        case .up:
            if row.isLeader { return .leader }
            return row.role == .candidate ? .warn : .normal
        case .down: return .bad
        case .pending, .unpolled: return .dim
        }
    }

    private static func cell(_ column: Column, _ row: NodeRow, _ options: FrameOptions) -> Span {
        guard let status = row.status else { return Span(column.pad("-")) }
        switch column {
        case .term: return Span(column.pad("\(status.term)"))
        case .commit: return Span(column.pad("\(status.commitIndex)"))
        case .applied: return Span(column.pad("\(status.appliedIndex)"))
        case .lastLog: return Span(column.pad("\(status.lastLogIndex)"))
        case .lag:
            guard let view = row.replication else { return Span(column.pad(row.isLeader ? "0" : "-")) }
            let style: TextStyle = view.lagClass == .inSync ? .good : view.lagClass == .lagging ? .warn : .bad
            let mark = view.lagClass == .inSync ? "" : view.lagClass == .lagging ? "!" : "!!"
            return Span(column.pad("\(mark)\(view.lagEntries)"), style)
        case .lagMs:
            guard let view = row.replication else { return Span(column.pad(row.isLeader ? "0ms" : "-")) }
            return Span(column.pad(view.lagMs.map { formatDuration(ms: $0) } ?? "-"))
        case .lease:
            return Span(column.pad(row.isLeader ? formatDuration(ms: status.leaseRemainingMs) : "-"))
        case .seen:
            return Span(column.pad(row.lastSeenMsAgo.map { formatDuration(ms: $0) } ?? "-"))
        case .ops:
            return Span(column.pad(row.opsPerSecond.map(formatRate) ?? "-"))
        case .p99:
            return Span(column.pad(formatFixed1(status.stats.writeP99Ms) + "ms"))
        case .trend:
            let values = options.spark == .ops ? row.opsHistory : row.lagHistory
            return Span(sparkline(values, width: column.width, unicode: options.unicode), .good)
        case .id, .address, .role:
            return Span(column.pad(""))
        }
    }

    // MARK: Events and help

    static func eventLine(_ event: DashboardEvent, _ options: FrameOptions) -> StyledLine {
        paneLine(
            PaneEvent(
                atMs: event.atMs, source: "dtop", kind: event.kind.rawValue, message: event.message,
                style: DashboardModel.style(of: event.kind)), options)
    }

    static func paneLine(_ event: PaneEvent, _ options: FrameOptions) -> StyledLine {
        StyledLine([
            Span("  \(clock(event.atMs, offset: options.utcOffsetSeconds))  ", .dim),
            Span(event.source.padding(toLength: 5), .dim), Span(event.kind.padding(toLength: 19), event.style),
            Span(event.message),
        ])
    }

    static func helpLines() -> [StyledLine] {
        let keys = [
            ("q", "quit (also Ctrl-C); the terminal is restored"),
            ("p", "pause: freeze the display (polling goes on; events are kept)"),
            ("+ / -", "poll interval up / down (100ms to 10s)"),
            ("s", "sort rows: id, role, lag"),
            ("l", "sparkline: ops/s or lag entries"),
            ("e", "show or hide the events pane (PgUp/PgDn or the mouse wheel scroll it)"),
            ("Up/Down", "select a row (or click it); Enter: the node's detail; Esc: back to the table"),
            ("g", "perspective grid: each node's term, leader and commit; disagreements marked"),
            ("T", "election timeline: who led which term, leaderless gaps"),
            ("t", "transfer leadership to the selected node (asks first; not with --read-only)"),
            ("P", "promote the selected learner (asks first)"),
            ("r", "remove the selected member (asks first; refused if the quorum would be lost)"),
            ("?", "this help (any key closes it)"),
        ]
        var lines = [StyledLine([Span("HELP", .heading)])]
        lines += keys.map { StyledLine([Span("  " + $0.0.padding(toLength: 8), .title), Span($0.1)]) }
        let marks = "  marks: * leader  ? candidate  x down  . polling  - no metrics; !/!! lagging/stalled"
        lines.append(StyledLine([Span(marks)]))
        return lines
    }

    // MARK: Formatting

    /// `HH:MM:SS` of `ms` since the epoch, shifted by `offset` seconds.
    public static func clock(_ ms: UInt64, offset: Int) -> String {
        let seconds = (Int(ms / 1000) + offset) % 86_400
        let day = seconds < 0 ? seconds + 86_400 : seconds
        return "\(pad2(UInt64(day / 3600))):\(pad2(UInt64(day % 3600 / 60))):\(pad2(UInt64(day % 60)))"
    }

    /// A sparkline of the last `width` values, scaled to their maximum; right-aligned.
    public static func sparkline(_ values: [Double], width: Int, unicode: Bool) -> String {
        let ramp: [Character] =
            unicode ? ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"] : ["_", ".", "-", "~", "=", "+", "*", "#"]
        let shown = values.suffix(width)
        let top = shown.max() ?? 0
        let marks = shown.map { value -> Character in
            guard top > 0, value > 0 else { return ramp[0] }
            let level = Int((value / top * Double(ramp.count - 1)).rounded())
            return ramp[min(max(level, 0), ramp.count - 1)]
        }
        return String(repeating: " ", count: width - marks.count) + String(marks)
    }
}

// MARK: - Columns

enum Column: CaseIterable {
    case id, address, role, term, commit, applied, lastLog, lag, lagMs, lease, seen, ops, p99, trend

    var width: Int {
        switch self {
        case .id: return 3
        case .address: return 15
        case .role: return 11
        case .term: return 5
        case .commit, .applied, .lastLog: return 8
        case .lag: return 6
        case .lagMs: return 7
        case .lease, .seen: return 6
        case .ops: return 7
        case .p99: return 7
        case .trend: return 9
        }
    }

    var title: String {
        switch self {
        case .id: return " ID"
        case .address: return "ADDRESS"
        case .role: return "ROLE"
        case .term: return "TERM"
        case .commit: return "COMMIT"
        case .applied: return "APPLIED"
        case .lastLog: return "LASTLOG"
        case .lag: return "LAG"
        case .lagMs: return "LAG_MS"
        case .lease: return "LEASE"
        case .seen: return "SEEN"
        case .ops: return "OPS/S"
        case .p99: return "P99"
        case .trend: return "TREND"
        }
    }

    var leftAligned: Bool { [.id, .address, .role, .trend].contains(self) }

    /// Lower goes first when the window is too narrow.
    var priority: Int {
        switch self {
        case .trend: return 0
        case .lease: return 1
        case .p99: return 2
        case .lastLog: return 3
        case .applied: return 4
        case .seen: return 5
        case .lagMs: return 6
        case .ops: return 7
        case .address: return 8
        default: return 100
        }
    }

    func pad(_ text: String) -> String {
        if text.count >= width { return String(text.prefix(width)) }
        let fill = String(repeating: " ", count: width - text.count)
        return leftAligned ? text + fill : fill + text
    }

    /// The columns that fit `width`, dropping the least important first.
    static func fitting(width: Int) -> [Column] {
        var columns = Column.allCases
        func total() -> Int { columns.map(\.width).reduce(0, +) + columns.count - 1 }
        while total() > width, let drop = columns.filter({ $0.priority < 100 }).min(by: { $0.priority < $1.priority }) {
            columns.removeAll { $0 == drop }
        }
        return columns
    }

    static func headings(_ columns: [Column]) -> String {
        columns.map { $0.pad($0.title) }.joined(separator: " ")
    }
}

// MARK: - Number formatting

/// One decimal, no Foundation: `12.3`.
func formatFixed1(_ value: Double) -> String {
    guard value.isFinite else { return "-" }
    let tenths = Int((value * 10).rounded())
    let sign = tenths < 0 ? "-" : ""
    return "\(sign)\(abs(tenths) / 10).\(abs(tenths) % 10)"
}

/// A rate for the OPS/S column: `0.0`, `12.5`, `1.2k`, `34k`.
func formatRate(_ value: Double) -> String {
    if value < 1000 { return formatFixed1(value) }
    if value < 10_000 { return formatFixed1(value / 1000) + "k" }
    return "\(Int((value / 1000).rounded()))k"
}

extension String {
    func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
