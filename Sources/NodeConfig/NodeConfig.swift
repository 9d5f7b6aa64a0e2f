import ClusterAPI

/// A node's whole configuration: the `[cluster]`, `[monitoring]` and `[raft.*]` sections of its TOML file.
///
/// Every key has a default (see `docs/config.md`), so `NodeConfig()` is a valid single-node configuration.
/// Load a file with `NodeConfig.load(path:environment:)`, which applies `RAFT__...` overrides and validates.
/// Durations are in milliseconds and sizes in entries or bytes, as the key names say.
public struct NodeConfig: Sendable, Equatable {
    public var cluster: ClusterConfig
    public var monitoring: MonitoringConfig
    public var raft: RaftConfig
    public var security: SecurityConfig
    public var watch: WatchConfig

    public init(
        cluster: ClusterConfig = ClusterConfig(), monitoring: MonitoringConfig = MonitoringConfig(),
        raft: RaftConfig = RaftConfig(), security: SecurityConfig = SecurityConfig(), watch: WatchConfig = WatchConfig()
    ) {
        self.cluster = cluster
        self.monitoring = monitoring
        self.raft = raft
        self.security = security
        self.watch = watch
    }
}

// MARK: - [watch]

/// `[watch]`: the change history `GET /watch` resumes from, and how much a slow watcher may hold.
public struct WatchConfig: Sendable, Equatable {
    /// `history_entries`, default 10000: changes kept for `since` (a `since` older than the oldest is `410 compacted`).
    public var historyEntries: Int
    /// `history_bytes`, default 67108864 (64 MiB): the same history bounded by its keys' and values' bytes.
    public var historyBytes: Int
    /// `buffer_bytes`, default 4194304 (4 MiB): what one watch stream may hold for a client that does not read;
    /// beyond it the watch ends with `event: dropped`. Must hold one largest change (`max_value_bytes` +
    /// `max_key_bytes` + 64 KiB).
    public var bufferBytes: Int
    /// `progress_interval_ms`, default 1000: how often every stream gets `event: progress` with the applied index.
    public var progressIntervalMs: Int

    public init(
        historyEntries: Int = 10_000, historyBytes: Int = 64 << 20, bufferBytes: Int = 4 << 20,
        progressIntervalMs: Int = 1000
    ) {
        self.historyEntries = historyEntries
        self.historyBytes = historyBytes
        self.bufferBytes = bufferBytes
        self.progressIntervalMs = progressIntervalMs
    }
}

// MARK: - [security]

/// `[security]`: TLS on every port, mutual TLS between peers, authentication and roles (docs/security.md).
///
/// TLS is on when `ca_file`, `cert_file` and `key_file` are set (all three or none). Then every port speaks TLS,
/// peers must present a node certificate of the CA naming their id, and client requests need a client
/// certificate or a bearer token with a role that allows them. Without TLS a node binds loopback addresses only,
/// unless `insecure = true` says that plaintext without authentication on a network is intended.
public struct SecurityConfig: Sendable, Equatable {
    /// `insecure`, default `false`: allow non-loopback addresses without TLS (plaintext, no authentication).
    public var insecure: Bool
    /// `ca_file`: the cluster CA certificate (PEM), which signs every node and client certificate.
    public var caFile: String?
    /// `cert_file`: this node's certificate (PEM), made by `dctl certs init`; it must name this node's id.
    public var certFile: String?
    /// `key_file`: this node's private key (PEM).
    public var keyFile: String?
    /// `require_client_cert`, default `false`: clients must present a certificate (bearer tokens alone are then
    /// refused at the TLS handshake).
    public var requireClientCert: Bool
    /// `tokens_file`: bearer tokens, stored hashed (`dctl certs token`); none when unset.
    public var tokensFile: String?
    /// `reload_interval_ms`, default 5000: how often the certificate, key, CA and tokens files are checked for
    /// changes (SIGHUP reloads at once).
    public var reloadIntervalMs: Int

    public init(
        insecure: Bool = false, caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil,
        requireClientCert: Bool = false, tokensFile: String? = nil, reloadIntervalMs: Int = 5000
    ) {
        self.insecure = insecure
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
        self.requireClientCert = requireClientCert
        self.tokensFile = tokensFile
        self.reloadIntervalMs = reloadIntervalMs
    }

    /// `true` when TLS is configured.
    public var tlsEnabled: Bool { caFile != nil && certFile != nil && keyFile != nil }
}

// MARK: - [cluster]

