import ClusterAPI

/// The screens beside the table: a node's detail, the perspective grid, the election timeline; and the alarm banner.
extension FrameRenderer {
    /// Cuts `lines` to the window and the width.
    static func fit(_ lines: [StyledLine], _ options: FrameOptions, width: Int) -> [StyledLine] {
        var lines = lines
        if let height = options.height { lines = Array(lines.prefix(height)) }
        return lines.map { $0.clipped(to: width) }
    }

    /// One line per raised alarm, under the header.
    static func alarmLines(_ model: DashboardModel) -> [StyledLine] {
        model.tracks.compactMap { track -> StyledLine? in
            guard let id = track.nodeID, let alarms = track.status?.alarms, !alarms.isEmpty else { return nil }
            let text = alarms.map { "\($0.type) on node \(id): \($0.reason)" }.joined(separator: "; ")
            return StyledLine([Span("** ALARM \(text) **", .alert)])
        }
    }

    // MARK: Detail

    /// Enter on a row: what that node sees.
    static func detailLines(_ model: DashboardModel, nodeID: UInt64, _ options: FrameOptions) -> [StyledLine] {
        guard let track = model.tracks.first(where: { $0.nodeID == nodeID }) else {
            return [StyledLine([Span("node \(nodeID) is no longer in the table (Esc returns)", .bad)])]
        }
        var lines: [StyledLine] = []
        let reachable = track.reachable == true
        let seen = track.lastSeenMs.map { "last seen \(formatDuration(ms: options.nowMs - min($0, options.nowMs))) ago" }
        var title = "NODE \(nodeID)  \(track.status?.address ?? track.address ?? "?")"
        if !reachable { title += "  UNREACHABLE (\(track.error ?? "no answer"); \(seen ?? "never seen")): last report shown" }
        lines.append(StyledLine([Span(title, reachable ? .heading : .alert)]))
        guard let status = track.status else {
            lines.append(StyledLine([Span("  no status reported yet", .dim)]))
            return lines
        }
        let leader = status.leaderID.map { "node \($0)" } ?? "none"
        lines.append(
            StyledLine([
                Span("  role \(status.role.rawValue)  term \(status.term)  leader \(leader)  "),
                Span("commit \(status.commitIndex)  applied \(status.appliedIndex)  last log \(status.lastLogIndex)"),
            ]))
        lines.append(
            StyledLine([
                Span("  voters \(status.voters.map(String.init).joined(separator: ","))  learners "
                    + (status.learners.isEmpty ? "-" : status.learners.map(String.init).joined(separator: ","))
                    + "  up \(formatDuration(ms: status.uptimeMs))  lease \(formatDuration(ms: status.leaseRemainingMs))"
                    + "  write p99 \(formatFixed1(status.stats.writeP99Ms))ms")
            ]))
        if let storage = status.storage {
            lines.append(
                StyledLine([
                    Span(
                        "  WAL fsync p50 \(formatFixed1(storage.fsyncP50Ms))ms  p99 \(formatFixed1(storage.fsyncP99Ms))ms"
                            + " (\(storage.fsyncs) fsyncs)",
                        storage.fsyncP99Ms >= 100 ? .warn : .normal),
                    Span(
                        "  snapshot at \(storage.snapshotIndex) (\(formatBytes(storage.snapshotBytes)))"
                            + "  log from \(storage.firstLogIndex)"),
                ]))
            let share = storage.quotaBytes > 0 ? Double(storage.backendBytes) / Double(storage.quotaBytes) : 0
            var disk = "  disk: data dir \(formatBytes(storage.backendBytes)) of quota \(formatBytes(storage.quotaBytes))"
                + " (\(Int((share * 100).rounded()))%)"
            if let facts = status.node?.disk {
                disk += ", file system \(formatBytes(facts.freeBytes)) free of \(formatBytes(facts.totalBytes))"
            }
            lines.append(StyledLine([Span(disk, share >= 0.9 ? .bad : share >= 0.75 ? .warn : .normal)]))
        } else {
            lines.append(StyledLine([Span("  storage: not reported by this node (older version)", .dim)]))
        }
        if let security = status.security {
            var text = "  security: \(security.mode)\(security.clientAuth ? ", clients authenticated" : "")"
            if let expiry = security.certificateNotAfter { text += ", certificate expires \(expiry)" }
            lines.append(StyledLine([Span(text, security.mode == "insecure" ? .bad : .normal)]))
        }
        let alarms = status.alarms ?? []
        lines.append(
            alarms.isEmpty
                ? StyledLine([Span("  alarms: none", .good)])
                : StyledLine([Span("  alarms: " + alarms.map { "\($0.type) (\($0.reason))" }.joined(separator: "; "), .alert)]))
        lines.append(StyledLine())
        lines.append(StyledLine([Span("PEERS (this node's view)", .heading)]))
        if status.peers.isEmpty {
            let why = status.role == .leader ? "no other member" : "only the leader tracks its peers; the leader is \(leader)"
            lines.append(StyledLine([Span("  none: \(why)", .dim)]))
        } else {
            let header = ["ID", "ADDRESS", "STATE", "MATCH", "NEXT", "INFLIGHT", "LAG", "LAST_ACK"]
            let widths = [4, 21, 9, 9, 9, 8, 7, 9]
            func row(_ cells: [String]) -> String {
                zip(cells, widths).map { cell, width in
                    cell.count >= width ? String(cell.prefix(width)) : cell + String(repeating: " ", count: width - cell.count)
                }.joined(separator: " ")
            }
            lines.append(StyledLine([Span("  " + row(header), .dim)]))
            for peer in status.peers {
                let ack = peer.lastAckMsAgo.map { formatDuration(ms: $0) + " ago" } ?? "never"
                let lagClass = LagClass.classify(lagEntries: peer.lagEntries, lastAckMsAgo: peer.lastAckMsAgo)
                let cells = [
                    "\(peer.id)", peer.address, peer.state.rawValue, "\(peer.matchIndex)",
                    peer.nextIndex.map(String.init) ?? "-", peer.inflight.map(String.init) ?? "-", "\(peer.lagEntries)", ack,
                ]
                lines.append(
                    StyledLine([
                        Span("  " + row(cells), lagClass == .inSync ? .normal : lagClass == .lagging ? .warn : .bad)
                    ]))
            }
        }
        lines.append(StyledLine())
        let events = model.events(of: nodeID)
        lines.append(StyledLine([Span("EVENTS OF NODE \(nodeID) (its own clock, newest first)", .heading)]))
        if events.isEmpty {
            let why = model.nodesReportEvents ? "none yet" : "this node does not report events (no GET /events)"
            lines.append(StyledLine([Span("  \(why)", .dim)]))
        }
        for event in events.dropFirst(min(options.eventsScroll, max(events.count - 1, 0))) {
            lines.append(
                StyledLine([
                    Span("  \(clock(event.atMs, offset: options.utcOffsetSeconds))  term \(event.term)  ", .dim),
                    Span(event.kind.rawValue.padding(toLength: 19), DashboardModel.style(of: event.kind)),
                    Span(event.message),
                ]))
        }
        return lines
    }

