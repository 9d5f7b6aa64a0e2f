import ClusterAPI
import Foundation
import TOMLKit

// MARK: - Entry points

extension NodeConfig {
    /// The environment variable naming the config file (`CONFIG_PATH=config/n1` or `config/n1.toml`).
    public static let pathVariable = "CONFIG_PATH"
    /// The prefix of override variables: `RAFT__CLUSTER__NODE_ID=2` sets `[cluster] node_id`.
    public static let overridePrefix = "RAFT__"
    /// The variable that replaces the port of `[monitoring] metrics_address`.
    public static let metricsPortVariable = "METRICS_PORT"

    /// Loads, overrides and validates a node configuration.
    ///
    /// - Parameters:
    ///   - path: the TOML file, with or without its `.toml` extension (`config/n1` finds `config/n1.toml`);
    ///     `nil` starts from the defaults, with no file.
    ///   - environment: `RAFT__SECTION__KEY=value` overrides and `METRICS_PORT` are applied on top of the file.
    /// - Throws: `ConfigError` (exit code 78) naming the file and line, or the key, or the variable at fault.
    public static func load(
        path: String?, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> NodeConfig {
        guard let path else {
            return try parse(toml: "", source: "(defaults)", environment: environment)
        }
        let resolved = resolvePath(path)
        return try parse(toml: try readFile(resolved, requested: path), source: resolved, environment: environment)
    }

    /// Loads the file named by `CONFIG_PATH`, or the defaults if it is unset or empty.
    public static func loadFromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ConfigError) -> NodeConfig {
        let path = environment[pathVariable].flatMap { $0.isEmpty ? nil : $0 }
        return try load(path: path, environment: environment)
    }

    /// The file `path` refers to: `path` itself if it exists, else `path.toml` if that exists, else `path`.
    public static func resolvePath(_ path: String) -> String {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        if files.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
            return path
        }
        if !path.hasSuffix(".toml"), files.fileExists(atPath: path + ".toml") {
            return path + ".toml"
        }
        return path
    }

    /// Parses TOML text as a config, applies `environment` overrides and validates.
    ///
    /// - Parameter source: the file name used in error messages.
    public static func parse(
        toml text: String, source: String, environment: [String: String] = [:]
    ) throws(ConfigError) -> NodeConfig {
        let context = LoadContext(fileName: source)
        var root: [String: RawNode]
        do {
            root = RawNode.entries(of: try TOMLTable(string: text), origin: .file)
        } catch let error as TOMLParseError {
            throw ConfigError(
                kind: .syntax, source: source, line: error.source.begin.line, column: error.source.begin.column,
                message: error.description)
        } catch {
            throw ConfigError(kind: .syntax, source: source, line: 1, column: 1, message: "\(error)")
        }
        try applyOverrides(environment, to: &root, context: context)
        var config = try decode(root, context: context)
        try applyMetricsPort(environment, to: &config, context: context)
        try config.validate(context: context)
        return config
    }

    /// The file's text, or an `unreadable` error.
    private static func readFile(_ path: String, requested: String) throws(ConfigError) -> String {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        guard files.fileExists(atPath: path, isDirectory: &isDirectory) else {
            let tried = path.hasSuffix(".toml") ? "" : " (also tried \(path).toml)"
            throw ConfigError(kind: .unreadable, source: requested, message: "cannot read: no such file\(tried)")
        }
        guard !isDirectory.boolValue else {
            throw ConfigError(kind: .unreadable, source: path, message: "cannot read: is a directory")
        }
        guard let data = files.contents(atPath: path) else {
            throw ConfigError(kind: .unreadable, source: path, message: "cannot read: permission denied")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(kind: .unreadable, source: path, message: "cannot read: not valid UTF-8")
        }
        return text
    }
}

// MARK: - Environment overrides

extension NodeConfig {
    /// The top-level tables of the file; an override path starting elsewhere is read below `[raft]`.
    static let sections = ["cluster", "monitoring", "raft", "security", "watch"]

    /// The key path an override variable sets, e.g. `RAFT__RAFT__ELECTION__ELECTION_TIMEOUT_MIN` ->
    /// `["raft", "election", "election_timeout_min"]`. Case-insensitive; `nil` if `name` is not an override.
    ///
    /// A path whose first part is not `cluster`, `monitoring` or `raft` is taken to be under `[raft]`, so
    /// `RAFT__ELECTION__ELECTION_TIMEOUT_MIN` is the short form of the same key.
    public static func overridePath(forVariable name: String) -> [String]? {
        guard name.uppercased().hasPrefix(overridePrefix) else { return nil }
        var parts = name.dropFirst(overridePrefix.count).components(separatedBy: "__").map { $0.lowercased() }
        if let first = parts.first, !first.isEmpty, !sections.contains(first) {
            parts.insert("raft", at: 0)
        }
        return parts
    }

