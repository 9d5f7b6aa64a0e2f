import NodeConfig
import Testing

/// Each rule of docs/config.md "Validation", with the exact message a user sees.
@Suite struct ValidationTests {
    private func expectRejected(
        _ toml: String, _ expected: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let error = loadError(toml, sourceLocation: sourceLocation)
        #expect(error?.kind == .invalidValue, sourceLocation: sourceLocation)
        #expect(error?.description == expected, sourceLocation: sourceLocation)
    }

    // MARK: Identity and membership

    @Test func nodeIDZero() {
        expectRejected(
            base(replacing: "node_id = 1", with: "node_id = 0"), "test.toml: cluster.node_id: must be at least 1, got 0"
        )
    }

    @Test func negativeMemberID() {
        expectRejected(
            base(replacing: "{ id = 3,", with: "{ id = -3,"),
            "test.toml: cluster.initial_cluster[2].id: must be at least 1, got -3")
    }

    @Test func selfMissingFromInitialCluster() {
        expectRejected(
            base(replacing: "node_id = 1", with: "node_id = 7"),
            "test.toml: cluster.node_id: node 7 is not listed in cluster.initial_cluster (ids: 1, 2, 3)")
    }

    @Test func emptyInitialCluster() {
        let toml = "[cluster]\ninitial_cluster = []\n"
        expectRejected(toml, "test.toml: cluster.initial_cluster: must list at least this node (id 1)")
    }

    @Test func duplicateIDs() {
        expectRejected(
            base(replacing: "{ id = 3,", with: "{ id = 2,"),
            "test.toml: cluster.initial_cluster[2].id: duplicate id 2 (also cluster.initial_cluster[1])")
    }

    @Test func duplicateAddresses() {
        expectRejected(
            base(replacing: "address = \"0.0.0.0:9083\"", with: "address = \"0.0.0.0:9082\""),
            "test.toml: cluster.initial_cluster[2].address: duplicate address 0.0.0.0:9082: node 2 already uses it")
    }

    @Test func wildcardAndLoopbackAreTheSameAddress() {
        expectRejected(
            base(replacing: "address = \"0.0.0.0:9083\"", with: "address = \"localhost:9082\""),
            "test.toml: cluster.initial_cluster[2].address: duplicate address localhost:9082: node 2 already uses it")
    }

    @Test func voterCannotBePromotable() {
        expectRejected(
            base(
                replacing: "{ id = 3, address = \"0.0.0.0:9083\", role = 1, status = 2 }",
                with: "{ id = 3, address = \"0.0.0.0:9083\", role = 1, status = 1 }"),
            "test.toml: cluster.initial_cluster[2].status: a voter (role 1) must have status 2 (Active); "
                + "status 1 (Promotable) is for learners (role 4)")
    }

    @Test func clusterNeedsAVoter() {
        let toml = """
            [cluster]
            initial_cluster = [{ id = 1, address = "127.0.0.1:9081", role = 4, status = 1 }]
            """
        expectRejected(toml, "test.toml: cluster.initial_cluster: has no voter: at least one member needs role = 1")
    }

    @Test func initialClusterSizeBounds() throws {
        let one = try parse(base(replacing: "db_root_dir", with: "initial_cluster_size = 1\ndb_root_dir"))
        #expect(one.cluster.initialClusterSize == 1)
        #expect(one.cluster.bootstrapVoters.map(\.id) == [1])
        expectRejected(
            base(replacing: "db_root_dir", with: "initial_cluster_size = 4\ndb_root_dir"),
            "test.toml: cluster.initial_cluster_size: is 4 but cluster.initial_cluster lists only 3 voter(s)")
        expectRejected(
            base(replacing: "db_root_dir", with: "initial_cluster_size = 0\ndb_root_dir"),
            "test.toml: cluster.initial_cluster_size: must be at least 1, got 0")
    }

