import ClusterAPI

// MARK: - Views

/// The screens dtop moves between (k9s-style): the node table, one node's detail, the perspective grid, the
/// election timeline.
public enum DashboardView: Sendable, Hashable {
    case table
    /// One node's own view: its peers' progress, storage, alarms, recent events (Enter on a row; Esc returns).
    case detail(UInt64)
    /// Each node's belief: term, leader it follows, commit; disagreements highlighted (`g`).
    case grid
    /// Who led which term, and the leaderless gaps between, from the nodes' own events (`T`).
    case timeline

    public var name: String {
        switch self {
        case .table: return "table"
        case .detail(let id): return "node \(id)"
        case .grid: return "perspectives"
        case .timeline: return "timeline"
        }
    }
}

// MARK: - Events pane

/// One line of the events pane: a node's own event, the console's action, or what dtop inferred from polls.
public struct PaneEvent: Sendable, Hashable {
    public var atMs: UInt64
    /// `n1` (the node said so), `dtop` (inferred from polls), `you` (an action from this console).
    public var source: String
    public var kind: String
    public var message: String
    public var style: TextStyle
}

extension DashboardModel {
    /// The events pane, newest first: the nodes' own events when they report them (plus dtop's node down/up and lag
    /// changes, which a node cannot report about itself), else everything dtop inferred from its polls.
    public var paneEvents: [PaneEvent] {
        var out: [PaneEvent] = []
        let inferredKinds: Set<DashboardEvent.Kind> =
            nodesReportEvents ? [.nodeDown, .nodeUp, .lagChange] : Set(events.map(\.kind))
        for event in events where inferredKinds.contains(event.kind) {
            out.append(
                PaneEvent(
                    atMs: event.atMs, source: "dtop", kind: event.kind.rawValue, message: event.message,
                    style: Self.style(of: event.kind)))
        }
        for event in nodeEvents {
            out.append(
                PaneEvent(
                    atMs: event.atMs, source: event.kind == .action ? "you" : "n\(event.nodeID)",
                    kind: event.kind.rawValue, message: event.message, style: Self.style(of: event.kind)))
        }
        return out.sorted { $0.atMs > $1.atMs }
    }

    static func style(of kind: DashboardEvent.Kind) -> TextStyle {
        switch kind {
        case .election, .leaderChange, .learnerPromoted, .memberAdded: return .leader
        case .nodeDown, .leaderLost, .memberRemoved: return .bad
        case .nodeUp: return .good
        case .lagChange: return .warn
        }
    }

    static func style(of kind: NodeEventKind) -> TextStyle {
        switch kind {
        case .electionWon, .leaderChanged, .membershipChanged: return .leader
        case .electionLost, .peerLost, .alarmRaised, .slowFsync: return .bad
        case .peerFound, .alarmCleared, .started: return .good
        case .electionStarted, .snapshotSent, .snapshotReceived, .snapshotInstalled: return .warn
        case .action: return .title
        default: return .normal
        }
    }

    /// The node's own events, newest first.
    public func events(of nodeID: UInt64) -> [NodeEvent] {
        nodeEvents.filter { $0.nodeID == nodeID }.reversed()
    }
}

// MARK: - Perspective grid

/// One node's belief, and how it differs from the cluster's (the leader of the highest term dtop sees).
public struct Perspective: Sendable, Hashable {
    public var nodeID: UInt64?
    public var address: String
    /// Answered in the last round; otherwise the belief is the last one it reported.
    public var reachable: Bool
    public var term: UInt64?
    public var role: NodeRole?
    public var leaderID: UInt64?
    public var commitIndex: UInt64?
    public var lastSeenMsAgo: UInt64?
    /// Why this node's view differs from the cluster's; empty when it agrees.
    public var disagreements: [String]
    public var agrees: Bool { disagreements.isEmpty }
}

extension DashboardModel {
    /// Entries of commit index behind the leader's beyond which a node's commit counts as a disagreement.
    public static let commitDisagreementEntries: UInt64 = 1000

