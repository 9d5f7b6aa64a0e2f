import ClusterAPI

// MARK: - Poll input

/// What one `GET /status` produced.
public enum PollOutcome: Sendable, Hashable {
    case status(NodeStatus)
    /// The node could not be read: refused, timed out, bad response. The text is shown in its row.
    case failure(String)
}

/// One endpoint's answer in one poll round.
public struct PollResult: Sendable, Hashable {
    public var endpoint: Endpoint
    public var outcome: PollOutcome
    /// The node's new events (`GET /events?follow=false&after=...`), when it has the route and answered.
    public var events: NodeEventsResponse?

    public init(endpoint: Endpoint, outcome: PollOutcome, events: NodeEventsResponse? = nil) {
        self.endpoint = endpoint
        self.outcome = outcome
        self.events = events
    }
}

// MARK: - Per-node state

/// How far a member is behind the leader, from the leader's `peers` view.
public enum LagClass: String, Sendable, Hashable, Codable, Comparable {
    /// Fewer than `LagClass.laggingEntries` entries behind and acknowledged within `LagClass.laggingAckMs`.
    case inSync = "in-sync"
    /// Behind by entries or by time, still acknowledging.
    case lagging
    /// No acknowledgement for `LagClass.stalledAckMs` or more.
    case stalled

    public static let laggingEntries: UInt64 = 100
    public static let laggingAckMs: UInt64 = 1000
    public static let stalledAckMs: UInt64 = 3000

    /// Classifies one peer of the leader.
    public static func classify(lagEntries: UInt64, lastAckMsAgo: UInt64?) -> LagClass {
        if let ack = lastAckMsAgo, ack >= stalledAckMs { return .stalled }
        if lagEntries >= laggingEntries || (lastAckMsAgo ?? 0) >= laggingAckMs { return .lagging }
        return .inSync
    }

    private var rank: Int {
        switch self {
        case .inSync: return 0
        case .lagging: return 1
        case .stalled: return 2
        }
    }

    public static func < (lhs: LagClass, rhs: LagClass) -> Bool { lhs.rank < rhs.rank }
}

/// A member as the leader sees it (`peers[]` of the leader's status), with dtop's time estimate.
public struct ReplicationView: Sendable, Hashable {
    public var matchIndex: UInt64
    public var lagEntries: UInt64
    public var lastAckMsAgo: UInt64?
    /// Estimated time behind the leader; see `DashboardModel.estimateLagMs`.
    public var lagMs: UInt64?
    public var state: PeerReplicationState
    public var lagClass: LagClass
    /// How much of the leader's log the member holds, 0-100 (`match_index / last_log_index` of the leader); what
    /// dtop shows beside a learner while it catches up.
    public var catchUpPercent: Double = 100

    static func percent(match: UInt64, leaderLast: UInt64) -> Double {
        guard leaderLast > 0 else { return 100 }
        return min(100, Double(match) * 100 / Double(leaderLast))
    }
}

/// Everything dtop remembers about one row.
///
/// A row is keyed by its metrics endpoint when it has one (configured or derived), and otherwise by the node id
/// (a member known only from another node's `voters`/`learners`).
public struct NodeTrack: Sendable, Hashable {
    /// Where dtop polls this node; `nil` for a member whose metrics address is unknown.
    public var endpoint: Endpoint?
    public var nodeID: UInt64?
    /// The client address: from the node's own status, else from the leader's `peers`.
    public var address: String?
    /// The last status the node answered (kept, for display, while it is unreachable).
    public var status: NodeStatus?
    /// `nil` until the first poll of this endpoint.
    public var reachable: Bool?
    /// Why the last poll failed.
    public var error: String?
    public var lastSeenMs: UInt64?
    public var downSinceMs: UInt64?
    /// (writes_total + reads_total) per second between the last two successful polls.
    public var opsPerSecond: Double?
    /// commit_index per second between the last two successful polls.
    public var commitsPerSecond: Double?
    /// The leader's view of this node; `nil` on the leader itself and when no leader is known.
    public var replication: ReplicationView?
    /// The most recent ops/s samples, oldest first (at most `DashboardModel.historyLength`).
    public var opsHistory: [Double] = []
    /// The most recent lag_entries samples in the current term, oldest first.
    public var lagHistory: [Double] = []
    var previousSample: Sample?

