import ClusterAPI
import Foundation
import NodeConfig
import Testing

/// The shipped config/n1..n5.toml files load exactly as the README and Makefile expect.
@Suite struct ExampleFilesTests {
    @Test(arguments: 1...3)
    func votersLoad(node: Int) throws {
        let config = try NodeConfig.load(path: "\(repositoryRoot)/config/n\(node).toml", environment: [:])
        #expect(config.cluster.nodeID == UInt64(node))
        #expect(config.cluster.listenAddress == HostPort(host: "127.0.0.1", port: 9080 + node))
        #expect(config.monitoring.metricsAddress == HostPort(host: "127.0.0.1", port: 8080 + node))
        #expect(!config.security.tlsEnabled && !config.security.insecure)
        #expect(config.cluster.dbRootDir == "./db/\(node)")
        #expect(config.cluster.logDir == "./logs/\(node)")
        #expect(config.cluster.initialCluster.map(\.id) == [1, 2, 3])
        #expect(config.cluster.initialCluster.allSatisfy { $0.role == .follower && $0.status == .active })
        #expect(config.cluster.initialClusterSize == 3)
        #expect(config.cluster.bootstrapVoters.map(\.id) == [1, 2, 3])
        #expect(config.cluster.peers.map(\.id) == [1, 2, 3].filter { $0 != UInt64(node) })
        #expect(config.raft.election == ElectionConfig(electionTimeoutMin: 1000, electionTimeoutMax: 2000))
        #expect(config.raft.replication.rpcAppendEntriesClockInMs == 100)
        #expect(config.raft.replication.appendEntriesMaxEntriesPerReplication == 5000)
        #expect(config.raft.readConsistency == ReadConsistencyConfig(defaultPolicy: .lease, leaseDurationMs: 500))
        #expect(
            config.raft.persistence
                == PersistenceConfig(
                    strategy: .memFirst, flushPolicy: .batch(threshold: 100, intervalMs: 20),
                    maxBufferedEntries: 10_000,
                    flushWorkers: 4))
        #expect(config.raft.snapshot == SnapshotConfig())
    }

    @Test(arguments: 4...5)
    func learnersLoad(node: Int) throws {
        let config = try NodeConfig.load(path: "\(repositoryRoot)/config/n\(node).toml", environment: [:])
        #expect(config.cluster.nodeID == UInt64(node))
        #expect(config.cluster.listenAddress.port == 9080 + node)
        #expect(config.monitoring.metricsAddress.port == 8080 + node)
        #expect(config.cluster.dbRootDir == "./db/\(node)")
        #expect(config.cluster.selfMember?.role == .learner)
        #expect(config.cluster.selfMember?.status == .promotable)
        #expect(config.cluster.initialCluster.filter(\.isVoter).map(\.id) == [1, 2, 3])
        #expect(config.cluster.bootstrapVoters.map(\.id) == [1, 2, 3])
    }

    @Test(arguments: 1...3)
    func singleNodeBootstrapLoads(node: Int) throws {
        let config = try NodeConfig.load(path: "\(repositoryRoot)/config/single/n\(node).toml", environment: [:])
        #expect(config.cluster.nodeID == UInt64(node))
        #expect(config.cluster.initialClusterSize == 1)
        #expect(config.cluster.bootstrapVoters.map(\.id) == [1])
        #expect(config.cluster.initialCluster.map(\.id) == [1, 2, 3])
        #expect(config.cluster.dbRootDir == "./db/single/\(node)")
        #expect(config.cluster.listenAddress.port == 9080 + node)
    }

    @Test func peerAddressesDialLoopback() throws {
        let config = try NodeConfig.load(path: "\(repositoryRoot)/config/n1.toml", environment: [:])
        let dial = config.cluster.peers.map(\.dialAddress.description)
        #expect(dial == ["127.0.0.1:9082", "127.0.0.1:9083"])
        #expect(config.cluster.peers.map(\.address.description) == ["127.0.0.1:9082", "127.0.0.1:9083"])
    }

    /// config/secure/n1..n5.toml: the same cluster with TLS; each names its own certificate in certs/.
    @Test(arguments: 1...5)
    func secureFilesLoad(node: Int) throws {
        let config = try NodeConfig.load(path: "\(repositoryRoot)/config/secure/n\(node).toml", environment: [:])
        #expect(config.cluster.nodeID == UInt64(node))
        #expect(config.security.tlsEnabled)
        #expect(config.security.caFile == "certs/ca.crt")
        #expect(config.security.certFile == "certs/node.\(node).crt")
        #expect(config.security.keyFile == "certs/node.\(node).key")
        #expect(config.security.tokensFile == "certs/tokens")
        #expect(config.cluster.dbRootDir == "./db/secure/\(node)")
    }

    @Test func pathWithoutExtensionFindsTheFile() throws {
        let withExtension = try NodeConfig.load(path: "\(repositoryRoot)/config/n2.toml", environment: [:])
        let without = try NodeConfig.load(path: "\(repositoryRoot)/config/n2", environment: [:])
        #expect(without == withExtension)
        #expect(NodeConfig.resolvePath("\(repositoryRoot)/config/n2") == "\(repositoryRoot)/config/n2.toml")
    }

    @Test func configPathVariableIsHonoured() throws {
        let config = try NodeConfig.loadFromEnvironment(["CONFIG_PATH": "\(repositoryRoot)/config/n3"])
        #expect(config.cluster.nodeID == 3)
        #expect(try NodeConfig.loadFromEnvironment([:]) == NodeConfig())
    }

    @Test func missingFileIsUnreadable() {
        #expect {
            _ = try NodeConfig.load(path: "/nonexistent/n9", environment: [:])
        } throws: { error in
            let error = error as? ConfigError
            return error?.kind == .unreadable
                && error?.description == "/nonexistent/n9: cannot read: no such file (also tried /nonexistent/n9.toml)"
        }
    }

    @Test func directoryIsUnreadable() {
        #expect {
            _ = try NodeConfig.load(path: "\(repositoryRoot)/config", environment: [:])
        } throws: { error in
            (error as? ConfigError)?.description == "\(repositoryRoot)/config: cannot read: is a directory"
        }
    }

    @Test func fileErrorsNameTheFile() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("nodeconfig-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("bad.toml")
        try Data("[raft.election]\nelecton_timeout_min = 800\n".utf8).write(to: file)
        #expect {
            _ = try NodeConfig.load(path: directory.appendingPathComponent("bad").path, environment: [:])
        } throws: { error in
            (error as? ConfigError)?.description
                == "\(file.path): raft.election.electon_timeout_min: unknown key (did you mean election_timeout_min?)"
        }
    }
}