    // MARK: Perspective grid

    static func gridLines(_ model: DashboardModel, _ options: FrameOptions) -> [StyledLine] {
        var lines = [
            StyledLine([
                Span(
                    "PERSPECTIVES: each node's belief (cluster: term \(model.term.map(String.init) ?? "-"), leader "
                        + "\(model.leaderID.map { "node \($0)" } ?? "none"))", .heading)
            ])
        ]
        lines.append(StyledLine([Span("  NODE  REACH  TERM   ROLE        LEADER  COMMIT     VERDICT", .dim)]))
        for view in model.perspectives(nowMs: options.nowMs) {
            let node = (view.nodeID.map { "n\($0)" } ?? "?").padding(toLength: 5)
            let reach = (view.reachable ? "up" : "DOWN").padding(toLength: 6)
            let term = (view.term.map(String.init) ?? "-").padding(toLength: 6)
            let role = (view.role?.rawValue ?? "-").padding(toLength: 11)
            let leader = (view.leaderID.map { "n\($0)" } ?? "none").padding(toLength: 7)
            let commit = (view.commitIndex.map(String.init) ?? "-").padding(toLength: 10)
            let verdict = view.agrees ? "agrees" : "DISAGREES: " + view.disagreements.joined(separator: "; ")
            lines.append(
                StyledLine([
                    Span("  \(node) \(reach) \(term) \(role) \(leader) \(commit) "),
                    Span(verdict, view.agrees ? .good : view.reachable ? .bad : .warn),
                ]))
        }
        return lines
    }