    @Test func listenPortMustMatchOwnEntry() {
        expectRejected(
            base(replacing: "listen_address = \"0.0.0.0:9081\"", with: "listen_address = \"0.0.0.0:9082\""),
            "test.toml: cluster.listen_address: port 9082 differs from this node's initial_cluster address 0.0.0.0:9081"
        )
    }

    // MARK: Addresses

    @Test(arguments: [
        ("9081", "expected host:port, got \"9081\""),
        (":9081", "host is empty in \":9081\""),
        ("0.0.0.0:0", "port must be 1-65535, got 0 in \"0.0.0.0:0\""),
        ("0.0.0.0:65536", "port must be 1-65535, got 65536 in \"0.0.0.0:65536\""),
        ("0.0.0.0:http", "expected a numeric port in \"0.0.0.0:http\""),
        ("0.0.0.0:", "expected a numeric port in \"0.0.0.0:\""),
        ("::1:9081", "IPv6 host must be in brackets, e.g. [::1]:9081, got \"::1:9081\""),
        ("my host:9081", "invalid host \"my host\" in \"my host:9081\""),
        ("[::1:9081", "unclosed '[' in \"[::1:9081\""),
    ])
    func badListenAddress(address: String, message: String) {
        expectRejected(
            base(replacing: "listen_address = \"0.0.0.0:9081\"", with: "listen_address = \"\(address)\""),
            "test.toml: cluster.listen_address: \(message)")
    }

    @Test func badMetricsAddress() {
        expectRejected(
            base(replacing: "\"0.0.0.0:8081\"", with: "\"0.0.0.0:99999\""),
            "test.toml: monitoring.metrics_address: port must be 1-65535, got 99999 in \"0.0.0.0:99999\"")
    }

    @Test func badPeerAddress() {
        expectRejected(
            base(replacing: "\"0.0.0.0:9083\"", with: "\"0.0.0.0\""),
            "test.toml: cluster.initial_cluster[2].address: expected host:port, got \"0.0.0.0\"")
    }

    @Test func metricsCannotShareTheListenPort() {
        expectRejected(
            base(replacing: "\"0.0.0.0:8081\"", with: "\"127.0.0.1:9081\""),
            "test.toml: monitoring.metrics_address: 127.0.0.1:9081 collides with cluster.listen_address 0.0.0.0:9081")
    }

    @Test func ipv6AddressesWork() throws {
        let toml = """
            [cluster]
            listen_address = "[::]:9081"
            [monitoring]
            metrics_address = "[::1]:8081"
            [security]
            insecure = true
            """
        let config = try parse(toml)
        #expect(config.cluster.listenAddress.host == "::")
        #expect(config.cluster.listenAddress.description == "[::]:9081")
        #expect(config.cluster.selfMember?.dialAddress.description == "127.0.0.1:9081")
        #expect(config.monitoring.metricsAddress.description == "[::1]:8081")
    }

    // MARK: Timing

    @Test func electionMinMustBeBelowMax() {
        expectRejected(
            base(replacing: "election_timeout_max = 2000", with: "election_timeout_max = 1000"),
            "test.toml: raft.election.election_timeout_min: must be less than election_timeout_max (1000 >= 1000)")
    }

    @Test func heartbeatMustBeWellBelowElectionTimeout() throws {
        _ = try parse(
            base(replacing: "rpc_append_entries_clock_in_ms = 100", with: "rpc_append_entries_clock_in_ms = 333"))
        expectRejected(
            base(replacing: "rpc_append_entries_clock_in_ms = 100", with: "rpc_append_entries_clock_in_ms = 334"),
            "test.toml: raft.replication.rpc_append_entries_clock_in_ms: heartbeat 334 ms must be at most a third "
                + "of election_timeout_min (1000 ms), i.e. <= 333")
    }

    @Test func driftMargin() {
        #expect(NodeConfig.leaseDriftMargin(electionTimeoutMin: 150) == 100)
        #expect(NodeConfig.leaseDriftMargin(electionTimeoutMin: 1000) == 100)
        #expect(NodeConfig.leaseDriftMargin(electionTimeoutMin: 5000) == 500)
    }