    /// Each node's belief at `nowMs`, in node order. A node that does not answer keeps its last reported belief, which
    /// is checked like the others (a stopped leader still "thinks it leads" at its old term).
    public func perspectives(nowMs: UInt64) -> [Perspective] {
        let leaderStatus = leaderID.flatMap { id in
            tracks.first { $0.nodeID == id && $0.reachable == true }?.status
        }
        return tracks.sorted { ($0.nodeID ?? .max) < ($1.nodeID ?? .max) }.map { track in
            let status = track.status
            var why: [String] = []
            let reachable = track.reachable == true
            if let status {
                if !reachable { why.append("down (last belief)") }
                if let term, status.term < term { why.append("stuck at term \(status.term) (cluster at \(term))") }
                if status.role == .leader && status.nodeID != leaderID {
                    why.append("thinks it leads term \(status.term)")
                } else if let leaderID, status.leaderID != leaderID, status.role != .removed {
                    why.append(status.leaderID.map { "follows node \($0), not node \(leaderID)" } ?? "knows no leader")
                }
                if let leaderStatus, leaderStatus.commitIndex > status.commitIndex + Self.commitDisagreementEntries {
                    why.append("commit \(leaderStatus.commitIndex - status.commitIndex) behind the leader's")
                }
                // An unreachable node whose last belief matches the cluster's still cannot be trusted to agree now.
                if !reachable && why.count == 1 { why = ["down (its last belief agreed)"] }
            } else if track.reachable == false {
                why.append("unreachable; never answered")
            }
            return Perspective(
                nodeID: track.nodeID, address: status?.address ?? track.address ?? track.endpoint.map { "\($0)" } ?? "?",
                reachable: reachable, term: status?.term, role: status?.role, leaderID: status?.leaderID,
                commitIndex: status?.commitIndex, lastSeenMsAgo: track.lastSeenMs.map { nowMs - min($0, nowMs) },
                disagreements: why)
        }
    }
}

// MARK: - Election timeline

/// One term's leadership as the nodes reported it.
public struct Leadership: Sendable, Hashable {
    public var term: UInt64
    public var leader: UInt64
    /// When the leader said it won (its own clock).
    public var fromMs: UInt64
    /// When it stopped leading: its own step-down, else the next leadership's start; `nil` while it leads.
    public var untilMs: UInt64?
    /// The leaderless time before this leadership: from the first node that reported knowing no leader (after the
    /// previous leadership began) to this win. `nil` when no node reported it (the first term seen, a transfer).
    public var gapBeforeMs: UInt64?
    /// The votes it won with, when known.
    public var votes: VoteCount?
}

extension DashboardModel {
    /// Leaderships from the nodes' `election_won`, `role_changed` and `leader_changed` events, oldest first.
    public var electionTimeline: [Leadership] {
        Self.electionTimeline(nodeEvents)
    }

    public static func electionTimeline(_ events: [NodeEvent]) -> [Leadership] {
        let ordered = events.sorted(by: NodeEvent.timelineOrder)
        var wins: [NodeEvent] = []
        for event in ordered where event.kind == .electionWon && !wins.contains(where: { $0.term == event.term }) {
            wins.append(event)
        }
        var out: [Leadership] = []
        for (i, win) in wins.enumerated() {
            let next = i + 1 < wins.count ? wins[i + 1] : nil
            let stepDown = ordered.first { event in
                event.nodeID == win.nodeID && event.kind == .roleChanged && event.role != "leader"
                    && event.atMs >= win.atMs && (next.map { event.atMs <= $0.atMs } ?? true)
            }
            var leadership = Leadership(
                term: win.term, leader: win.nodeID, fromMs: win.atMs, untilMs: stepDown?.atMs ?? next?.atMs,
                gapBeforeMs: nil, votes: win.votes)
            if let previous = out.last {
                let lost = ordered.first { event in
                    event.kind == .leaderChanged && event.peer == nil && event.atMs >= previous.fromMs
                        && event.atMs <= win.atMs
                }
                let start = [lost?.atMs, previous.untilMs].compactMap { $0 }.min()
                leadership.gapBeforeMs = start.map { win.atMs - min($0, win.atMs) }
            }
            out.append(leadership)
        }
        return out
    }
}

// MARK: - Actions with a what-if

/// What the console can do to the cluster from the table.
public enum ConsoleAction: String, Sendable, Hashable, CaseIterable {
    case transfer, promote, remove

    /// The client API route (`POST`, body `{"node_id":N}`).
    public var path: String {
        switch self {
        case .transfer: return "/transfer-leader"
        case .promote: return "/promote"
        case .remove: return "/remove"
        }
    }
}

