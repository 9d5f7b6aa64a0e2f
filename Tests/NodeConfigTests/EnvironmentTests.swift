import NodeConfig
import Testing

/// `RAFT__SECTION__KEY=value` and `METRICS_PORT` overrides.
@Suite struct EnvironmentTests {
    @Test func overridePathMapping() {
        #expect(NodeConfig.overridePath(forVariable: "RAFT__CLUSTER__NODE_ID") == ["cluster", "node_id"])
        #expect(
            NodeConfig.overridePath(forVariable: "RAFT__RAFT__ELECTION__ELECTION_TIMEOUT_MIN")
                == ["raft", "election", "election_timeout_min"])
        #expect(
            NodeConfig.overridePath(forVariable: "RAFT__ELECTION__ELECTION_TIMEOUT_MIN")
                == ["raft", "election", "election_timeout_min"])
        #expect(
            NodeConfig.overridePath(forVariable: "raft__monitoring__metrics_address") == [
                "monitoring", "metrics_address",
            ])
        #expect(NodeConfig.overridePath(forVariable: "RAFT_LOG") == nil)
        #expect(NodeConfig.overridePath(forVariable: "PATH") == nil)
    }

    @Test func integerOverride() throws {
        let toml = base(replacing: "node_id = 1", with: "node_id = 1")
            .replacingOccurrences(of: "listen_address = \"0.0.0.0:9081\"", with: "listen_address = \"0.0.0.0:9082\"")
        let config = try parse(toml, environment: ["RAFT__CLUSTER__NODE_ID": "2"])
        #expect(config.cluster.nodeID == 2)
    }

    @Test func nestedOverridesBothSpellings() throws {
        let long = try parse(baseTOML, environment: ["RAFT__RAFT__ELECTION__ELECTION_TIMEOUT_MIN": "800"])
        #expect(long.raft.election.electionTimeoutMin == 800)
        let short = try parse(baseTOML, environment: ["RAFT__ELECTION__ELECTION_TIMEOUT_MIN": "800"])
        #expect(short.raft.election.electionTimeoutMin == 800)
        let lower = try parse(baseTOML, environment: ["raft__raft__election__election_timeout_max": "3000"])
        #expect(lower.raft.election.electionTimeoutMax == 3000)
    }

    @Test func overridesOfEveryType() throws {
        let config = try parse(
            baseTOML,
            environment: [
                "RAFT__CLUSTER__DB_ROOT_DIR": "/var/lib/d/1",
                "RAFT__RAFT__READ_CONSISTENCY__ALLOW_CLIENT_OVERRIDE": "FALSE",
                "RAFT__RAFT__READ_CONSISTENCY__DEFAULT_POLICY": "LinearizableRead",
                "RAFT__RAFT__PERSISTENCE__STRATEGY": "DiskFirst",
                "RAFT__RAFT__PERSISTENCE__FLUSH_POLICY__BATCH__THRESHOLD": " 50 ",
                "RAFT__RAFT__SNAPSHOT__MAX_LOG_ENTRIES_BEFORE_SNAPSHOT": "20_000",
                "RAFT__RAFT__MAX_VALUE_BYTES": "2048",
            ])
        #expect(config.cluster.dbRootDir == "/var/lib/d/1")
        #expect(!config.raft.readConsistency.allowClientOverride)
        #expect(config.raft.readConsistency.defaultPolicy == .linearizable)
        #expect(config.raft.persistence.strategy == .diskFirst)
        #expect(config.raft.persistence.flushPolicy == .batch(threshold: 50, intervalMs: 20))
        #expect(config.raft.snapshot.maxLogEntriesBeforeSnapshot == 20_000)
        #expect(config.raft.maxValueBytes == 2048)
    }

    @Test func overridesCreateMissingSections() throws {
        let config = try parse("", environment: ["RAFT__RAFT__REPLICATION__MAX_INFLIGHT_MESSAGES": "8"])
        #expect(config.raft.replication.maxInflightMessages == 8)
    }

    @Test func inlineTOMLOverrides() throws {
        let members = #"[{ id = 1, address = "127.0.0.1:9081" }, { id = 9, address = "127.0.0.1:9089", role = 4 }]"#
        let config = try parse(
            "",
            environment: [
                "RAFT__CLUSTER__INITIAL_CLUSTER": members,
                "RAFT__RAFT__PERSISTENCE__FLUSH_POLICY": "{ Batch = { threshold = 9, interval_ms = 3 } }",
            ])
        #expect(config.cluster.initialCluster.map(\.id) == [1, 9])
        #expect(config.cluster.initialCluster[1].role == .learner)
        #expect(config.raft.persistence.flushPolicy == .batch(threshold: 9, intervalMs: 3))
        let immediate = try parse(baseTOML, environment: ["RAFT__RAFT__PERSISTENCE__FLUSH_POLICY": "Immediate"])
        #expect(immediate.raft.persistence.flushPolicy == .immediate)
    }

    @Test(arguments: [
        ("RAFT__CLUSTER__NODE_ID", "two", "env RAFT__CLUSTER__NODE_ID: cluster.node_id: expected integer, got \"two\""),
        (
            "RAFT__RAFT__SNAPSHOT__ENABLE", "yes",
            "env RAFT__RAFT__SNAPSHOT__ENABLE: raft.snapshot.enable: expected boolean, got \"yes\""
        ),
        (
            "RAFT__CLUSTER__INITIAL_CLUSTER", "[{ id = 1",
            "env RAFT__CLUSTER__INITIAL_CLUSTER: cluster.initial_cluster: expected array written as a TOML inline "
                + "value, got \"[{ id = 1\""
        ),
        (
            "RAFT__CLUSTER__INITIAL_CLUSTER", "7",
            "env RAFT__CLUSTER__INITIAL_CLUSTER: cluster.initial_cluster: expected array, got \"7\""
        ),
        (
            "RAFT__RAFT__ELECTION", "fast",
            "env RAFT__RAFT__ELECTION: raft.election: expected table written as a TOML inline value, got \"fast\""
        ),
        (
            "RAFT__CLUSTER__NODE_ID__X", "1",
            "env RAFT__CLUSTER__NODE_ID__X: cluster.node_id: cannot set x inside a integer"
        ),
    ])
    func typeErrorsNameTheVariable(name: String, value: String, expected: String) {
        let error = loadError(baseTOML, environment: [name: value])
        #expect(error?.kind == .wrongType)
        #expect(error?.description == expected)
    }

    @Test func unknownOverrideNamesTheVariable() {
        let error = loadError(baseTOML, environment: ["RAFT__CLUSTER__NODEID": "2"])
        #expect(error?.kind == .unknownKey)
        #expect(error?.description == "env RAFT__CLUSTER__NODEID: cluster.nodeid: unknown key (did you mean node_id?)")
        let section = loadError(baseTOML, environment: ["RAFT__BOGUS__KEY": "1"])
        #expect(section?.description == "env RAFT__BOGUS__KEY: raft.bogus: unknown key")
        let malformed = loadError(baseTOML, environment: ["RAFT__CLUSTER____NODE_ID": "2"])
        #expect(malformed?.source == "env RAFT__CLUSTER____NODE_ID")
        #expect(malformed?.kind == .unknownKey)
    }

    @Test func validationBlamesTheOverride() {
        let zero = loadError(baseTOML, environment: ["RAFT__CLUSTER__NODE_ID": "0"])
        #expect(zero?.description == "env RAFT__CLUSTER__NODE_ID: cluster.node_id: must be at least 1, got 0")
        let missing = loadError(baseTOML, environment: ["RAFT__CLUSTER__NODE_ID": "8"])
        #expect(missing?.source == "env RAFT__CLUSTER__NODE_ID")
        #expect(missing?.keyPath == "cluster.node_id")
        let lease = loadError(baseTOML, environment: ["RAFT__RAFT__READ_CONSISTENCY__LEASE_DURATION_MS": "950"])
        #expect(lease?.source == "env RAFT__RAFT__READ_CONSISTENCY__LEASE_DURATION_MS")
        #expect(lease?.keyPath == "raft.read_consistency.lease_duration_ms")
    }

    @Test func environmentWinsOverTheFile() throws {
        let config = try parse(baseTOML, environment: ["RAFT__RAFT__PERSISTENCE__FLUSH_WORKERS": "2"])
        #expect(config.raft.persistence.flushWorkers == 2)
        #expect(try parse(baseTOML).raft.persistence.flushWorkers == 4)
    }

    @Test func unrelatedVariablesAreIgnored() throws {
        let config = try parse(baseTOML, environment: ["RAFT_LOG": "x", "HOME": "/root", "LOG_LEVEL": "debug"])
        #expect(config == (try parse(baseTOML)))
    }

    // MARK: METRICS_PORT

    @Test func metricsPortReplacesThePort() throws {
        let config = try parse(baseTOML, environment: ["METRICS_PORT": "9191"])
        #expect(config.monitoring.metricsAddress == HostPort(host: "0.0.0.0", port: 9191))
    }

    @Test func metricsPortAppliesAfterAddressOverride() throws {
        let config = try parse(
            baseTOML,
            environment: ["RAFT__MONITORING__METRICS_ADDRESS": "127.0.0.2:7000", "METRICS_PORT": "7001"])
        #expect(config.monitoring.metricsAddress.description == "127.0.0.2:7001")
    }

    @Test(arguments: ["0", "65536", "http", ""])
    func badMetricsPort(value: String) {
        let error = loadError(baseTOML, environment: ["METRICS_PORT": value])
        #expect(
            error?.description
                == "env METRICS_PORT: monitoring.metrics_address: expected a port 1-65535, got \"\(value)\"")
    }

    @Test func metricsPortCollisionBlamesTheVariable() {
        let error = loadError(baseTOML, environment: ["METRICS_PORT": "9081"])
        #expect(error?.source == "env METRICS_PORT")
        #expect(error?.keyPath == "monitoring.metrics_address")
    }
}
