@preconcurrency import CNcurses
import DashboardCore
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The last terminating signal received (0 for none). Set by the handler, read by the curses loop, which then
/// restores the terminal itself: nothing but this store happens in signal context.
private let pendingSignal = Atomic<Int32>(0)

/// The curses layer: the only code that calls ncurses, all of it on the thread that calls `run()`.
///
/// It draws the latest model the poller published and never waits for a poll. A frame is `erase()`, the lines of
/// `FrameRenderer`, `refresh()`: curses sends only the cells that changed, so ticks and resizes do not flicker.
final class CursesUI {
    private let poller: any DashboardSource
    private let frameLimit: Int?
    private let color: Bool
    private let readOnly: Bool
    private var unicode = true
    private var colorsOn = false

    private var sort = SortKey.id
    private var spark = SparkSource.ops
    private var showEvents = true
    private var showHelp = false
    private var paused: DashboardModel?
    private var view = DashboardView.table
    /// No row is selected until a key or a click selects one (the table then looks as it always did).
    private var selectedRow: Int?
    private var eventsScroll = 0
    /// An action waiting for `y`.
    private var confirming: ActionPlan?
    /// A refusal or notice shown until the next key.
    private var notice: String?

    /// Interval steps for `+` and `-`, in milliseconds.
    static let steps: [UInt64] = [100, 200, 250, 500, 1000, 2000, 5000, 10_000]

    init(poller: any DashboardSource, frameLimit: Int?, color: Bool, readOnly: Bool = false) {
        self.poller = poller
        self.frameLimit = frameLimit
        self.color = color
        self.readOnly = readOnly
    }

    /// Runs until `q`, a terminating signal or the frame limit; returns the exit code (128 + signal, or 0).
    func run() -> Int32 {
        setlocale(LC_ALL, "")
        unicode = dtop_locale_is_utf8() != 0
        // A parent may hand down a mask blocking these (Dispatch worker threads block them): unblock, or neither
        // the signals nor window resizes (SIGWINCH) would ever reach dtop.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGWINCH] { sigaddset(&unblock, signal) }
        _ = pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGQUIT] {
            // Installed before initscr, so ncurses keeps these and the loop below restores the terminal.
            _ = Glibc.signal(signal) { received in pendingSignal.store(received, ordering: .relaxed) }
        }
        _ = initscr()
        defer { endwin() }
        cbreak()
        noecho()
        keypad(dtop_stdscr(), true)
        // Esc alone must not wait a second for an escape sequence.
        set_escdelay(25)
        dtop_enable_mouse()
        _ = curs_set(0)
        // getch waits at most this long: the loop notices new rounds, keys and signals within 50 ms.
        timeout(50)
        setUpColors()
        poller.start()
        defer { poller.stop() }