/// An action checked against the cluster as dtop sees it: allowed (with the question to confirm, stating the quorum
/// afterwards) or refused (with the reason the cluster would give).
public struct ActionPlan: Sendable, Hashable {
    public var action: ConsoleAction
    public var node: UInt64
    /// `nil` when allowed.
    public var refusal: String?
    /// The confirmation question, or the refusal.
    public var text: String
    /// Where to send it: a reachable node's client address (the leader's when it answers).
    public var address: String?

    public var allowed: Bool { refusal == nil }

    /// `{"node_id":N}`.
    public var body: String { "{\"node_id\":\(node)}" }
}

extension DashboardModel {
    /// "3 voters, tolerates 1 failure" for `voters` voters of which `up` answer.
    static func quorumText(voters: Int, up: Int) -> String {
        let quorum = voters / 2 + 1
        let tolerates = up - quorum
        let left = "\(voters) voter\(voters == 1 ? "" : "s")"
        if tolerates < 0 { return "\(left), quorum \(quorum): NO QUORUM with \(up) up" }
        return "\(left) (\(up) up), tolerates \(tolerates) failure\(tolerates == 1 ? "" : "s")"
    }

    /// Plans `action` on `node`: refuses what the cluster would refuse, and states the quorum afterwards.
    public func plan(_ action: ConsoleAction, node: UInt64) -> ActionPlan {
        let summary = self.summary
        let up = { (id: UInt64) in self.tracks.contains { $0.nodeID == id && $0.reachable == true } }
        let leaderAddress = leaderID.flatMap { id in tracks.first { $0.nodeID == id && $0.reachable == true } }?
            .status?.address
        let anyAddress = leaderAddress ?? tracks.first { $0.reachable == true }?.status?.address
        func refuse(_ why: String) -> ActionPlan {
            ActionPlan(action: action, node: node, refusal: why, text: "cannot \(action.rawValue) node \(node): \(why)")
        }
        guard let leader = leaderID else { return refuse("no leader, so the cluster would refuse any change") }
        let isVoter = voters.contains(node)
        let isLearner = learners.contains(node)
        let replication = tracks.first { $0.nodeID == node }?.replication
        switch action {
        case .transfer:
            guard isVoter else {
                return refuse(isLearner ? "it is a learner; promote it first" : "it is not a voting member")
            }
            guard node != leader else { return refuse("it already leads") }
            guard up(node) else { return refuse("it does not answer") }
            if let replication, replication.lagClass == .stalled {
                return refuse("it is stalled (\(replication.lagEntries) entries behind)")
            }
            let text = "Transfer leadership from node \(leader) to node \(node)? Afterwards: "
                + Self.quorumText(voters: voters.count, up: summary.votersUp)
            return ActionPlan(action: action, node: node, refusal: nil, text: text, address: anyAddress)
        case .promote:
            guard isLearner else { return refuse(isVoter ? "it is already a voter" : "it is not a learner") }
            guard up(node) || replication != nil else { return refuse("it does not answer") }
            if let replication, replication.lagEntries > LagClass.laggingEntries || replication.lagClass == .stalled {
                return refuse("not caught up (\(replication.lagEntries) entries behind)")
            }
            let after = Self.quorumText(voters: voters.count + 1, up: summary.votersUp + (up(node) ? 1 : 0))
            return ActionPlan(
                action: action, node: node, refusal: nil,
                text: "Promote learner \(node) to voter? Afterwards: \(after)", address: anyAddress)
        case .remove:
            guard isVoter || isLearner else { return refuse("it is not a member") }
            if isVoter && voters.count == 1 { return refuse("it is the last voter") }
            let votersAfter = isVoter ? voters.count - 1 : voters.count
            let upAfter = summary.votersUp - (isVoter && up(node) ? 1 : 0)
            if upAfter < votersAfter / 2 + 1 {
                return refuse(
                    "the cluster would lose its quorum (\(upAfter) of \(votersAfter) voters up afterwards)")
            }
            let what = isVoter ? "voter" : "learner"
            let leaderNote = node == leader ? " The leader steps down once the change commits." : ""
            let text = "Remove \(what) \(node)? Afterwards: "
                + "\(votersAfter) voter\(votersAfter == 1 ? "" : "s") left, tolerates "
                + "\(upAfter - (votersAfter / 2 + 1)) failure\(upAfter - (votersAfter / 2 + 1) == 1 ? "" : "s")."
                + leaderNote
            return ActionPlan(action: action, node: node, refusal: nil, text: text, address: anyAddress)
        }
    }
}