    @Test func leaseMustEndBeforeAnElectionCanStart() throws {
        _ = try parse(base(replacing: "lease_duration_ms = 500", with: "lease_duration_ms = 899"))
        expectRejected(
            base(replacing: "lease_duration_ms = 500", with: "lease_duration_ms = 900"),
            "test.toml: raft.read_consistency.lease_duration_ms: 900 ms is too long: must be below "
                + "election_timeout_min (1000) minus a drift margin of 100 ms, i.e. < 900")
    }

    @Test func leaseScalesWithLongElectionTimeouts() throws {
        let toml = base(
            replacing: "election_timeout_min = 1000\nelection_timeout_max = 2000",
            with: "election_timeout_min = 5000\nelection_timeout_max = 8000")
        _ = try parse(toml.replacingOccurrences(of: "lease_duration_ms = 500", with: "lease_duration_ms = 4499"))
        let error = loadError(
            toml.replacingOccurrences(of: "lease_duration_ms = 500", with: "lease_duration_ms = 4500"))
        #expect(error?.keyPath == "raft.read_consistency.lease_duration_ms")
        #expect(error?.message.contains("drift margin of 500 ms, i.e. < 4500") == true)
    }

    @Test func leaseMustOutlastTheHeartbeat() {
        expectRejected(
            base(replacing: "lease_duration_ms = 500", with: "lease_duration_ms = 50"),
            "test.toml: raft.read_consistency.lease_duration_ms: 50 ms is shorter than the heartbeat "
                + "(rpc_append_entries_clock_in_ms = 100): the lease would lapse between renewals")
    }

    @Test func leaseIsNotCheckedWhenLeaseReadsAreImpossible() throws {
        let toml = base(replacing: "default_policy = \"LeaseRead\"", with: "default_policy = \"LinearizableRead\"")
            .replacingOccurrences(of: "allow_client_override = true", with: "allow_client_override = false")
            .replacingOccurrences(of: "lease_duration_ms = 500", with: "lease_duration_ms = 5000")
        let config = try parse(toml)
        #expect(config.raft.readConsistency.defaultPolicy == .linearizable)
        #expect(!config.raft.readConsistency.allowClientOverride)
    }

    // MARK: Sizes

    @Test(arguments: [
        (
            "append_entries_max_entries_per_replication = 5000", "append_entries_max_entries_per_replication = 0",
            "raft.replication.append_entries_max_entries_per_replication: must be at least 1, got 0"
        ),
        (
            "max_buffered_entries = 10000", "max_buffered_entries = -1",
            "raft.persistence.max_buffered_entries: must be at least 1, got -1"
        ),
        ("flush_workers = 4", "flush_workers = 0", "raft.persistence.flush_workers: must be between 1 and 64, got 0"),
        ("flush_workers = 4", "flush_workers = 65", "raft.persistence.flush_workers: must be between 1 and 64, got 65"),
        (
            "threshold = 100", "threshold = 0",
            "raft.persistence.flush_policy.Batch.threshold: must be at least 1, got 0"
        ),
        (
            "interval_ms = 20", "interval_ms = 0",
            "raft.persistence.flush_policy.Batch.interval_ms: must be at least 1, got 0"
        ),
        (
            "max_log_entries_before_snapshot = 10000", "max_log_entries_before_snapshot = 0",
            "raft.snapshot.max_log_entries_before_snapshot: must be at least 1, got 0"
        ),
        (
            "retained_log_entries = 1000", "retained_log_entries = -5",
            "raft.snapshot.retained_log_entries: must be at least 0, got -5"
        ),
        (
            "election_timeout_min = 1000", "election_timeout_min = 0",
            "raft.election.election_timeout_min: must be at least 1, got 0"
        ),
        (
            "lease_duration_ms = 500", "lease_duration_ms = 0",
            "raft.read_consistency.lease_duration_ms: must be at least 1, got 0"
        ),
        (
            "[raft.election]", "[raft]\nmax_value_bytes = 0\n[raft.election]",
            "raft.max_value_bytes: must be between 1 and 67108864, got 0"
        ),
        (
            "[raft.election]", "[raft]\nmax_key_bytes = 70000\n[raft.election]",
            "raft.max_key_bytes: must be between 1 and 65536, got 70000"
        ),
        (
            "[raft.replication]", "[raft.replication]\nmax_inflight_messages = 0",
            "raft.replication.max_inflight_messages: must be at least 1, got 0"
        ),
        ("db_root_dir", "request_timeout_ms = 0\ndb_root_dir", "cluster.request_timeout_ms: must be at least 1, got 0"),
        (
            "db_root_dir", "max_client_connections = 0\ndb_root_dir",
            "cluster.max_client_connections: must be between 1 and 1000000, got 0"
        ),
        (
            "db_root_dir", "client_header_timeout_ms = 5\ndb_root_dir",
            "cluster.client_header_timeout_ms: must be at least 100, got 5"
        ),
    ])
    func sizesMustBePositive(old: String, new: String, message: String) {
        expectRejected(base(replacing: old, with: new), "test.toml: \(message)")
    }