/// The role an `initial_cluster` member starts with. Numbers follow d-engine's `NodeRole`.
///
/// Only followers (voters) and learners can be configured: a node never starts as candidate (2) or leader (3),
/// so those numbers are rejected with a message rather than silently read as follower.
public enum InitialRole: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `role = 1`: a voter; it starts as a follower.
    case follower = 1
    /// `role = 4`: a non-voting member that receives the log.
    case learner = 4

    public var description: String {
        switch self {
        case .follower: return "Follower"
        case .learner: return "Learner"
        }
    }
}

/// The membership status of an `initial_cluster` member. Numbers follow d-engine's `NodeStatus`.
public enum InitialStatus: Int, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// `status = 1`: a learner to be promoted to voter once it has caught up.
    case promotable = 1
    /// `status = 2`: a full member in its role (every voter; a learner meant to stay a learner).
    case active = 2

    public var description: String {
        switch self {
        case .promotable: return "Promotable"
        case .active: return "Active"
        }
    }
}

/// One entry of `[cluster] initial_cluster`: `{ id = 1, address = "0.0.0.0:9081", role = 1, status = 2 }`.
public struct InitialMember: Sendable, Hashable {
    /// The member's node id (at least 1, unique).
    public var id: UInt64
    /// The member's `listen_address` as written; a wildcard host is allowed (see `dialAddress`).
    public var address: HostPort
    /// Default `.follower`.
    public var role: InitialRole
    /// Default `.active`.
    public var status: InitialStatus

    public init(id: UInt64, address: HostPort, role: InitialRole = .follower, status: InitialStatus = .active) {
        self.id = id
        self.address = address
        self.role = role
        self.status = status
    }

    /// Where to connect to this member: `address` with `0.0.0.0` or `::` replaced by `127.0.0.1`.
    public var dialAddress: HostPort { address.dialAddress }

    /// `true` for a voter (`role = 1`).
    public var isVoter: Bool { role == .follower }
}

/// `[cluster]`: who this node is, who its peers are, where it keeps its files.
public struct ClusterConfig: Sendable, Equatable {
    /// `node_id`, default 1. Must be at least 1 and appear in `initialCluster`.
    public var nodeID: UInt64
    /// `listen_address`, default `127.0.0.1:9081`: the client HTTP API and the peer protocol.
    public var listenAddress: HostPort
    /// `initial_cluster`; default a single voter: this node at `listenAddress`.
    public var initialCluster: [InitialMember]
    /// `initial_cluster_size`: how many voters of `initialCluster` (the first ones, in the order listed) form the
    /// bootstrap configuration; the others join later. Default: every voter listed.
    public var initialClusterSize: Int
    /// `db_root_dir`, default `./db/<node_id>`: log, hard state and snapshots.
    public var dbRootDir: String
    /// `log_dir`, default `./logs/<node_id>`: the node writes `d.log` here.
    public var logDir: String
    /// `request_timeout_ms`, default 5000: how long a client request may wait for commit before `504 timeout`.
    public var requestTimeoutMs: Int
    /// `max_client_connections`, default 4096: client connections open at once on `listen_address`; one more is
    /// answered `429 overloaded` and closed. The node lowers it to fit its descriptor limit.
    public var maxClientConnections: Int
    /// `client_idle_timeout_ms`, default 120000: a client connection that starts no request for this long is closed.
    public var clientIdleTimeoutMs: Int
    /// `client_header_timeout_ms`, default 10000: a request's head must arrive within this of its first byte.
    public var clientHeaderTimeoutMs: Int
    /// `client_body_timeout_ms`, default 30000: a request's body must arrive within this of its head.
    public var clientBodyTimeoutMs: Int

    public init(
        nodeID: UInt64 = 1, listenAddress: HostPort = HostPort(host: "127.0.0.1", port: 9081),
        initialCluster: [InitialMember]? = nil, initialClusterSize: Int? = nil, dbRootDir: String? = nil,
        logDir: String? = nil, requestTimeoutMs: Int = 5000, maxClientConnections: Int = 4096,
        clientIdleTimeoutMs: Int = 120_000, clientHeaderTimeoutMs: Int = 10_000, clientBodyTimeoutMs: Int = 30_000
    ) {
        self.nodeID = nodeID
        self.listenAddress = listenAddress
        let members = initialCluster ?? [InitialMember(id: nodeID, address: listenAddress)]
        self.initialCluster = members
        self.initialClusterSize = initialClusterSize ?? members.filter(\.isVoter).count
        self.dbRootDir = dbRootDir ?? "./db/\(nodeID)"
        self.logDir = logDir ?? "./logs/\(nodeID)"
        self.requestTimeoutMs = requestTimeoutMs
        self.maxClientConnections = maxClientConnections
        self.clientIdleTimeoutMs = clientIdleTimeoutMs
        self.clientHeaderTimeoutMs = clientHeaderTimeoutMs
        self.clientBodyTimeoutMs = clientBodyTimeoutMs
    }

