/// The Status JSON served by `GET /status` on the metrics port, and printed per node by `dctl status -o json`.
///
/// Compatibility rule (SPEC.md): within one `schema_version`, fields may be added but never renamed or removed.
/// Decoding therefore ignores unknown fields, and nullable fields are always written (as `null`), never omitted.

// MARK: - Peers

/// The leader's replication state for one peer (etcd's `tracker.StateType`).
public enum PeerReplicationState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Entries are streamed optimistically.
    case replicate
    /// The leader is searching for the last matching index, one message at a time.
    case probe
    /// The peer is receiving a snapshot.
    case snapshot
}

/// One peer as seen by the leader.
public struct PeerStatus: Sendable, Hashable, Codable {
    public var id: UInt64
    public var address: String
    /// The highest log index known to be replicated on the peer.
    public var matchIndex: UInt64
    /// The leader's last log index minus `matchIndex`.
    public var lagEntries: UInt64
    /// Milliseconds since the peer last acknowledged anything; `null` if it never has.
    public var lastAckMsAgo: UInt64?
    public var state: PeerReplicationState
    /// The next index the leader will send the peer. Optional: omitted by nodes that do not report it.
    public var nextIndex: UInt64?
    /// Append messages sent to the peer and not yet acknowledged. Optional, like `nextIndex`.
    public var inflight: UInt64?

    public init(
        id: UInt64, address: String, matchIndex: UInt64, lagEntries: UInt64, lastAckMsAgo: UInt64?,
        state: PeerReplicationState, nextIndex: UInt64? = nil, inflight: UInt64? = nil
    ) {
        self.nextIndex = nextIndex
        self.inflight = inflight
        self.id = id
        self.address = address
        self.matchIndex = matchIndex
        self.lagEntries = lagEntries
        self.lastAckMsAgo = lastAckMsAgo
        self.state = state
    }

    enum CodingKeys: String, CodingKey {
        case id, address, state
        case matchIndex = "match_index"
        case lagEntries = "lag_entries"
        case lastAckMsAgo = "last_ack_ms_ago"
        case nextIndex = "next_index"
        case inflight
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(UInt64.self, forKey: .id)
        address = try container.decode(String.self, forKey: .address)
        matchIndex = try container.decode(UInt64.self, forKey: .matchIndex)
        lagEntries = try container.decode(UInt64.self, forKey: .lagEntries)
        lastAckMsAgo = try container.decodeIfPresent(UInt64.self, forKey: .lastAckMsAgo)
        state = try container.decode(PeerReplicationState.self, forKey: .state)
        nextIndex = try container.decodeIfPresent(UInt64.self, forKey: .nextIndex)
        inflight = try container.decodeIfPresent(UInt64.self, forKey: .inflight)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(address, forKey: .address)
        try container.encode(matchIndex, forKey: .matchIndex)
        try container.encode(lagEntries, forKey: .lagEntries)
        try container.encode(lastAckMsAgo, forKey: .lastAckMsAgo)
        try container.encode(state, forKey: .state)
        try container.encodeIfPresent(nextIndex, forKey: .nextIndex)
        try container.encodeIfPresent(inflight, forKey: .inflight)
    }
}

// MARK: - Stats

/// Counters since the node started.
public struct NodeStats: Sendable, Hashable, Codable {
    public var writesTotal: UInt64
    public var readsTotal: UInt64
    /// The 99th percentile of client write latency, in milliseconds, over a recent window.
    public var writeP99Ms: Double

    public init(writesTotal: UInt64 = 0, readsTotal: UInt64 = 0, writeP99Ms: Double = 0) {
        self.writesTotal = writesTotal
        self.readsTotal = readsTotal
        self.writeP99Ms = writeP99Ms
    }

    enum CodingKeys: String, CodingKey {
        case writesTotal = "writes_total"
        case readsTotal = "reads_total"
        case writeP99Ms = "write_p99_ms"
    }
}

// MARK: - Status

/// `GET /status`: one node's view of itself and, when it leads, of its peers.
public struct NodeStatus: Sendable, Hashable, Codable {
    /// The schema this type writes. Readers accept any document with this version and extra fields.
    public static let currentSchemaVersion = 1