    struct Sample: Sendable, Hashable {
        var operations: UInt64
        var commitIndex: UInt64
        var atMs: UInt64
    }

    init(endpoint: Endpoint?, nodeID: UInt64? = nil) {
        self.endpoint = endpoint
        self.nodeID = nodeID
    }

    /// How the row names the node: its id when known, else its endpoint.
    public var label: String {
        if let nodeID { return "node \(nodeID)" }
        return endpoint.map { "endpoint \($0)" } ?? "unknown node"
    }
}

// MARK: - Events

/// One line of the events pane.
public struct DashboardEvent: Sendable, Hashable, Codable {
    public enum Kind: String, Sendable, Hashable, Codable {
        case election
        case leaderChange = "leader-change"
        case leaderLost = "leader-lost"
        case nodeDown = "node-down"
        case nodeUp = "node-up"
        case memberAdded = "member-added"
        case memberRemoved = "member-removed"
        case learnerPromoted = "learner-promoted"
        case lagChange = "lag-change"
    }

    public var atMs: UInt64
    public var kind: Kind
    public var message: String

    public init(atMs: UInt64, kind: Kind, message: String) {
        self.atMs = atMs
        self.kind = kind
        self.message = message
    }

    enum CodingKeys: String, CodingKey {
        case atMs = "at_ms"
        case kind, message
    }
}

// MARK: - Cluster summary

/// The header's verdict.
public enum ClusterHealth: String, Sendable, Hashable, Codable {
    /// A leader, every voter and learner answering and in sync.
    case healthy
    /// A leader with a quorum, but some member is down or behind.
    case degraded
    /// No leader, or fewer voters answering than a quorum (or nothing answered at all).
    case unavailable
}

/// The header line's numbers.
public struct ClusterSummary: Sendable, Hashable {
    public var health: ClusterHealth
    public var leaderID: UInt64?
    /// The highest term any reachable node reported (the last known one when none answers).
    public var term: UInt64?
    public var voters: [UInt64]
    public var learners: [UInt64]
    public var votersUp: Int
    /// How many more voters may fail before the quorum is lost; negative when it already is.
    public var tolerates: Int
    public var quorum: Int { voters.count / 2 + 1 }
    /// `tls` when every reachable node serves TLS, `insecure` when one serves plaintext on a non-loopback address
    /// (`[security] insecure = true`), else `nil` (plaintext on loopback, or nodes that do not say).
    public var security: String? = nil
}

// MARK: - The model

/// dtop's pure view model: the previous model plus one round of polled statuses gives the next model.
///
/// No I/O and no clock: the shell passes each round's results with the wall-clock time of the round (`nowMs`,
/// milliseconds since the Unix epoch). Every derived number (ops/s, lag in ms, election duration) is measured
/// between rounds, so it is exact to the poll interval and no better.
public struct DashboardModel: Sendable, Hashable {
    /// Samples kept per sparkline.
    public static let historyLength = 24
    /// Events kept; older ones are dropped.
    public static let eventLimit = 200
    /// Node-reported events kept (all nodes together); older ones are dropped.
    public static let nodeEventLimit = 1000

    public private(set) var tracks: [NodeTrack]
    /// Newest first.
    public private(set) var events: [DashboardEvent] = []
    public private(set) var leaderID: UInt64?
    /// The term of `leaderID`'s leadership (or of the last leader, while there is none).
    public private(set) var leaderTerm: UInt64?
    public private(set) var term: UInt64?
    public private(set) var voters: [UInt64] = []
    public private(set) var learners: [UInt64] = []
    /// Rounds applied so far.
    public private(set) var rounds = 0
    public private(set) var lastRoundMs: UInt64?
    /// When a leader was last seen; the start of an election's measured duration.
    private var leaderLastSeenMs: UInt64?
    /// The last leader seen, kept while there is none (for "leader changed: A -> B").
    private var lastLeaderID: UInt64?
    private var membershipKnown = false
    /// The leader term the replication views belong to.
    private var replicationTerm: UInt64?
    /// What the nodes themselves reported (`GET /events`) and the console's own actions, oldest first.
    public private(set) var nodeEvents: [NodeEvent] = []
    /// The newest event id seen from each node (the next `after`).
    public private(set) var eventCursors: [UInt64: UInt64] = [:]