    /// This node's own `initial_cluster` entry (validation guarantees there is one).
    public var selfMember: InitialMember? {
        initialCluster.first { $0.id == nodeID }
    }

    /// The members other than this node.
    public var peers: [InitialMember] {
        initialCluster.filter { $0.id != nodeID }
    }

    /// The voters of the bootstrap configuration: the first `initialClusterSize` voters, in the order listed.
    public var bootstrapVoters: [InitialMember] {
        Array(initialCluster.filter(\.isVoter).prefix(initialClusterSize))
    }
}

// MARK: - [monitoring]

/// `[monitoring]`: the metrics/status listener.
public struct MonitoringConfig: Sendable, Equatable {
    /// `metrics_address`, default `127.0.0.1:8081`; env `METRICS_PORT` replaces its port.
    /// Serves `GET /metrics`, `GET /status` and `GET /health`.
    public var metricsAddress: HostPort

    public init(metricsAddress: HostPort = HostPort(host: "127.0.0.1", port: 8081)) {
        self.metricsAddress = metricsAddress
    }
}

// MARK: - [raft]

/// `[raft]` and its subsections.
public struct RaftConfig: Sendable, Equatable {
    /// `max_value_bytes`, default 1048576 (1 MiB): larger values are refused with `413 too_large`.
    public var maxValueBytes: Int
    /// `max_key_bytes`, default 4096 (4 KiB): larger keys are refused with `413 too_large`.
    public var maxKeyBytes: Int
    public var election: ElectionConfig
    public var replication: ReplicationConfig
    public var readConsistency: ReadConsistencyConfig
    public var persistence: PersistenceConfig
    public var snapshot: SnapshotConfig

    public init(
        maxValueBytes: Int = 1_048_576, maxKeyBytes: Int = 4096, election: ElectionConfig = ElectionConfig(),
        replication: ReplicationConfig = ReplicationConfig(),
        readConsistency: ReadConsistencyConfig = ReadConsistencyConfig(),
        persistence: PersistenceConfig = PersistenceConfig(), snapshot: SnapshotConfig = SnapshotConfig()
    ) {
        self.maxValueBytes = maxValueBytes
        self.maxKeyBytes = maxKeyBytes
        self.election = election
        self.replication = replication
        self.readConsistency = readConsistency
        self.persistence = persistence
        self.snapshot = snapshot
    }
}

/// `[raft.election]`: a follower that hears nothing for a random time in `[min, max)` ms starts an election.
public struct ElectionConfig: Sendable, Equatable {
    /// `election_timeout_min`, default 1000 ms.
    public var electionTimeoutMin: Int
    /// `election_timeout_max`, default 2000 ms; must exceed `electionTimeoutMin`.
    public var electionTimeoutMax: Int

    public init(electionTimeoutMin: Int = 1000, electionTimeoutMax: Int = 2000) {
        self.electionTimeoutMin = electionTimeoutMin
        self.electionTimeoutMax = electionTimeoutMax
    }
}

/// `[raft.replication]`: how the leader sends its log.
public struct ReplicationConfig: Sendable, Equatable {
    /// `rpc_append_entries_clock_in_ms`, default 100: the heartbeat interval.
    /// Must be at most a third of `election_timeout_min`.
    public var rpcAppendEntriesClockInMs: Int
    /// `append_entries_max_entries_per_replication`, default 5000: entries in one AppendEntries message.
    public var appendEntriesMaxEntriesPerReplication: Int
    /// `max_inflight_messages`, default 256: unacknowledged AppendEntries per peer before the leader waits.
    public var maxInflightMessages: Int

    public init(
        rpcAppendEntriesClockInMs: Int = 100, appendEntriesMaxEntriesPerReplication: Int = 5000,
        maxInflightMessages: Int = 256
    ) {
        self.rpcAppendEntriesClockInMs = rpcAppendEntriesClockInMs
        self.appendEntriesMaxEntriesPerReplication = appendEntriesMaxEntriesPerReplication
        self.maxInflightMessages = maxInflightMessages
    }
}

/// `[raft.read_consistency]`: how `GET /get` and `GET /scan` are served.
public struct ReadConsistencyConfig: Sendable, Equatable {
    /// `default_policy`, default `"LeaseRead"`: used when the request names no `consistency`.
    public var defaultPolicy: ReadConsistency
    /// `lease_duration_ms`, default 500: how long a leader may serve lease reads after a quorum acknowledged it.
    /// Must be below `election_timeout_min - NodeConfig.leaseDriftMargin(electionTimeoutMin:)`.
    public var leaseDurationMs: Int
    /// `allow_client_override`, default `true`: whether `?consistency=` may pick another level.
    public var allowClientOverride: Bool
    /// `follower_reads`, default `true`: a follower serves lease and linearizable reads itself once the leader has
    /// given it a read index (one small message per batch of reads); `false` forwards them to the leader.
    public var followerReads: Bool

