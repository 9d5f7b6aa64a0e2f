import Foundation
import NodeConfig
import Testing

/// The repository root, found from this file's path (Tests/NodeConfigTests/Support.swift).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().path

/// A valid three-node config for node 1, like the seed's n1.toml (0.0.0.0 addresses, hence `insecure = true`) but
/// written here so tests can edit it.
let baseTOML = """
    [cluster]
    node_id = 1
    listen_address = "0.0.0.0:9081"
    initial_cluster = [
      { id = 1, address = "0.0.0.0:9081", role = 1, status = 2 },
      { id = 2, address = "0.0.0.0:9082", role = 1, status = 2 },
      { id = 3, address = "0.0.0.0:9083", role = 1, status = 2 },
    ]
    db_root_dir = "./db/1"
    log_dir = "./logs/1"

    [monitoring]
    metrics_address = "0.0.0.0:8081"

    [raft.election]
    election_timeout_min = 1000
    election_timeout_max = 2000

    [raft.replication]
    rpc_append_entries_clock_in_ms = 100
    append_entries_max_entries_per_replication = 5000

    [raft.read_consistency]
    default_policy = "LeaseRead"
    lease_duration_ms = 500
    allow_client_override = true

    [raft.persistence]
    strategy = "MemFirst"
    flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }
    max_buffered_entries = 10000
    flush_workers = 4

    [raft.snapshot]
    enable = true
    max_log_entries_before_snapshot = 10000
    retained_log_entries = 1000

    [security]
    insecure = true
    """

/// `baseTOML` with one exact substring replaced; fails the test if the substring is not there.
func base(replacing old: String, with new: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    #expect(baseTOML.contains(old), "baseTOML has no \(old)", sourceLocation: sourceLocation)
    return baseTOML.replacingOccurrences(of: old, with: new)
}

/// Parses `text` as `test.toml`.
func parse(_ text: String, environment: [String: String] = [:]) throws(ConfigError) -> NodeConfig {
    try NodeConfig.parse(toml: text, source: "test.toml", environment: environment)
}

/// The error parsing `text` fails with, or `nil` (and a test failure) if it loads.
func loadError(
    _ text: String, environment: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation
) -> ConfigError? {
    do {
        _ = try parse(text, environment: environment)
        Issue.record("expected the config to be rejected", sourceLocation: sourceLocation)
        return nil
    } catch {
        #expect(error.exitCode == 78, sourceLocation: sourceLocation)
        return error
    }
}