    public init(endpoints: [Endpoint]) {
        tracks = endpoints.map { NodeTrack(endpoint: $0) }
    }

    /// Every endpoint the next round should poll: the configured ones and those derived for discovered members.
    public var pollTargets: [Endpoint] { tracks.compactMap(\.endpoint) }

    // MARK: Applying a round

    /// Folds one poll round into the model.
    public mutating func apply(_ results: [PollResult], nowMs: UInt64) {
        for result in results {
            applyOne(result, nowMs: nowMs)
            if let events = result.events { applyEvents(events) }
        }
        updateLeadership(nowMs: nowMs)
        updateMembership(nowMs: nowMs)
        discoverMembers()
        updateReplication(nowMs: nowMs)
        rounds += 1
        lastRoundMs = nowMs
    }

    private mutating func applyOne(_ result: PollResult, nowMs: UInt64) {
        let index: Int
        if let existing = tracks.firstIndex(where: { $0.endpoint == result.endpoint }) {
            index = existing
        } else {
            tracks.append(NodeTrack(endpoint: result.endpoint))
            index = tracks.count - 1
        }
        var track = tracks[index]
        switch result.outcome {
        case .status(let status):
            if track.reachable == false {
                let downFor = track.downSinceMs.map { " after \(formatDuration(ms: nowMs - min($0, nowMs)))" } ?? ""
                record(nowMs, .nodeUp, "node \(status.nodeID) up\(downFor)")
            }
            let sample = NodeTrack.Sample(
                operations: status.stats.writesTotal &+ status.stats.readsTotal, commitIndex: status.commitIndex,
                atMs: nowMs)
            if let previous = track.previousSample, track.reachable == true, nowMs > previous.atMs,
                sample.operations >= previous.operations, sample.commitIndex >= previous.commitIndex
            {
                let seconds = Double(nowMs - previous.atMs) / 1000
                track.opsPerSecond = Double(sample.operations - previous.operations) / seconds
                track.commitsPerSecond = Double(sample.commitIndex - previous.commitIndex) / seconds
                appendBounded(&track.opsHistory, track.opsPerSecond ?? 0)
            } else {
                track.opsPerSecond = nil
                track.commitsPerSecond = nil
            }
            track.previousSample = sample
            track.status = status
            track.nodeID = status.nodeID
            track.address = status.address
            track.reachable = true
            track.error = nil
            track.lastSeenMs = nowMs
            track.downSinceMs = nil
            // A member first known by id only gets its placeholder row replaced by this one.
            tracks.removeAll { $0.endpoint == nil && $0.nodeID == status.nodeID }
        case .failure(let reason):
            if track.reachable != false {
                record(nowMs, .nodeDown, "\(track.label) down: \(reason)")
                track.downSinceMs = nowMs
            }
            track.reachable = false
            track.error = reason
            track.opsPerSecond = nil
            track.commitsPerSecond = nil
            track.previousSample = nil
        }
        if let slot = tracks.firstIndex(where: { $0.endpoint == result.endpoint }) {
            tracks[slot] = track
        }
    }

    /// The reachable statuses of this round.
    private var liveStatuses: [NodeStatus] {
        tracks.compactMap { $0.reachable == true ? $0.status : nil }
    }