    /// Writes every `RAFT__...` variable into the raw tree as text, to be typed when its key is read.
    static func applyOverrides(
        _ environment: [String: String], to root: inout [String: RawNode], context: LoadContext
    ) throws(ConfigError) {
        for name in environment.keys.sorted() {
            guard let path = overridePath(forVariable: name), let value = environment[name] else { continue }
            guard !path.isEmpty, !path.contains(where: \.isEmpty) else {
                throw ConfigError(
                    kind: .unknownKey, source: "env \(name)",
                    message: "malformed override name: expected RAFT__SECTION__KEY with non-empty parts")
            }
            try insert(
                RawNode(value: .text(value), origin: .environment(name)), at: path[...], into: &root, prefix: "",
                context: context)
        }
    }

    /// Sets `path` in `table` to `node`, creating tables as needed. Existing keys match case-insensitively.
    private static func insert(
        _ node: RawNode, at path: ArraySlice<String>, into table: inout [String: RawNode], prefix: String,
        context: LoadContext
    ) throws(ConfigError) {
        let part = path.first!
        let key =
            table.keys.first(where: { $0 == part }) ?? table.keys.first(where: { $0.lowercased() == part })
            ?? part
        let keyPath = prefix.isEmpty ? key : "\(prefix).\(key)"
        if path.count == 1 {
            table[key] = node
            return
        }
        var child: [String: RawNode]
        switch table[key]?.value {
        case nil:
            child = [:]
        case .table(let entries):
            child = entries
        case .some:
            let existing = table[key]!
            throw context.error(
                .wrongType, at: keyPath, origin: node.origin,
                "cannot set \(path.dropFirst().joined(separator: ".")) inside a \(existing.typeName)")
        }
        try insert(node, at: path.dropFirst(), into: &child, prefix: keyPath, context: context)
        table[key] = RawNode(value: .table(child), origin: table[key]?.origin ?? node.origin)
    }

    /// Applies `METRICS_PORT`, which replaces the port of `monitoring.metrics_address` (after any `RAFT__`
    /// override of the whole address).
    static func applyMetricsPort(
        _ environment: [String: String], to config: inout NodeConfig, context: LoadContext
    ) throws(ConfigError) {
        guard let text = environment[metricsPortVariable] else { return }
        let trimmed = text.trimmingWhitespace()
        guard let port = Int(trimmed), (1...65535).contains(port) else {
            throw ConfigError(
                kind: .invalidValue, source: "env \(metricsPortVariable)", keyPath: "monitoring.metrics_address",
                message: "expected a port 1-65535, got \"\(text)\"")
        }
        config.monitoring.metricsAddress.port = port
        context.override("monitoring.metrics_address", byEnvironment: metricsPortVariable)
    }
}

// MARK: - Schema

extension NodeConfig {
    /// Reads the raw tree against the schema: unknown keys, types, per-key ranges, defaults.
    static func decode(_ root: [String: RawNode], context: LoadContext) throws(ConfigError) -> NodeConfig {
        let top = TableReader(context: context, path: "", entries: root)
        try top.rejectUnknownKeys(known: sections)
        let cluster = try decodeCluster(try top.table("cluster"))
        let monitoring = try decodeMonitoring(try top.table("monitoring"))
        let raft = try decodeRaft(try top.table("raft"))
        let security = try decodeSecurity(try top.table("security"))
        let watch = try decodeWatch(try top.table("watch"))
        return NodeConfig(cluster: cluster, monitoring: monitoring, raft: raft, security: security, watch: watch)
    }

    private static func decodeWatch(_ table: TableReader) throws(ConfigError) -> WatchConfig {
        try table.rejectUnknownKeys(known: ["history_entries", "history_bytes", "buffer_bytes", "progress_interval_ms"])
        let defaults = WatchConfig()
        return WatchConfig(
            historyEntries: try table.integer("history_entries", default: defaults.historyEntries, in: 1...10_000_000),
            historyBytes: try table.integer("history_bytes", default: defaults.historyBytes, in: 1024...(1 << 40)),
            bufferBytes: try table.integer("buffer_bytes", default: defaults.bufferBytes, in: 4096...(1 << 30)),
            progressIntervalMs: try table.integer(
                "progress_interval_ms", default: defaults.progressIntervalMs, in: 10...600_000))
    }

