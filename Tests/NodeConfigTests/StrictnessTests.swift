import NodeConfig
import Testing

/// Unknown keys, TOML syntax errors and wrong types are rejected with a message that locates them.
@Suite struct StrictnessTests {
    @Test func baseConfigLoads() throws {
        let config = try parse(baseTOML)
        #expect(config.cluster.initialCluster.count == 3)
    }

    // MARK: Unknown keys

    @Test(arguments: [
        ("[clustr]\nnode_id = 1\n", "test.toml: clustr: unknown key (did you mean cluster?)"),
        ("verbose = true\n", "test.toml: verbose: unknown key"),
        ("[cluster]\nnode = 1\n", "test.toml: cluster.node: unknown key"),
        ("[cluster]\nnodeid = 1\n", "test.toml: cluster.nodeid: unknown key (did you mean node_id?)"),
        ("[monitoring]\nport = 1\n", "test.toml: monitoring.port: unknown key"),
        ("[raft]\nmax_value_byte = 5\n", "test.toml: raft.max_value_byte: unknown key (did you mean max_value_bytes?)"),
        ("[raft.elction]\n", "test.toml: raft.elction: unknown key (did you mean election?)"),
        (
            "[raft.election]\nelecton_timeout_min = 800\n",
            "test.toml: raft.election.electon_timeout_min: unknown key (did you mean election_timeout_min?)"
        ),
        ("[raft.replication]\nheartbeat_ms = 10\n", "test.toml: raft.replication.heartbeat_ms: unknown key"),
        ("[raft.read_consistency]\nlease_ms = 10\n", "test.toml: raft.read_consistency.lease_ms: unknown key"),
        ("[raft.persistence]\nworkers = 2\n", "test.toml: raft.persistence.workers: unknown key"),
        (
            "[raft.persistence]\nflush_policy = { Batch = { treshold = 5 } }\n",
            "test.toml: raft.persistence.flush_policy.Batch.treshold: unknown key (did you mean threshold?)"
        ),
        ("[raft.snapshot]\nenabled = true\n", "test.toml: raft.snapshot.enabled: unknown key (did you mean enable?)"),
        (
            "[cluster]\ninitial_cluster = [{ id = 1, address = \"a:1\", rol = 1 }]\n",
            "test.toml: cluster.initial_cluster[0].rol: unknown key (did you mean role?)"
        ),
    ])
    func unknownKeyIsNamed(toml: String, expected: String) {
        let error = loadError(toml)
        #expect(error?.kind == .unknownKey)
        #expect(error?.description == expected)
    }

    @Test func unknownKeysAreReportedInSortedOrder() {
        let error = loadError("[cluster]\nzeta = 1\nalpha = 2\n")
        #expect(error?.keyPath == "cluster.alpha")
    }

    // MARK: Syntax

    @Test func syntaxErrorHasLineAndColumn() {
        let toml = "[cluster]\nnode_id = 1\nlisten_address = \"0.0.0.0:9081\n"
        let error = loadError(toml)
        #expect(error?.kind == .syntax)
        #expect(error?.line == 3)
        #expect(error?.column != nil)
        #expect(error?.description.hasPrefix("test.toml:3:") == true)
    }

    @Test func missingEqualsIsASyntaxError() throws {
        let error = try #require(loadError("[raft.election]\n\nelection_timeout_min 800\n"))
        #expect(error.kind == .syntax)
        #expect(error.line == 3)
        #expect(error.column == 22)
        #expect(error.description == "test.toml:3:22: Error while parsing key-value pair: expected '=', saw '8'")
    }

    @Test func duplicateKeyIsASyntaxError() {
        let error = loadError("[cluster]\nnode_id = 1\nnode_id = 2\n")
        #expect(error?.kind == .syntax)
        #expect(error?.line == 3)
        #expect(error?.description.hasPrefix("test.toml:3:11: ") == true)
        #expect(error?.message.contains("node_id") == true)
    }

    // MARK: Types

    @Test(arguments: [
        ("[cluster]\nnode_id = \"1\"\n", "test.toml: cluster.node_id: expected integer, got string"),
        ("[cluster]\nlisten_address = 9081\n", "test.toml: cluster.listen_address: expected string, got integer"),
        ("[cluster]\ninitial_cluster = 3\n", "test.toml: cluster.initial_cluster: expected array, got integer"),
        ("[cluster]\ninitial_cluster = [1]\n", "test.toml: cluster.initial_cluster[0]: expected table, got integer"),
        ("cluster = 1\n", "test.toml: cluster: expected table, got integer"),
        ("[raft]\nelection = \"fast\"\n", "test.toml: raft.election: expected table, got string"),
        (
            "[raft.election]\nelection_timeout_min = 1000.5\n",
            "test.toml: raft.election.election_timeout_min: expected integer, got float"
        ),
        (
            "[raft.read_consistency]\nallow_client_override = \"yes\"\n",
            "test.toml: raft.read_consistency.allow_client_override: expected boolean, got string"
        ),
        (
            "[raft.read_consistency]\nfollower_reads = 1\n",
            "test.toml: raft.read_consistency.follower_reads: expected boolean, got integer"
        ),
        ("[raft.snapshot]\nenable = 1\n", "test.toml: raft.snapshot.enable: expected boolean, got integer"),
        (
            "[raft.persistence]\nstrategy = 2024-01-01\n",
            "test.toml: raft.persistence.strategy: expected string, got date-time"
        ),
        (
            "[raft.persistence]\nflush_policy = 5\n",
            "test.toml: raft.persistence.flush_policy: expected string or table, got integer"
        ),
        (
            "[raft.persistence]\nflush_policy = { Batch = { threshold = \"many\" } }\n",
            "test.toml: raft.persistence.flush_policy.Batch.threshold: expected integer, got string"
        ),
        (
            "[cluster]\ninitial_cluster = [{ id = 1, address = \"a:1\", role = \"Follower\" }]\n",
            "test.toml: cluster.initial_cluster[0].role: expected integer, got string"
        ),
    ])
    func wrongTypeIsNamed(toml: String, expected: String) {
        let error = loadError(toml)
        #expect(error?.kind == .wrongType)
        #expect(error?.description == expected)
    }