    private mutating func updateLeadership(nowMs: UInt64) {
        let live = liveStatuses
        if let highest = live.map(\.term).max() { term = max(term ?? 0, highest) }
        let leader = live.filter { $0.role == .leader }.max { $0.term < $1.term }
        guard let leader else {
            if let lost = leaderID {
                record(nowMs, .leaderLost, "no leader: node \(lost) (term \(leaderTerm ?? 0)) is gone")
                leaderID = nil
            }
            return
        }
        // A deposed leader that has not heard of a newer term yet does not count.
        if let highest = live.map(\.term).max(), leader.term < highest {
            if let lost = leaderID {
                record(nowMs, .leaderLost, "no leader: node \(lost) (term \(leaderTerm ?? 0)) is gone")
                leaderID = nil
            }
            return
        }
        let changed = leader.nodeID != leaderID || leader.term != leaderTerm
        if changed {
            if let start = leaderLastSeenMs, leaderTerm.map({ leader.term > $0 }) ?? true {
                let took = formatDuration(ms: nowMs - min(start, nowMs))
                record(nowMs, .election, "election: term \(leader.term), node \(leader.nodeID) won in \(took)")
            }
            if let previous = lastLeaderID, previous != leader.nodeID {
                record(nowMs, .leaderChange, "leader changed: node \(previous) -> node \(leader.nodeID)")
            } else if leaderLastSeenMs == nil {
                record(nowMs, .leaderChange, "leader is node \(leader.nodeID) (term \(leader.term))")
            }
        }
        leaderID = leader.nodeID
        lastLeaderID = leader.nodeID
        leaderTerm = leader.term
        leaderLastSeenMs = nowMs
    }

    /// The status whose membership counts: the leader's, else the highest term's.
    private var authoritativeStatus: NodeStatus? {
        let live = liveStatuses
        if let leaderID, let status = live.first(where: { $0.nodeID == leaderID }) { return status }
        return live.max { $0.term < $1.term }
    }

    private mutating func updateMembership(nowMs: UInt64) {
        guard let status = authoritativeStatus else { return }
        let newVoters = status.voters.sorted()
        let newLearners = status.learners.sorted()
        if membershipKnown {
            let before = Set(voters).union(learners)
            for id in newVoters where learners.contains(id) {
                record(nowMs, .learnerPromoted, "node \(id) promoted: learner -> voter")
            }
            for id in newVoters + newLearners where !before.contains(id) {
                let kind = newLearners.contains(id) ? "learner" : "voter"
                record(nowMs, .memberAdded, "node \(id) joined as \(kind)")
            }
            for id in before.sorted() where !newVoters.contains(id) && !newLearners.contains(id) {
                record(nowMs, .memberRemoved, "node \(id) removed from the cluster")
            }
        }
        voters = newVoters
        learners = newLearners
        membershipKnown = true
    }

    // MARK: Discovery

    /// Adds a row for every member in `voters`/`learners` that no polled endpoint has answered for.
    ///
    /// Statuses carry client addresses, not metrics addresses. When every answering node's metrics port sits at
    /// the same offset from its client port (8081 vs 9081 in the local cluster), a discovered member's metrics
    /// endpoint is derived with that offset and polled from the next round; otherwise its row shows the leader's
    /// view only.
    private mutating func discoverMembers() {
        let members = voters + learners
        // Members shown from the leader's view only get their endpoint as soon as it can be derived.
        let known = Set(tracks.filter { $0.endpoint != nil }.compactMap(\.nodeID))
        let offsets = Set(
            tracks.compactMap { track -> Int? in
                guard track.reachable == true, let endpoint = track.endpoint, let address = track.status?.address,
                    let client = splitAddress(address)
                else { return nil }
                return client.port - endpoint.port
            })
        // The leader's peers first; then any node's member list (every node reports one), so members are found
        // even while the leader itself is not polled.
        var peerAddresses = Dictionary(
            (authoritativeStatus?.peers ?? []).map { ($0.id, $0.address) }, uniquingKeysWith: { first, _ in first })
        for track in tracks {
            for member in track.status?.members ?? [] where !member.address.isEmpty && peerAddresses[member.id] == nil {
                peerAddresses[member.id] = member.address
            }
        }
        let fallbackHost = tracks.first { $0.reachable == true }?.endpoint?.host
        for id in members where !known.contains(id) {
            let address = peerAddresses[id]
            var endpoint: Endpoint?
            if offsets.count == 1, let offset = offsets.first, let address, let client = splitAddress(address) {
                let host = ["0.0.0.0", "", "::", "[::]"].contains(client.host) ? fallbackHost : client.host
                let port = client.port - offset
                if let host, (1...65535).contains(port) {
                    endpoint = Endpoint(host: host, port: port)
                }
            }
            let unpolled = tracks.firstIndex { $0.nodeID == id && $0.endpoint == nil }
            if let endpoint, !tracks.contains(where: { $0.endpoint == endpoint }) {
                if let unpolled { tracks.remove(at: unpolled) }
                var track = NodeTrack(endpoint: endpoint, nodeID: id)
                track.address = address
                tracks.append(track)
            } else if endpoint == nil, unpolled == nil {
                var track = NodeTrack(endpoint: nil, nodeID: id)
                track.address = address
                track.error = "metrics address unknown; shown from the leader's view"
                tracks.append(track)
            }
        }
    }