    public var schemaVersion: Int
    public var nodeID: UInt64
    /// The node's `listen_address` (client API and peer protocol).
    public var address: String
    public var role: NodeRole
    public var term: UInt64
    /// The leader this node knows of; `null` when none.
    public var leaderID: UInt64?
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var lastLogIndex: UInt64
    /// The index of the latest snapshot; 0 when there is none.
    public var snapshotIndex: UInt64
    public var voters: [UInt64]
    public var learners: [UInt64]
    /// Milliseconds the leader lease still holds; 0 when not leader or expired.
    public var leaseRemainingMs: UInt64
    public var uptimeMs: UInt64
    /// The leader's view of its peers; empty on any other node.
    public var peers: [PeerStatus]
    public var stats: NodeStats
    /// A hash of the state machine at `applied_index` (16 hex digits); replicas at the same applied index agree.
    /// Optional: omitted by nodes that do not report it. Used by the chaos harness's convergence check.
    public var stateHash: String?
    /// Every member of the configuration this node knows, with the address it is dialled at (the replicated
    /// address table, else the config file's), on every node, not only the leader. Optional: omitted by nodes that
    /// do not report it. Lets a dashboard find members no config lists.
    public var members: [MemberAddress]?
    /// How the node protects its ports: TLS or plaintext, authentication, certificate expiry. Optional: omitted by
    /// nodes that do not report it.
    public var security: SecurityStatus?
    /// The node's own view for `dctl doctor`: version, wall clock, settings that must agree across the cluster,
    /// disk space. Optional: omitted by nodes that do not report it.
    public var node: NodeFacts?
    /// Alarms raised on this node (`NOSPACE`: writes refused); absent or empty when none.
    public var alarms: [NodeAlarm]?
    /// The node's log and disk: fsync latency, snapshot, space used against the quota. Optional: omitted by nodes
    /// that do not report it.
    public var storage: StorageStatus?

    public init(
        schemaVersion: Int = NodeStatus.currentSchemaVersion, nodeID: UInt64, address: String, role: NodeRole,
        term: UInt64, leaderID: UInt64?, commitIndex: UInt64, appliedIndex: UInt64, lastLogIndex: UInt64,
        snapshotIndex: UInt64, voters: [UInt64], learners: [UInt64], leaseRemainingMs: UInt64, uptimeMs: UInt64,
        peers: [PeerStatus], stats: NodeStats
    ) {
        self.schemaVersion = schemaVersion
        self.nodeID = nodeID
        self.address = address
        self.role = role
        self.term = term
        self.leaderID = leaderID
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.lastLogIndex = lastLogIndex
        self.snapshotIndex = snapshotIndex
        self.voters = voters
        self.learners = learners
        self.leaseRemainingMs = leaseRemainingMs
        self.uptimeMs = uptimeMs
        self.peers = peers
        self.stats = stats
    }

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version"
        case nodeID = "node_id"
        case address, role, term
        case leaderID = "leader_id"
        case commitIndex = "commit_index"
        case appliedIndex = "applied_index"
        case lastLogIndex = "last_log_index"
        case snapshotIndex = "snapshot_index"
        case voters, learners
        case leaseRemainingMs = "lease_remaining_ms"
        case uptimeMs = "uptime_ms"
        case peers, stats
        case stateHash = "state_hash"
        case members
        case security
        case node
        case alarms
        case storage
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = try container.decode(Int.self, forKey: .schemaVersion)
        nodeID = try container.decode(UInt64.self, forKey: .nodeID)
        address = try container.decode(String.self, forKey: .address)
        role = try container.decode(NodeRole.self, forKey: .role)
        term = try container.decode(UInt64.self, forKey: .term)
        leaderID = try container.decodeIfPresent(UInt64.self, forKey: .leaderID)
        commitIndex = try container.decode(UInt64.self, forKey: .commitIndex)
        appliedIndex = try container.decode(UInt64.self, forKey: .appliedIndex)
        lastLogIndex = try container.decode(UInt64.self, forKey: .lastLogIndex)
        snapshotIndex = try container.decode(UInt64.self, forKey: .snapshotIndex)
        voters = try container.decode([UInt64].self, forKey: .voters)
        learners = try container.decode([UInt64].self, forKey: .learners)
        leaseRemainingMs = try container.decode(UInt64.self, forKey: .leaseRemainingMs)
        uptimeMs = try container.decode(UInt64.self, forKey: .uptimeMs)
        peers = try container.decode([PeerStatus].self, forKey: .peers)
        stats = try container.decode(NodeStats.self, forKey: .stats)
        stateHash = try container.decodeIfPresent(String.self, forKey: .stateHash)
        members = try container.decodeIfPresent([MemberAddress].self, forKey: .members)
        security = try container.decodeIfPresent(SecurityStatus.self, forKey: .security)
        alarms = try container.decodeIfPresent([NodeAlarm].self, forKey: .alarms)
        node = try container.decodeIfPresent(NodeFacts.self, forKey: .node)
        storage = try container.decodeIfPresent(StorageStatus.self, forKey: .storage)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(schemaVersion, forKey: .schemaVersion)
        try container.encode(nodeID, forKey: .nodeID)
        try container.encode(address, forKey: .address)
        try container.encode(role, forKey: .role)
        try container.encode(term, forKey: .term)
        try container.encode(leaderID, forKey: .leaderID)
        try container.encode(commitIndex, forKey: .commitIndex)
        try container.encode(appliedIndex, forKey: .appliedIndex)
        try container.encode(lastLogIndex, forKey: .lastLogIndex)
        try container.encode(snapshotIndex, forKey: .snapshotIndex)
        try container.encode(voters, forKey: .voters)
        try container.encode(learners, forKey: .learners)
        try container.encode(leaseRemainingMs, forKey: .leaseRemainingMs)
        try container.encode(uptimeMs, forKey: .uptimeMs)
        try container.encode(peers, forKey: .peers)
        try container.encode(stats, forKey: .stats)
        try container.encodeIfPresent(stateHash, forKey: .stateHash)
        try container.encodeIfPresent(members, forKey: .members)
        try container.encodeIfPresent(security, forKey: .security)
        try container.encodeIfPresent(node, forKey: .node)
        try container.encodeIfPresent(alarms, forKey: .alarms)
        try container.encodeIfPresent(storage, forKey: .storage)
    }
}