    private static func decodeSecurity(_ table: TableReader) throws(ConfigError) -> SecurityConfig {
        try table.rejectUnknownKeys(known: [
            "insecure", "ca_file", "cert_file", "key_file", "require_client_cert", "tokens_file", "reload_interval_ms",
        ])
        let defaults = SecurityConfig()
        return SecurityConfig(
            insecure: try table.boolean("insecure", default: defaults.insecure),
            caFile: try table.optionalString("ca_file"), certFile: try table.optionalString("cert_file"),
            keyFile: try table.optionalString("key_file"),
            requireClientCert: try table.boolean("require_client_cert", default: defaults.requireClientCert),
            tokensFile: try table.optionalString("tokens_file"),
            reloadIntervalMs: try table.integer(
                "reload_interval_ms", default: defaults.reloadIntervalMs, in: 100...86_400_000))
    }

    private static func decodeCluster(_ table: TableReader) throws(ConfigError) -> ClusterConfig {
        try table.rejectUnknownKeys(known: [
            "node_id", "listen_address", "initial_cluster", "initial_cluster_size", "db_root_dir", "log_dir",
            "request_timeout_ms", "max_client_connections", "client_idle_timeout_ms", "client_header_timeout_ms",
            "client_body_timeout_ms",
        ])
        let defaults = ClusterConfig()
        let nodeID = UInt64(try table.integer("node_id", default: Int(defaults.nodeID), in: 1...Int.max))
        let listen = try table.address("listen_address", default: defaults.listenAddress)
        var members: [InitialMember]?
        if let node = table.entries["initial_cluster"] {
            let path = table.keyPath("initial_cluster")
            let elements = try table.nodes.array(node, at: path)
            var decoded: [InitialMember] = []
            for (index, element) in elements.enumerated() {
                decoded.append(try decodeMember(element, at: "\(path)[\(index)]", context: table.context))
            }
            members = decoded
        }
        return ClusterConfig(
            nodeID: nodeID, listenAddress: listen, initialCluster: members,
            initialClusterSize: try table.optionalInteger("initial_cluster_size", in: 1...Int.max),
            dbRootDir: try table.optionalString("db_root_dir"), logDir: try table.optionalString("log_dir"),
            requestTimeoutMs: try table.integer(
                "request_timeout_ms", default: defaults.requestTimeoutMs, in: 1...Int.max),
            maxClientConnections: try table.integer(
                "max_client_connections", default: defaults.maxClientConnections, in: 1...1_000_000),
            clientIdleTimeoutMs: try table.integer(
                "client_idle_timeout_ms", default: defaults.clientIdleTimeoutMs, in: 100...Int.max),
            clientHeaderTimeoutMs: try table.integer(
                "client_header_timeout_ms", default: defaults.clientHeaderTimeoutMs, in: 100...Int.max),
            clientBodyTimeoutMs: try table.integer(
                "client_body_timeout_ms", default: defaults.clientBodyTimeoutMs, in: 100...Int.max)
        )
    }

    private static func decodeMember(
        _ node: RawNode, at path: String, context: LoadContext
    ) throws(ConfigError) -> InitialMember {
        let table = TableReader(
            context: context, path: path, entries: try NodeReader(context: context).table(node, at: path))
        try table.rejectUnknownKeys(known: ["id", "address", "role", "status"])
        for required in ["id", "address"] where table.entries[required] == nil {
            throw context.error(
                .invalidValue, at: table.keyPath(required), origin: node.origin, "required key is missing")
        }
        let id = UInt64(try table.integer("id", default: 1, in: 1...Int.max))
        let address = try table.address("address", default: HostPort(host: "127.0.0.1", port: 1))
        let roleNumber = try table.integer("role", default: InitialRole.follower.rawValue, in: Int.min...Int.max)
        guard let role = InitialRole(rawValue: roleNumber) else {
            let message: String
            switch roleNumber {
            case 2, 3:
                let name = roleNumber == 2 ? "Candidate" : "Leader"
                message =
                    "role \(roleNumber) (\(name)) cannot be configured: a node starts as 1 (Follower) or 4 (Learner)"
            default:
                message = "unknown role \(roleNumber): expected 1 (Follower) or 4 (Learner)"
            }
            throw context.error(.invalidValue, at: table.keyPath("role"), message)
        }
        let statusNumber = try table.integer("status", default: InitialStatus.active.rawValue, in: Int.min...Int.max)
        guard let status = InitialStatus(rawValue: statusNumber) else {
            throw context.error(
                .invalidValue, at: table.keyPath("status"),
                "unknown status \(statusNumber): expected 1 (Promotable) or 2 (Active)")
        }
        return InitialMember(id: id, address: address, role: role, status: status)
    }