    // MARK: Replication

    private mutating func updateReplication(nowMs: UInt64) {
        let leaderStatus = leaderID.flatMap { id in liveStatuses.first { $0.nodeID == id } }
        // Lag is the leader's view: a new term (or no leader) starts every history and class afresh.
        if leaderStatus?.term != replicationTerm {
            for index in tracks.indices {
                tracks[index].replication = nil
                tracks[index].lagHistory = []
            }
            replicationTerm = leaderStatus?.term
        }
        guard let leaderStatus else { return }
        let leaderRate = tracks.first { $0.nodeID == leaderStatus.nodeID && $0.reachable == true }?.commitsPerSecond
        for index in tracks.indices {
            var track = tracks[index]
            let previous = track.replication
            guard let id = track.nodeID, let peer = leaderStatus.peers.first(where: { $0.id == id }) else {
                track.replication = nil
                track.lagHistory = []
                tracks[index] = track
                continue
            }
            let view = ReplicationView(
                matchIndex: peer.matchIndex, lagEntries: peer.lagEntries, lastAckMsAgo: peer.lastAckMsAgo,
                lagMs: Self.estimateLagMs(
                    lagEntries: peer.lagEntries, lastAckMsAgo: peer.lastAckMsAgo, leaderCommitsPerSecond: leaderRate),
                state: peer.state,
                lagClass: LagClass.classify(lagEntries: peer.lagEntries, lastAckMsAgo: peer.lastAckMsAgo),
                catchUpPercent: ReplicationView.percent(match: peer.matchIndex, leaderLast: leaderStatus.lastLogIndex))
            if let previous, previous.lagClass != view.lagClass {
                record(
                    nowMs, .lagChange,
                    "node \(id) \(previous.lagClass.rawValue) -> \(view.lagClass.rawValue) "
                        + "(\(view.lagEntries) entries behind)")
            }
            appendBounded(&track.lagHistory, Double(view.lagEntries))
            track.replication = view
            tracks[index] = track
        }
    }

    /// dtop's estimate of how far behind the leader a member is, in milliseconds.
    ///
    /// Zero when it holds every entry. Otherwise the larger of: the time since it last acknowledged anything
    /// (a silent peer is at least that far behind), and the time the leader took to commit as many entries as the
    /// peer is missing, at the leader's commit rate between the last two polls. `nil` when neither is known.
    public static func estimateLagMs(lagEntries: UInt64, lastAckMsAgo: UInt64?, leaderCommitsPerSecond: Double?)
        -> UInt64?
    {
        if lagEntries == 0 { return 0 }
        var estimate: UInt64?
        if let rate = leaderCommitsPerSecond, rate > 0 {
            estimate = UInt64((Double(lagEntries) / rate * 1000).rounded())
        }
        if let ack = lastAckMsAgo { estimate = max(estimate ?? 0, ack) }
        return estimate
    }

    // MARK: Summary