/// One entry of `NodeStatus.members`.
public struct MemberAddress: Sendable, Hashable, Codable {
    public var id: UInt64
    /// `host:port` of the member's client API and peer protocol.
    public var address: String

    public init(id: UInt64, address: String) {
        self.id = id
        self.address = address
    }
}

/// `NodeStatus.security`: `{"mode":"tls","client_auth":true,"certificate_not_after":"2029-03-08T10:00:00Z",...}`.
public struct SecurityStatus: Sendable, Hashable, Codable {
    /// `tls` (every port), `plaintext` (loopback only), or `insecure` (plaintext on a non-loopback address, allowed
    /// by `[security] insecure = true`).
    public var mode: String
    /// Whether client requests must be authenticated (client certificate or bearer token).
    public var clientAuth: Bool
    /// When this node's certificate expires (RFC 3339), in TLS mode.
    public var certificateNotAfter: String?
    /// The certificate's serial number (hex), to see a rotation take effect.
    public var certificateSerial: String?
    /// When the cluster CA expires (RFC 3339), in TLS mode.
    public var caNotAfter: String?

    public init(
        mode: String, clientAuth: Bool, certificateNotAfter: String? = nil, certificateSerial: String? = nil,
        caNotAfter: String? = nil
    ) {
        self.mode = mode
        self.clientAuth = clientAuth
        self.certificateNotAfter = certificateNotAfter
        self.certificateSerial = certificateSerial
        self.caNotAfter = caNotAfter
    }

    /// `true` unless the node serves TLS.
    public var isPlaintext: Bool { mode != "tls" }

    enum CodingKeys: String, CodingKey {
        case mode
        case clientAuth = "client_auth"
        case certificateNotAfter = "certificate_not_after"
        case certificateSerial = "certificate_serial"
        case caNotAfter = "ca_not_after"
    }
}

/// `NodeStatus.node`: `{"version":"0.1.0","now_ms":...,"settings":{...},"disk":{...}}`.
public struct NodeFacts: Sendable, Hashable, Codable {
    /// The `dnode` version.
    public var version: String
    /// The node's wall clock when it answered (ms since the Unix epoch), to estimate clock offsets.
    public var nowMs: UInt64
    /// Settings every member should share, `name: value` (election timeouts, heartbeat, lease, persistence).
    public var settings: [String: String]
    public var disk: DiskFacts?

    public init(version: String, nowMs: UInt64, settings: [String: String], disk: DiskFacts?) {
        self.version = version
        self.nowMs = nowMs
        self.settings = settings
        self.disk = disk
    }