    @Test func valueCapFitsOneEntryWithACompareAndSwap() {
        // 64 MiB passes the key's own range but not the entry cap: a CAS of two such values could never be written.
        expectRejected(
            base(replacing: "[raft.election]", with: "[raft]\nmax_value_bytes = 67108864\n[raft.election]"),
            "test.toml: raft.max_value_bytes: 67108864 bytes is too large: a compare-and-swap carries two values and "
                + "the key, which with framing (2 x max_value_bytes + max_key_bytes + 64 KiB) must fit one WAL record "
                + "and one peer frame (64 MiB); at most 33519616 with max_key_bytes = 4096")
        let largest = NodeConfig.maxValueBytesAllowed(maxKeyBytes: 4096)
        #expect(2 * largest + 4096 + NodeConfig.entryFramingAllowance <= NodeConfig.entryHardCap)
        #expect(
            (try? parse(
                base(replacing: "[raft.election]", with: "[raft]\nmax_value_bytes = \(largest)\n[raft.election]")
                    + "\n[watch]\nbuffer_bytes = \(largest + 8192 + 65536)\n"))
                != nil)
    }

    @Test func flushThresholdWithinBuffer() {
        expectRejected(
            base(replacing: "max_buffered_entries = 10000", with: "max_buffered_entries = 50"),
            "test.toml: raft.persistence.flush_policy.Batch.threshold: "
                + "Batch threshold 100 exceeds max_buffered_entries (50)"
        )
    }

    @Test func retainedWithinSnapshotThreshold() {
        expectRejected(
            base(replacing: "retained_log_entries = 1000", with: "retained_log_entries = 20000"),
            "test.toml: raft.snapshot.retained_log_entries: 20000 exceeds max_log_entries_before_snapshot (10000)")
    }

    @Test func emptyDirectories() {
        expectRejected(base(replacing: "\"./db/1\"", with: "\"\""), "test.toml: cluster.db_root_dir: must not be empty")
        expectRejected(base(replacing: "\"./logs/1\"", with: "\"\""), "test.toml: cluster.log_dir: must not be empty")
    }

    // MARK: Configurations built in code

    @Test func validateChecksConfigsBuiltInCode() throws {
        try NodeConfig().validate()
        var config = NodeConfig()
        config.raft.election.electionTimeoutMax = 500
        #expect {
            try config.validate()
        } throws: { error in
            (error as? ConfigError)?.description
                == "(config): raft.election.election_timeout_min: must be less than election_timeout_max (1000 >= 500)"
        }
        config = NodeConfig()
        config.raft.persistence.flushWorkers = 0
        #expect(throws: ConfigError.self) { try config.validate() }
        config = NodeConfig()
        config.raft.persistence.flushPolicy = .batch(threshold: 0, intervalMs: 5)
        #expect(throws: ConfigError.self) { try config.validate() }
    }
}
