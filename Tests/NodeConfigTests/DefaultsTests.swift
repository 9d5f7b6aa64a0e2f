import ClusterAPI
import NodeConfig
import Testing

/// Every key has a default; an almost-empty file is a valid single-node configuration.
@Suite struct DefaultsTests {
    @Test func emptyFileIsASingleNodeCluster() throws {
        let config = try parse("")
        #expect(config == NodeConfig())
        #expect(config.cluster.nodeID == 1)
        #expect(config.cluster.listenAddress.description == "127.0.0.1:9081")
        #expect(
            config.cluster.initialCluster == [InitialMember(id: 1, address: HostPort(host: "127.0.0.1", port: 9081))])
        #expect(config.cluster.initialClusterSize == 1)
        #expect(config.cluster.dbRootDir == "./db/1")
        #expect(config.cluster.logDir == "./logs/1")
        #expect(config.cluster.requestTimeoutMs == 5000)
        #expect(config.monitoring.metricsAddress.description == "127.0.0.1:8081")
    }

    @Test func raftDefaults() throws {
        let raft = try parse("").raft
        #expect(raft.maxValueBytes == 1_048_576)
        #expect(raft.maxKeyBytes == 4096)
        #expect(raft.election.electionTimeoutMin == 1000)
        #expect(raft.election.electionTimeoutMax == 2000)
        #expect(raft.replication.rpcAppendEntriesClockInMs == 100)
        #expect(raft.replication.appendEntriesMaxEntriesPerReplication == 5000)
        #expect(raft.replication.maxInflightMessages == 256)
        #expect(raft.readConsistency.defaultPolicy == .lease)
        #expect(raft.readConsistency.leaseDurationMs == 500)
        #expect(raft.readConsistency.allowClientOverride)
        #expect(raft.persistence.strategy == .diskFirst)
        #expect(raft.persistence.flushPolicy == .batch(threshold: 100, intervalMs: 20))
        #expect(raft.persistence.maxBufferedEntries == 10_000)
        #expect(raft.persistence.flushWorkers == 4)
        #expect(raft.snapshot.enable)
        #expect(raft.snapshot.maxLogEntriesBeforeSnapshot == 100_000)
        #expect(raft.snapshot.retainedLogEntries == 1000)
        #expect(raft.snapshot.maxReceiveBytes == 4 << 30)
    }

    @Test func directoriesFollowTheNodeID() throws {
        let config = try parse("[cluster]\nnode_id = 3\nlisten_address = \"127.0.0.1:9083\"\n")
        #expect(config.cluster.dbRootDir == "./db/3")
        #expect(config.cluster.logDir == "./logs/3")
        #expect(config.cluster.selfMember?.address.port == 9083)
    }

    @Test func emptySectionsTakeDefaults() throws {
        let config = try parse("[cluster]\n[monitoring]\n[raft]\n[raft.election]\n[raft.snapshot]\n")
        #expect(config == NodeConfig())
    }

    @Test func defaultsFileLoadsWithoutPath() throws {
        #expect(try NodeConfig.load(path: nil, environment: [:]) == NodeConfig())
        let overridden = try NodeConfig.load(path: nil, environment: ["RAFT__RAFT__SNAPSHOT__ENABLE": "false"])
        #expect(!overridden.raft.snapshot.enable)
        let capped = try NodeConfig.load(path: nil, environment: ["RAFT__RAFT__SNAPSHOT__MAX_RECEIVE_BYTES": "1048576"])
        #expect(capped.raft.snapshot.maxReceiveBytes == 1 << 20)
        #expect(throws: ConfigError.self) {
            try NodeConfig.load(path: nil, environment: ["RAFT__RAFT__SNAPSHOT__MAX_RECEIVE_BYTES": "0"])
        }
    }

    @Test func errorDescriptionShapes() {
        let syntax = ConfigError(kind: .syntax, source: "f.toml", line: 3, column: 7, message: "bad")
        #expect(syntax.description == "f.toml:3:7: bad")
        let key = ConfigError(kind: .invalidValue, source: "f.toml", keyPath: "cluster.node_id", message: "bad")
        #expect(key.description == "f.toml: cluster.node_id: bad")
        let file = ConfigError(kind: .unreadable, source: "f.toml", message: "cannot read: no such file")
        #expect(file.description == "f.toml: cannot read: no such file")
        #expect(ConfigError.exitCode == 78)
    }

    @Test func hostPortParsing() {
        #expect(HostPort("0.0.0.0:9081") == HostPort(host: "0.0.0.0", port: 9081))
        #expect(HostPort("node-1.example.com:80")?.host == "node-1.example.com")
        #expect(HostPort("[::1]:9081")?.host == "::1")
        #expect(HostPort("[fe80::1]:1")?.description == "[fe80::1]:1")
        #expect(HostPort("0.0.0.0:0") == nil)
        #expect(HostPort("0.0.0.0") == nil)
        #expect(HostPort("[nothost]:1") == nil)
        #expect(HostPort("0.0.0.0:9081")?.dialAddress == HostPort(host: "127.0.0.1", port: 9081))
        #expect(HostPort("[::]:9081")?.dialAddress == HostPort(host: "127.0.0.1", port: 9081))
        #expect(HostPort("10.0.0.5:9081")?.dialAddress == HostPort(host: "10.0.0.5", port: 9081))
        #expect(HostPort("0.0.0.0:1")?.isWildcard == true)
        #expect(HostPort("127.0.0.1:1")?.isWildcard == false)
    }
}