        var drawnVersion = -1
        var lastDraw = ContinuousClock.now - .seconds(1)
        var framesDrawn = 0
        while true {
            let signal = pendingSignal.load(ordering: .relaxed)
            if signal != 0 { return 128 + signal }
            let key = getch()
            var dirty = false
            if key != dtop_err() {
                if handle(key) == .quit { return 0 }
                dirty = true
            }
            let (live, version) = poller.latest
            let model = paused ?? live
            let newRound = paused == nil && version != drawnVersion && version > 0
            if dirty || newRound || ContinuousClock.now - lastDraw >= .milliseconds(250) {
                draw(model)
                lastDraw = ContinuousClock.now
                if newRound {
                    drawnVersion = version
                    framesDrawn += 1
                    if let frameLimit, framesDrawn >= frameLimit { return 0 }
                }
            }
        }
    }

    private enum KeyResult { case quit, handled }

    private func handle(_ key: Int32) -> KeyResult {
        if key == dtop_key_resize() { return .handled }
        let model = paused ?? poller.latest.model
        let rowCount = model.rows(nowMs: 0, order: sort).count
        notice = nil
        if let plan = confirming {
            confirming = nil
            if key == Int32(UInt8(ascii: "y")) || key == Int32(UInt8(ascii: "Y")) { perform(plan) }
            return .handled
        }
        switch key {
        case dtop_key_up():
            selectedRow = max(0, (selectedRow ?? 1) - 1)
            return .handled
        case dtop_key_down():
            selectedRow = min(max(rowCount - 1, 0), selectedRow.map { $0 + 1 } ?? 0)
            return .handled
        case dtop_key_ppage():
            eventsScroll = max(0, eventsScroll - 5)
            return .handled
        case dtop_key_npage():
            eventsScroll += 5
            return .handled
        case dtop_key_enter(), 10, 13:
            openDetail(model)
            return .handled
        case 27:
            view = .table
            showHelp = false
            eventsScroll = 0
            return .handled
        case dtop_key_mouse():
            mouse(model)
            return .handled
        default:
            break
        }
        guard let scalar = UnicodeScalar(UInt32(max(key, 0))) else { return .handled }
        let character = Character(scalar)
        if poller.replayStatus != nil, poller.replayKey(character) { return .handled }
        switch character {
        case "q", "Q":
            return .quit
        case "j":
            selectedRow = min(max(rowCount - 1, 0), selectedRow.map { $0 + 1 } ?? 0)
        case "k":
            selectedRow = max(0, (selectedRow ?? 1) - 1)
        case "g":
            view = view == .grid ? .table : .grid
        case "T":
            view = view == .timeline ? .table : .timeline
        case "t":
            plan(.transfer, model)
        case "P":
            plan(.promote, model)
        case "r":
            plan(.remove, model)
        case "p", " ":
            paused = paused == nil ? poller.latest.model : nil
        case "+", "=":
            let current = poller.interval
            poller.interval = Self.steps.first { $0 > current } ?? Self.steps.last!
        case "-", "_":
            let current = poller.interval
            poller.interval = Self.steps.last { $0 < current } ?? Self.steps.first!
        case "s", "S":
            sort = sort.next
        case "l", "L":
            spark = spark.next
        case "e", "E":
            showEvents.toggle()
        case "?", "h", "H":
            showHelp.toggle()
        default:
            break
        }
        return .handled
    }

    /// The node of the selected row, if it has an id.
    private func selectedNode(_ model: DashboardModel) -> UInt64? {
        let rows = model.rows(nowMs: 0, order: sort)
        guard let selectedRow, rows.indices.contains(selectedRow) else { return nil }
        return rows[selectedRow].nodeID
    }

    private func openDetail(_ model: DashboardModel) {
        if selectedRow == nil { selectedRow = 0 }
        guard view == .table, let id = selectedNode(model) else { return }
        view = .detail(id)
        eventsScroll = 0
    }

    /// A click selects the row under it (a second click on the selected row opens it); the wheel scrolls the events.
    private func mouse(_ model: DashboardModel) {
        var y: Int32 = 0
        var x: Int32 = 0
        switch dtop_mouse_event(&y, &x) {
        case 1:
            guard view == .table else { return }
            let first = FrameRenderer.firstRowLine(model)
            let row = Int(y) - first
            let count = model.rows(nowMs: 0, order: sort).count
            guard row >= 0, row < count else { return }
            if row == selectedRow { openDetail(model) } else { selectedRow = row }
        case 4:
            eventsScroll = max(0, eventsScroll - 3)
        case 5:
            eventsScroll += 3
        default:
            break
        }
    }

    /// `t`, `P`, `r`: the what-if, then a confirmation (or the refusal).
    private func plan(_ action: ConsoleAction, _ model: DashboardModel) {
        if readOnly || poller.replayStatus != nil {
            notice = poller.replayStatus != nil
                ? "a replay cannot act on the cluster" : "read-only: actions are disabled (--read-only)"
            return
        }
        guard let node = selectedNode(model) else {
            notice = "select a node first (Up/Down or a click)"
            return
        }
        let plan = model.plan(action, node: node)
        if plan.allowed {
            confirming = plan
        } else {
            notice = plan.text
            poller.recordAction("refused: " + plan.text)
        }
    }

    /// Sends the confirmed action on a background thread; its result goes to the events pane.
    private func perform(_ plan: ActionPlan) {
        let source = poller
        source.recordAction("\(plan.action.rawValue) node \(plan.node): sent")
        let thread = Thread { source.recordAction(StatusFetcher.perform(plan)) }
        thread.name = "dtop-action"
        thread.start()
    }

    private var prompt: [StyledLine] {
        if let plan = confirming {
            return [
                StyledLine([Span("CONFIRM", .heading)]),
                StyledLine([Span("  " + plan.text, .warn)]),
                StyledLine([Span("  press y to do it, any other key to cancel", .title)]),
            ]
        }
        if let notice { return [StyledLine([Span("NOTICE", .heading)]), StyledLine([Span("  " + notice, .bad)])] }
        return []
    }

    private func draw(_ model: DashboardModel) {
        let height = Int(dtop_lines())
        let width = Int(dtop_cols())
        let rowCount = model.rows(nowMs: 0, order: sort).count
        selectedRow = selectedRow.map { min($0, max(rowCount - 1, 0)) }
        var options = FrameOptions(
            width: max(width - 1, 1), height: height, nowMs: poller.frameTimeMs ?? wallClockMs(),
            utcOffsetSeconds: TimeZone.current.secondsFromGMT(), intervalMs: poller.interval)
        options.sort = sort
        options.spark = spark
        options.showEvents = showEvents
        options.showHelp = showHelp
        options.paused = paused != nil
        options.unicode = unicode
        options.view = view
        options.selectedRow = rowCount > 0 ? selectedRow : nil
        options.eventsScroll = eventsScroll
        options.prompt = prompt
        options.readOnly = readOnly
        options.replay = poller.replayStatus
        erase()
        for (row, line) in FrameRenderer.render(model, options).enumerated() {
            var column = 0
            for span in line.spans where !span.text.isEmpty {
                let attributes = attributes(span.style)
                attrset(attributes)
                mvaddstr(Int32(row), Int32(column), span.text)
                column += span.text.count
            }
            attrset(dtop_a_normal())
        }
        refresh()
    }

    // MARK: Colours

    private enum Pair: Int16 {
        case good = 1, warn, bad, accent, alert
    }

    private func setUpColors() {
        guard color, has_colors() else { return }
        start_color()
        _ = use_default_colors()
        init_pair(Pair.good.rawValue, Int16(COLOR_GREEN), -1)
        init_pair(Pair.warn.rawValue, Int16(COLOR_YELLOW), -1)
        init_pair(Pair.bad.rawValue, Int16(COLOR_RED), -1)
        init_pair(Pair.accent.rawValue, Int16(COLOR_CYAN), -1)
        init_pair(Pair.alert.rawValue, Int16(COLOR_WHITE), Int16(COLOR_RED))
        colorsOn = true
    }

    private func pair(_ pair: Pair) -> Int32 { colorsOn ? dtop_color_pair(pair.rawValue) : 0 }

    /// Attributes first (they carry the meaning on a monochrome terminal), colour on top when allowed.
    private func attributes(_ style: TextStyle) -> Int32 {
        switch style {
        case .normal: return dtop_a_normal()
        case .title: return dtop_a_bold() | pair(.accent)
        case .heading: return dtop_a_reverse()
        case .good: return pair(.good)
        case .warn: return dtop_a_bold() | pair(.warn)
        case .bad: return dtop_a_bold() | pair(.bad)
        case .leader: return dtop_a_bold() | pair(.accent)
        case .dim: return dtop_a_dim()
        case .alert: return dtop_a_reverse() | dtop_a_bold() | pair(.alert)
        case .selected: return dtop_a_reverse()
        }
    }
}