    private static func decodeMonitoring(_ table: TableReader) throws(ConfigError) -> MonitoringConfig {
        try table.rejectUnknownKeys(known: ["metrics_address"])
        return MonitoringConfig(
            metricsAddress: try table.address("metrics_address", default: MonitoringConfig().metricsAddress))
    }

    private static func decodeRaft(_ table: TableReader) throws(ConfigError) -> RaftConfig {
        try table.rejectUnknownKeys(known: [
            "max_value_bytes", "max_key_bytes", "election", "replication", "read_consistency", "persistence",
            "snapshot",
        ])
        let defaults = RaftConfig()
        return RaftConfig(
            maxValueBytes: try table.integer("max_value_bytes", default: defaults.maxValueBytes, in: 1...(64 << 20)),
            maxKeyBytes: try table.integer("max_key_bytes", default: defaults.maxKeyBytes, in: 1...65_536),
            election: try decodeElection(try table.table("election")),
            replication: try decodeReplication(try table.table("replication")),
            readConsistency: try decodeReadConsistency(try table.table("read_consistency")),
            persistence: try decodePersistence(try table.table("persistence")),
            snapshot: try decodeSnapshot(try table.table("snapshot"))
        )
    }

    private static func decodeElection(_ table: TableReader) throws(ConfigError) -> ElectionConfig {
        try table.rejectUnknownKeys(known: ["election_timeout_min", "election_timeout_max"])
        let defaults = ElectionConfig()
        return ElectionConfig(
            electionTimeoutMin: try table.integer(
                "election_timeout_min", default: defaults.electionTimeoutMin, in: 1...Int.max),
            electionTimeoutMax: try table.integer(
                "election_timeout_max", default: defaults.electionTimeoutMax, in: 1...Int.max)
        )
    }

    private static func decodeReplication(_ table: TableReader) throws(ConfigError) -> ReplicationConfig {
        try table.rejectUnknownKeys(known: [
            "rpc_append_entries_clock_in_ms", "append_entries_max_entries_per_replication", "max_inflight_messages",
        ])
        let defaults = ReplicationConfig()
        return ReplicationConfig(
            rpcAppendEntriesClockInMs: try table.integer(
                "rpc_append_entries_clock_in_ms", default: defaults.rpcAppendEntriesClockInMs, in: 1...Int.max),
            appendEntriesMaxEntriesPerReplication: try table.integer(
                "append_entries_max_entries_per_replication", default: defaults.appendEntriesMaxEntriesPerReplication,
                in: 1...Int.max),
            maxInflightMessages: try table.integer(
                "max_inflight_messages", default: defaults.maxInflightMessages, in: 1...Int.max)
        )
    }

    private static func decodeReadConsistency(_ table: TableReader) throws(ConfigError) -> ReadConsistencyConfig {
        try table.rejectUnknownKeys(known: ["default_policy", "lease_duration_ms", "allow_client_override", "follower_reads"])
        let defaults = ReadConsistencyConfig()
        var policy = defaults.defaultPolicy
        if let name = try table.optionalString("default_policy") {
            guard let parsed = ReadConsistency.allCases.first(where: { $0.configName == name }) else {
                let names = ReadConsistency.allCases.map(\.configName).joined(separator: ", ")
                throw table.context.error(
                    .invalidValue, at: table.keyPath("default_policy"), "unknown policy \"\(name)\": expected \(names)")
            }
            policy = parsed
        }
        return ReadConsistencyConfig(
            defaultPolicy: policy,
            leaseDurationMs: try table.integer("lease_duration_ms", default: defaults.leaseDurationMs, in: 1...Int.max),
            allowClientOverride: try table.boolean("allow_client_override", default: defaults.allowClientOverride),
            followerReads: try table.boolean("follower_reads", default: defaults.followerReads)
        )
    }