    /// The header's verdict for this model.
    public var summary: ClusterSummary {
        let members = voters.isEmpty ? Set(tracks.compactMap(\.nodeID)) : Set(voters)
        let votersUp = tracks.filter { track in
            track.reachable == true && track.nodeID.map { members.contains($0) } == true
        }.count
        let voterCount = voters.isEmpty ? members.count : voters.count
        let quorum = voterCount / 2 + 1
        let health: ClusterHealth
        if leaderID == nil || votersUp < quorum {
            health = .unavailable
        } else if tracks.contains(where: { $0.reachable != true })
            || tracks.contains(where: { ($0.replication?.lagClass ?? .inSync) != .inSync })
        {
            health = .degraded
        } else {
            health = .healthy
        }
        let modes = tracks.filter { $0.reachable == true }.compactMap { $0.status?.security?.mode }
        let security: String? =
            modes.contains("insecure") ? "insecure" : !modes.isEmpty && modes.allSatisfy({ $0 == "tls" }) ? "tls" : nil
        return ClusterSummary(
            health: health, leaderID: leaderID, term: term, voters: voters.isEmpty ? members.sorted() : voters,
            learners: learners, votersUp: votersUp, tolerates: votersUp - quorum, security: security)
    }

    // MARK: Node events

    /// The `after` to ask `endpoint` for: the newest event id seen from the node that answers there.
    public func eventCursor(for endpoint: Endpoint) -> UInt64 {
        guard let id = tracks.first(where: { $0.endpoint == endpoint })?.nodeID else { return 0 }
        return eventCursors[id] ?? 0
    }

    /// Merges one node's new events (ids above its cursor only: a repeated answer adds nothing).
    mutating func applyEvents(_ response: NodeEventsResponse) {
        let cursor = eventCursors[response.nodeID] ?? 0
        let fresh = response.events.filter { $0.seq > cursor }
        guard let newest = fresh.map(\.seq).max() else { return }
        eventCursors[response.nodeID] = newest
        nodeEvents.append(contentsOf: fresh)
        nodeEvents.sort(by: NodeEvent.timelineOrder)
        if nodeEvents.count > Self.nodeEventLimit { nodeEvents.removeFirst(nodeEvents.count - Self.nodeEventLimit) }
    }

    /// An operator action and its result (node 0: the console), shown in the events pane.
    public mutating func recordAction(_ message: String, atMs: UInt64) {
        nodeEvents.append(
            NodeEvent(seq: 0, nodeID: 0, atMs: atMs, kind: .action, term: term ?? 0, message: message))
        if nodeEvents.count > Self.nodeEventLimit { nodeEvents.removeFirst(nodeEvents.count - Self.nodeEventLimit) }
    }

    /// Whether any node reports its own events (else the pane shows what dtop inferred from polls).
    public var nodesReportEvents: Bool { !eventCursors.isEmpty }

    // MARK: Helpers

    private mutating func record(_ atMs: UInt64, _ kind: DashboardEvent.Kind, _ message: String) {
        events.insert(DashboardEvent(atMs: atMs, kind: kind, message: message), at: 0)
        if events.count > Self.eventLimit { events.removeLast(events.count - Self.eventLimit) }
    }

    private func appendBounded(_ history: inout [Double], _ value: Double) {
        history.append(value)
        if history.count > Self.historyLength { history.removeFirst(history.count - Self.historyLength) }
    }
}

/// `850ms`, `1.2s`, `42s`, `3m05s`, `2h03m`.
public func formatDuration(ms: UInt64) -> String {
    if ms < 1000 { return "\(ms)ms" }
    if ms < 10_000 {
        let tenths = (ms + 50) / 100
        return "\(tenths / 10).\(tenths % 10)s"
    }
    let seconds = ms / 1000
    if seconds < 60 { return "\(seconds)s" }
    if seconds < 3600 { return "\(seconds / 60)m\(pad2(seconds % 60))s" }
    return "\(seconds / 3600)h\(pad2(seconds % 3600 / 60))m"
}

func pad2(_ value: UInt64) -> String { value < 10 ? "0\(value)" : "\(value)" }