    // MARK: Election timeline

    static func timelineLines(_ model: DashboardModel, _ options: FrameOptions) -> [StyledLine] {
        var lines = [StyledLine([Span("ELECTION TIMELINE (from the nodes' own events; newest first)", .heading)])]
        let timeline = model.electionTimeline
        guard !timeline.isEmpty else {
            let why = model.nodesReportEvents ? "no election reported yet" : "the nodes do not report events"
            return lines + [StyledLine([Span("  \(why)", .dim)])]
        }
        lines.append(StyledLine([Span("  TERM   LEADER  FROM      UNTIL     HELD      VOTES  LEADERLESS BEFORE", .dim)]))
        for leadership in timeline.reversed() {
            let until = leadership.untilMs.map { clock($0, offset: options.utcOffsetSeconds) } ?? "now"
            let end = leadership.untilMs ?? options.nowMs
            let held = formatDuration(ms: end - min(leadership.fromMs, end))
            let votes = leadership.votes.map { "\($0.granted)/\($0.voters)" } ?? "-"
            let gap = leadership.gapBeforeMs.map { formatDuration(ms: $0) } ?? "-"
            lines.append(
                StyledLine([
                    Span(
                        "  \(String(leadership.term).padding(toLength: 6)) "
                            + "\("n\(leadership.leader)".padding(toLength: 7)) "
                            + "\(clock(leadership.fromMs, offset: options.utcOffsetSeconds))  \(until.padding(toLength: 8))  "
                            + "\(held.padding(toLength: 8))  \(votes.padding(toLength: 5))  ", .leader),
                    Span(gap, (leadership.gapBeforeMs ?? 0) >= 1000 ? .bad : .normal),
                ]))
        }
        lines.append(StyledLine())
        lines.append(strip(timeline, options))
        return lines
    }

    /// The last minutes as one strip: each column a slice of time, the leader's id where one led, `.` where none.
    static func strip(_ timeline: [Leadership], _ options: FrameOptions) -> StyledLine {
        let width = max(min(options.width - 12, 100), 10)
        let start = timeline.first?.fromMs ?? options.nowMs
        let span = max(options.nowMs - min(start, options.nowMs), 1)
        var cells = ""
        for column in 0..<width {
            let at = start + span * UInt64(column) / UInt64(width)
            let leading = timeline.last { $0.fromMs <= at && ($0.untilMs ?? .max) > at }
            cells += leading.map { String($0.leader % 10) } ?? "."
        }
        return StyledLine([Span("  leader |", .dim), Span(cells, .leader), Span("| now", .dim)])
    }

    static func formatBytes(_ bytes: UInt64) -> String {
        if bytes < 1024 { return "\(bytes) B" }
        if bytes < 1 << 20 { return formatFixed1(Double(bytes) / 1024) + " KiB" }
        if bytes < 1 << 30 { return formatFixed1(Double(bytes) / Double(1 << 20)) + " MiB" }
        return formatFixed1(Double(bytes) / Double(1 << 30)) + " GiB"
    }
}

extension FrameRenderer {
    /// The screen line of the table's first row (header, status, alarms, blank, headings before it): where a click
    /// on row `i` lands at `firstRowLine + i`.
    public static func firstRowLine(_ model: DashboardModel) -> Int { 4 + alarmLines(model).count }
}