    private static func decodePersistence(_ table: TableReader) throws(ConfigError) -> PersistenceConfig {
        try table.rejectUnknownKeys(
            known: ["strategy", "flush_policy", "max_buffered_entries", "flush_workers", "quota_backend_bytes"])
        let defaults = PersistenceConfig()
        var strategy = defaults.strategy
        if let name = try table.optionalString("strategy") {
            guard let parsed = PersistenceStrategy(rawValue: name) else {
                throw table.context.error(
                    .invalidValue, at: table.keyPath("strategy"),
                    "unknown strategy \"\(name)\": expected MemFirst or DiskFirst")
            }
            strategy = parsed
        }
        var flushPolicy = defaults.flushPolicy
        if let node = table.entries["flush_policy"] {
            flushPolicy = try decodeFlushPolicy(node, at: table.keyPath("flush_policy"), context: table.context)
        }
        return PersistenceConfig(
            strategy: strategy, flushPolicy: flushPolicy,
            maxBufferedEntries: try table.integer(
                "max_buffered_entries", default: defaults.maxBufferedEntries, in: 1...Int.max),
            flushWorkers: try table.integer("flush_workers", default: defaults.flushWorkers, in: 1...64),
            quotaBackendBytes: try table.integer(
                "quota_backend_bytes", default: defaults.quotaBackendBytes, in: (1 << 20)...Int.max)
        )
    }

    /// `"Immediate"`, `{ Immediate = {} }` or `{ Batch = { threshold = N, interval_ms = M } }` (variant names
    /// match case-insensitively, so that environment overrides, which are lower-cased, can reach them).
    private static func decodeFlushPolicy(
        _ node: RawNode, at path: String, context: LoadContext
    ) throws(ConfigError) -> FlushPolicy {
        let expected = "expected \"Immediate\" or { Batch = { threshold = N, interval_ms = M } }"
        let reader = NodeReader(context: context)
        var value = node
        if case .text(let text) = node.value {
            let trimmed = text.trimmingWhitespace()
            value =
                trimmed.hasPrefix("{")
                ? try reader.inline(node, expected: "table", at: path)
                : RawNode(value: .string(trimmed), origin: node.origin)
        }
        context.record(path, value.origin)
        switch value.value {
        case .string(let name):
            guard name.lowercased() == "immediate" else {
                throw context.error(
                    .invalidValue, at: path, origin: node.origin, "unknown flush policy \"\(name)\": \(expected)")
            }
            return .immediate
        case .table(let entries):
            guard entries.count == 1, let variant = entries.keys.first else {
                throw context.error(
                    .invalidValue, at: path, origin: node.origin, "must name exactly one policy: \(expected)")
            }
            let variantPath = "\(path).\(variant)"
            let body = TableReader(
                context: context, path: variantPath, entries: try reader.table(entries[variant]!, at: variantPath))
            switch variant.lowercased() {
            case "immediate":
                try body.rejectUnknownKeys(known: [])
                return .immediate
            case "batch":
                try body.rejectUnknownKeys(known: ["threshold", "interval_ms"])
                guard case .batch(let threshold, let interval) = FlushPolicy.defaultBatch else { return .defaultBatch }
                return .batch(
                    threshold: try body.integer("threshold", default: threshold, in: 1...Int.max),
                    intervalMs: try body.integer("interval_ms", default: interval, in: 1...Int.max))
            default:
                throw context.error(
                    .invalidValue, at: path, origin: entries[variant]!.origin,
                    "unknown flush policy \"\(variant)\": \(expected)")
            }
        default:
            throw reader.mismatch(value, expected: "string or table", at: path)
        }
    }

    private static func decodeSnapshot(_ table: TableReader) throws(ConfigError) -> SnapshotConfig {
        try table.rejectUnknownKeys(
            known: ["enable", "max_log_entries_before_snapshot", "retained_log_entries", "max_receive_bytes"])
        let defaults = SnapshotConfig()
        return SnapshotConfig(
            enable: try table.boolean("enable", default: defaults.enable),
            maxLogEntriesBeforeSnapshot: try table.integer(
                "max_log_entries_before_snapshot", default: defaults.maxLogEntriesBeforeSnapshot, in: 1...Int.max),
            retainedLogEntries: try table.integer(
                "retained_log_entries", default: defaults.retainedLogEntries, in: 0...Int.max),
            maxReceiveBytes: try table.integer("max_receive_bytes", default: defaults.maxReceiveBytes, in: 1...Int.max)
        )
    }
}