    public init(
        defaultPolicy: ReadConsistency = .lease, leaseDurationMs: Int = 500, allowClientOverride: Bool = true,
        followerReads: Bool = true
    ) {
        self.defaultPolicy = defaultPolicy
        self.leaseDurationMs = leaseDurationMs
        self.allowClientOverride = allowClientOverride
        self.followerReads = followerReads
    }
}

/// `strategy`: when a write is acknowledged relative to fsync.
public enum PersistenceStrategy: String, Sendable, Hashable, CaseIterable {
    /// Acknowledged once a quorum holds the entry in the OS page cache; fsynced per `flush_policy`.
    /// Survives `kill -9`; a power loss may lose the last unflushed batch.
    case memFirst = "MemFirst"
    /// Acknowledged only after a quorum has fsynced the entry (group commit: one fsync per batch).
    case diskFirst = "DiskFirst"
}

/// `flush_policy`: when MemFirst fsyncs. DiskFirst fsyncs before every acknowledgement and ignores it.
public enum FlushPolicy: Sendable, Hashable {
    /// `flush_policy = "Immediate"`: fsync after every append.
    case immediate
    /// `flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }`: fsync once `threshold` entries are
    /// unflushed or `interval_ms` has passed since the first of them, whichever comes first.
    case batch(threshold: Int, intervalMs: Int)

    /// The default batch: 100 entries or 20 ms.
    public static let defaultBatch = FlushPolicy.batch(threshold: 100, intervalMs: 20)
}

/// `[raft.persistence]`: durability of the log.
public struct PersistenceConfig: Sendable, Equatable {
    /// `strategy`, default `"DiskFirst"` (the safe choice; the seed files choose `"MemFirst"`).
    public var strategy: PersistenceStrategy
    /// `flush_policy`, default `{ Batch = { threshold = 100, interval_ms = 20 } }`.
    public var flushPolicy: FlushPolicy
    /// `max_buffered_entries`, default 10000: unflushed entries beyond which writes get `429 overloaded`.
    public var maxBufferedEntries: Int
    /// `flush_workers`, default 4 (1-64): threads doing file writes and fsyncs.
    public var flushWorkers: Int
    /// `quota_backend_bytes`, default 8 GiB (at least 1 MiB): when the data directory (log and snapshots) grows past
    /// it, the node raises the `NOSPACE` alarm and refuses writes with `507 no_space` (etcd's
    /// `--quota-backend-bytes`).
    public var quotaBackendBytes: Int

    public init(
        strategy: PersistenceStrategy = .diskFirst, flushPolicy: FlushPolicy = .defaultBatch,
        maxBufferedEntries: Int = 10_000, flushWorkers: Int = 4, quotaBackendBytes: Int = 8 << 30
    ) {
        self.strategy = strategy
        self.flushPolicy = flushPolicy
        self.maxBufferedEntries = maxBufferedEntries
        self.flushWorkers = flushWorkers
        self.quotaBackendBytes = quotaBackendBytes
    }
}

/// `[raft.snapshot]`: log compaction.
public struct SnapshotConfig: Sendable, Equatable {
    /// `enable`, default `true`. When `false` the log grows without bound.
    public var enable: Bool
    /// `max_log_entries_before_snapshot`, default 100000 (etcd's `snapshot-count`): applied entries since the last
    /// snapshot that trigger one (64 MiB of applied entry data triggers one sooner).
    public var maxLogEntriesBeforeSnapshot: Int
    /// `retained_log_entries`, default 1000: entries kept behind a snapshot so that slightly lagging followers
    /// catch up from the log instead of needing the snapshot.
    public var retainedLogEntries: Int
    /// `max_receive_bytes`, default 4 GiB: the largest snapshot image this node accepts from its leader in chunks
    /// (staged on disk while it arrives; a larger transfer is refused at its first chunk).
    public var maxReceiveBytes: Int

    public init(
        enable: Bool = true, maxLogEntriesBeforeSnapshot: Int = 100_000, retainedLogEntries: Int = 1000,
        maxReceiveBytes: Int = 4 << 30
    ) {
        self.enable = enable
        self.maxLogEntriesBeforeSnapshot = maxLogEntriesBeforeSnapshot
        self.retainedLogEntries = retainedLogEntries
        self.maxReceiveBytes = maxReceiveBytes
    }
}