    enum CodingKeys: String, CodingKey {
        case version
        case nowMs = "now_ms"
        case settings, disk
    }
}

/// Space on the file system of the node's data directory.
public struct DiskFacts: Sendable, Hashable, Codable {
    public var path: String
    public var freeBytes: UInt64
    public var totalBytes: UInt64

    public init(path: String, freeBytes: UInt64, totalBytes: UInt64) {
        self.path = path
        self.freeBytes = freeBytes
        self.totalBytes = totalBytes
    }

    enum CodingKeys: String, CodingKey {
        case path
        case freeBytes = "free_bytes"
        case totalBytes = "total_bytes"
    }
}

/// An alarm a node raised: `NOSPACE` when its data directory is over `quota_backend_bytes` or its disk is full.
/// While it is raised the node refuses writes with `507 no_space` and serves reads.
public struct NodeAlarm: Sendable, Hashable, Codable {
    public static let noSpace = "NOSPACE"

    public var type: String
    public var reason: String
    /// Wall-clock milliseconds when it was raised.
    public var raisedAtMs: UInt64

    public init(type: String, reason: String, raisedAtMs: UInt64) {
        self.type = type
        self.reason = reason
        self.raisedAtMs = raisedAtMs
    }

    enum CodingKeys: String, CodingKey {
        case type, reason
        case raisedAtMs = "raised_at_ms"
    }
}

/// `GET /alarms` and `POST /alarm/disarm`: one node's alarms and the space its data directory uses.
public struct AlarmsResponse: Sendable, Hashable, Codable {
    public var nodeID: UInt64
    public var alarms: [NodeAlarm]
    public var backendBytes: UInt64
    public var quotaBytes: UInt64

    public init(nodeID: UInt64, alarms: [NodeAlarm], backendBytes: UInt64, quotaBytes: UInt64) {
        self.nodeID = nodeID
        self.alarms = alarms
        self.backendBytes = backendBytes
        self.quotaBytes = quotaBytes
    }

    enum CodingKeys: String, CodingKey {
        case nodeID = "node_id"
        case alarms
        case backendBytes = "backend_bytes"
        case quotaBytes = "quota_bytes"
    }
}

/// `NodeStatus.storage`: `{"fsync_p50_ms":1,"fsync_p99_ms":5,"fsyncs":120,"snapshot_index":..,...}`.
public struct StorageStatus: Sendable, Hashable, Codable {
    /// Latency of log writes that ended in an fsync (write plus fsync of one batch), in ms, over the node's life:
    /// the upper bound of the histogram bucket holding the quantile.
    public var fsyncP50Ms: Double
    public var fsyncP99Ms: Double
    /// Log writes that ended in an fsync.
    public var fsyncs: UInt64
    /// The latest snapshot: its index (0 for none) and its size in bytes.
    public var snapshotIndex: UInt64
    public var snapshotBytes: UInt64
    /// The first log index still held (entries before it are compacted into the snapshot).
    public var firstLogIndex: UInt64
    /// Bytes the data directory uses, as last measured, and `quota_backend_bytes` (the NOSPACE alarm's limit).
    public var backendBytes: UInt64
    public var quotaBytes: UInt64

    public init(
        fsyncP50Ms: Double, fsyncP99Ms: Double, fsyncs: UInt64, snapshotIndex: UInt64, snapshotBytes: UInt64,
        firstLogIndex: UInt64, backendBytes: UInt64, quotaBytes: UInt64
    ) {
        self.fsyncP50Ms = fsyncP50Ms
        self.fsyncP99Ms = fsyncP99Ms
        self.fsyncs = fsyncs
        self.snapshotIndex = snapshotIndex
        self.snapshotBytes = snapshotBytes
        self.firstLogIndex = firstLogIndex
        self.backendBytes = backendBytes
        self.quotaBytes = quotaBytes
    }

    enum CodingKeys: String, CodingKey {
        case fsyncP50Ms = "fsync_p50_ms"
        case fsyncP99Ms = "fsync_p99_ms"
        case fsyncs
        case snapshotIndex = "snapshot_index"
        case snapshotBytes = "snapshot_bytes"
        case firstLogIndex = "first_log_index"
        case backendBytes = "backend_bytes"
        case quotaBytes = "quota_bytes"
    }
}