    // MARK: Enumerated names

    @Test(arguments: [
        (
            "strategy = \"Memfirst\"",
            "test.toml: raft.persistence.strategy: unknown strategy \"Memfirst\": expected MemFirst or DiskFirst"
        ),
        (
            "flush_policy = { Bach = { threshold = 1 } }",
            "test.toml: raft.persistence.flush_policy: unknown flush policy \"Bach\": "
                + "expected \"Immediate\" or { Batch = { threshold = N, interval_ms = M } }"
        ),
        (
            "flush_policy = \"Never\"",
            "test.toml: raft.persistence.flush_policy: unknown flush policy \"Never\": "
                + "expected \"Immediate\" or { Batch = { threshold = N, interval_ms = M } }"
        ),
        (
            "flush_policy = { Batch = {}, Immediate = {} }",
            "test.toml: raft.persistence.flush_policy: must name exactly one policy: "
                + "expected \"Immediate\" or { Batch = { threshold = N, interval_ms = M } }"
        ),
    ])
    func unknownPersistenceNames(line: String, expected: String) {
        let error = loadError("[raft.persistence]\n\(line)\n")
        #expect(error?.kind == .invalidValue)
        #expect(error?.description == expected)
    }

    @Test func unknownReadPolicy() {
        let error = loadError(base(replacing: "\"LeaseRead\"", with: "\"lease\""))
        #expect(
            error?.description
                == "test.toml: raft.read_consistency.default_policy: unknown policy \"lease\": "
                + "expected LinearizableRead, LeaseRead, EventualConsistency")
    }

    @Test func flushPolicySpellings() throws {
        let immediate = try parse("[raft.persistence]\nflush_policy = \"Immediate\"\n")
        #expect(immediate.raft.persistence.flushPolicy == .immediate)
        let table = try parse("[raft.persistence]\nflush_policy = { Immediate = {} }\n")
        #expect(table.raft.persistence.flushPolicy == .immediate)
        let partial = try parse("[raft.persistence]\nflush_policy = { Batch = { interval_ms = 5 } }\n")
        #expect(partial.raft.persistence.flushPolicy == .batch(threshold: 100, intervalMs: 5))
        let lowercase = try parse("[raft.persistence]\nflush_policy = { batch = { threshold = 7 } }\n")
        #expect(lowercase.raft.persistence.flushPolicy == .batch(threshold: 7, intervalMs: 20))
    }

    @Test(arguments: [
        ("role = 2", "role 2 (Candidate) cannot be configured: a node starts as 1 (Follower) or 4 (Learner)"),
        ("role = 3", "role 3 (Leader) cannot be configured: a node starts as 1 (Follower) or 4 (Learner)"),
        ("role = 0", "unknown role 0: expected 1 (Follower) or 4 (Learner)"),
        ("status = 3", "unknown status 3: expected 1 (Promotable) or 2 (Active)"),
    ])
    func memberRoleAndStatusNumbers(field: String, message: String) {
        let toml = base(
            replacing: "{ id = 3, address = \"0.0.0.0:9083\", role = 1, status = 2 }",
            with: "{ id = 3, address = \"0.0.0.0:9083\", \(field) }")
        let error = loadError(toml)
        let key = field.hasPrefix("role") ? "role" : "status"
        #expect(error?.description == "test.toml: cluster.initial_cluster[2].\(key): \(message)")
    }

    @Test func memberNeedsIDAndAddress() {
        let noID = loadError("[cluster]\ninitial_cluster = [{ address = \"a:1\" }]\n")
        #expect(noID?.description == "test.toml: cluster.initial_cluster[0].id: required key is missing")
        let noAddress = loadError("[cluster]\ninitial_cluster = [{ id = 1 }]\n")
        #expect(noAddress?.description == "test.toml: cluster.initial_cluster[0].address: required key is missing")
    }

    @Test func arrayOfTablesSyntaxWorks() throws {
        let toml = """
            [cluster]
            node_id = 2
            listen_address = "127.0.0.1:9082"
            [[cluster.initial_cluster]]
            id = 1
            address = "127.0.0.1:9081"
            [[cluster.initial_cluster]]
            id = 2
            address = "127.0.0.1:9082"
            role = 4
            status = 1
            """
        let config = try parse(toml)
        #expect(config.cluster.initialCluster.map(\.id) == [1, 2])
        #expect(config.cluster.initialCluster[0].role == .follower)
        #expect(config.cluster.initialCluster[0].status == .active)
        #expect(config.cluster.selfMember?.role == .learner)
    }
}
