import Foundation
import NodeConfig

// MARK: - Endpoint

extension Endpoint {
    /// The address to dial for a config file's address (a wildcard host is 127.0.0.1).
    init(_ address: HostPort) {
        let dial = address.dialAddress
        self.init(host: dial.host, port: dial.port)
    }
}

// MARK: - Targets

/// One node `dctl` talks to: its client API endpoint and, when known, its metrics endpoint (`/status`).
public struct NodeTarget: Sendable, Hashable {
    /// From the node's config file, or learned from its `/status`; `nil` until then.
    public var id: UInt64?
    public var client: Endpoint
    public var metrics: Endpoint?

    public init(id: UInt64?, client: Endpoint, metrics: Endpoint?) {
        self.id = id
        self.client = client
        self.metrics = metrics
    }

    /// `node 2 (127.0.0.1:9082)` or `127.0.0.1:9082`: who, in messages.
    public var label: String { id.map { "node \($0) (\(client))" } ?? "\(client)" }
}

/// A node described by a config file of the config directory (`config/nN.toml`).
public struct LocalNode: Sendable {
    public var id: UInt64
    /// The config file, as found (`config/n1.toml`).
    public var configPath: String
    public var client: Endpoint
    public var metrics: Endpoint
    /// The node's own `initial_cluster` entry is a voter (role 1).
    public var isVoter: Bool
    /// The node's `[security]` section (TLS files, as paths relative to the current directory).
    public var security: SecurityConfig = SecurityConfig()
    /// The host of the node's `listen_address`, as written (for its certificate's names).
    public var listenHost: String = "127.0.0.1"

    public var target: NodeTarget { NodeTarget(id: id, client: client, metrics: metrics) }
}

/// Why endpoints could not be resolved; `dctl` exits 64 with it.
public struct EndpointError: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// How `dctl` decides which nodes to talk to (docs/dctl.md, "Endpoints").
public enum Discovery {
    /// The three local nodes of the example cluster, used when there is neither `--endpoints` nor a config dir.
    public static let defaultClientEndpoints = (1...3).map { Endpoint(host: "127.0.0.1", port: 9080 + $0) }
    public static let defaultMetricsEndpoints = (1...3).map { Endpoint(host: "127.0.0.1", port: 8080 + $0) }

    /// Every `nN.toml` of `directory`, by id. A file that does not load is reported in `problems` and skipped.
    public static func localNodes(in directory: String) -> (nodes: [LocalNode], problems: [String]) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return ([], []) }
        var nodes: [LocalNode] = []
        var problems: [String] = []
        let files = names.filter { name in
            name.hasPrefix("n") && name.hasSuffix(".toml") && UInt64(name.dropFirst().dropLast(5)) != nil
        }
        for name in files {
            let path = (directory as NSString).appendingPathComponent(name)
            do {
                let config = try NodeConfig.load(path: path, environment: [:])
                nodes.append(
                    LocalNode(
                        id: config.cluster.nodeID, configPath: path, client: Endpoint(config.cluster.listenAddress.dialAddress),
                        metrics: Endpoint(config.monitoring.metricsAddress.dialAddress),
                        isVoter: config.cluster.selfMember?.isVoter ?? true, security: config.security,
                        listenHost: config.cluster.listenAddress.host))
            } catch {
                problems.append("\(error)")
            }
        }
        return (nodes.sorted { $0.id < $1.id }, problems)
    }

    /// The targets of a command.
    ///
    /// - `endpoints` given (`--endpoints` or `DCTL_ENDPOINTS`): those client addresses, in order. The metrics
    ///   address of each comes from `metricsEndpoints` (same order and count), else from the config file whose
    ///   `listen_address` matches it; a node with neither has no metrics address (`status` refuses it).
    /// - otherwise: the voters of the config directory (a node whose own `initial_cluster` entry has role 1),
    ///   or, with no config file at all, 127.0.0.1:9081-9083 with metrics 8081-8083.
    public static func resolve(
        endpoints: [String]?, metricsEndpoints: [String]?, localNodes: [LocalNode]
    ) throws(EndpointError) -> [NodeTarget] {
        let metrics = try metricsEndpoints.map { list throws(EndpointError) in try parse(list, flag: "--metrics-endpoints") }
        guard let endpoints else {
            if metrics != nil {
                throw EndpointError(description: "--metrics-endpoints needs --endpoints (or DCTL_ENDPOINTS) in the same order")
            }
            let voters = localNodes.filter(\.isVoter)
            if !voters.isEmpty { return voters.map(\.target) }
            return zip(defaultClientEndpoints, defaultMetricsEndpoints).enumerated().map { index, pair in
                NodeTarget(id: UInt64(index + 1), client: pair.0, metrics: pair.1)
            }
        }
        let clients = try parse(endpoints, flag: "--endpoints")
        if let metrics, metrics.count != clients.count {
            throw EndpointError(
                description: "--metrics-endpoints lists \(metrics.count) addresses but --endpoints lists "
                    + "\(clients.count); give one metrics address per endpoint, in the same order")
        }
        return clients.enumerated().map { index, client in
            let local = localNodes.first { $0.client.identity == client.identity }
            return NodeTarget(id: local?.id, client: client, metrics: metrics?[index] ?? local?.metrics)
        }
    }

    /// Splits comma-separated lists and parses each address.
    static func parse(_ list: [String], flag: String) throws(EndpointError) -> [Endpoint] {
        let items = list.flatMap { $0.split(separator: ",") }.map { String($0) }.filter { !$0.isEmpty }
        guard !items.isEmpty else { throw EndpointError(description: "\(flag) is empty") }
        var result: [Endpoint] = []
        for item in items {
            guard let endpoint = Endpoint(parsing: item) else {
                throw EndpointError(description: "\(flag): \"\(item)\" is not host:port (e.g. 127.0.0.1:9081)")
            }
            if !result.contains(endpoint) { result.append(endpoint) }
        }
        return result
    }
}
