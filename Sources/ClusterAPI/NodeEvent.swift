/// `GET /events` on the metrics port: what one node itself saw, stamped with its own wall clock (docs/http-api.md,
/// "Events"). Each event is one server-sent event: `id: SEQ`, `event: KIND`, `data: JSON`.
///
/// Compatibility: the same rule as `NodeStatus` (fields added, never renamed or removed); readers ignore unknown
/// fields and keep an unknown `kind` as its raw text.

/// What happened. The raw values are the SSE `event:` names.
public struct NodeEventKind: RawRepresentable, Sendable, Hashable, Codable, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The node process started (the first event of every boot).
    public static let started = NodeEventKind(rawValue: "started")
    /// Its role changed (`follower`, `candidate`, `pre-candidate`, `leader`, `learner`, `removed`).
    public static let roleChanged = NodeEventKind(rawValue: "role_changed")
    /// It started an election (a real one, after its pre-vote, if any, succeeded).
    public static let electionStarted = NodeEventKind(rawValue: "election_started")
    /// It won the election of `term` with `votes`.
    public static let electionWon = NodeEventKind(rawValue: "election_won")
    /// It stopped campaigning without winning (refused, or another node won).
    public static let electionLost = NodeEventKind(rawValue: "election_lost")
    /// The leader it knows of changed (`peer` is the new leader; absent when it knows none).
    public static let leaderChanged = NodeEventKind(rawValue: "leader_changed")
    /// The configuration it applies changed (voters, learners).
    public static let membershipChanged = NodeEventKind(rawValue: "membership_changed")
    /// As leader, it sent a snapshot to `peer`.
    public static let snapshotSent = NodeEventKind(rawValue: "snapshot_sent")
    /// It received a snapshot from `peer` (the leader).
    public static let snapshotReceived = NodeEventKind(rawValue: "snapshot_received")
    /// It installed a received snapshot as its state.
    public static let snapshotInstalled = NodeEventKind(rawValue: "snapshot_installed")
    /// It took a snapshot of its own state and compacted its log.
    public static let snapshotTaken = NodeEventKind(rawValue: "snapshot_taken")
    /// A log write that fsynced took longer than the threshold (`duration_ms`).
    public static let slowFsync = NodeEventKind(rawValue: "slow_fsync")
    /// An alarm was raised (`NOSPACE`).
    public static let alarmRaised = NodeEventKind(rawValue: "alarm_raised")
    /// An alarm was cleared.
    public static let alarmCleared = NodeEventKind(rawValue: "alarm_cleared")
    /// As leader, it stopped hearing from `peer` for an election timeout.
    public static let peerLost = NodeEventKind(rawValue: "peer_lost")
    /// As leader, it hears from `peer` again.
    public static let peerFound = NodeEventKind(rawValue: "peer_found")
    /// An operator action and its result, recorded by a console (never sent by a node).
    public static let action = NodeEventKind(rawValue: "action")

    public init(from decoder: any Decoder) throws {
        rawValue = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

/// How an election was decided.
public struct VoteCount: Sendable, Hashable, Codable {
    /// Votes granted, the candidate's own included.
    public var granted: Int
    public var refused: Int
    /// Voters in the configuration.
    public var voters: Int

    public init(granted: Int, refused: Int, voters: Int) {
        self.granted = granted
        self.refused = refused
        self.voters = voters
    }
}

/// One event of `GET /events`.
public struct NodeEvent: Sendable, Hashable, Codable {
    /// Increases by one per event. It starts at the node's wall-clock milliseconds at boot times 1000, so ids keep
    /// increasing across restarts (a follower's `Last-Event-ID` from before a restart skips nothing new).
    public var seq: UInt64
    public var nodeID: UInt64
    /// The node's wall clock (ms since the Unix epoch) when it saw the event.
    public var atMs: UInt64
    public var kind: NodeEventKind
    /// The node's term when it saw the event.
    public var term: UInt64
    /// One line for people.
    public var message: String
    /// The other node concerned: the new leader, the peer lost, the snapshot's receiver or sender.
    public var peer: UInt64?
    /// A log index: the snapshot's.
    public var index: UInt64?
    /// Bytes: the snapshot's size.
    public var bytes: UInt64?
    /// A duration: the fsync's, the election's.
    public var durationMs: UInt64?
    /// An election's votes.
    public var votes: VoteCount?
    /// The role after a `role_changed`.
    public var role: String?

    public init(
        seq: UInt64, nodeID: UInt64, atMs: UInt64, kind: NodeEventKind, term: UInt64, message: String,
        peer: UInt64? = nil, index: UInt64? = nil, bytes: UInt64? = nil, durationMs: UInt64? = nil,
        votes: VoteCount? = nil, role: String? = nil
    ) {
        self.seq = seq
        self.nodeID = nodeID
        self.atMs = atMs
        self.kind = kind
        self.term = term
        self.message = message
        self.peer = peer
        self.index = index
        self.bytes = bytes
        self.durationMs = durationMs
        self.votes = votes
        self.role = role
    }

    enum CodingKeys: String, CodingKey {
        case seq
        case nodeID = "node_id"
        case atMs = "at_ms"
        case kind, term, message, peer, index, bytes
        case durationMs = "duration_ms"
        case votes, role
    }

    /// Orders a merged timeline: by time, then node, then sequence.
    public static func timelineOrder(_ a: NodeEvent, _ b: NodeEvent) -> Bool {
        (a.atMs, a.nodeID, a.seq) < (b.atMs, b.nodeID, b.seq)
    }
}

/// `GET /events?follow=false`: the events the node still holds after `after`, oldest first, in one JSON document.
public struct NodeEventsResponse: Sendable, Hashable, Codable {
    public var nodeID: UInt64
    public var events: [NodeEvent]

    public init(nodeID: UInt64, events: [NodeEvent]) {
        self.nodeID = nodeID
        self.events = events
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case events
    }
}
