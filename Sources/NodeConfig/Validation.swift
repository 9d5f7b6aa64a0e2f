// MARK: - Cross-key rules

extension NodeConfig {
    /// The clock-drift allowance between the lease and the election timeout:
    /// `max(100 ms, 10% of election_timeout_min)`.
    ///
    /// A leader serves lease reads for `lease_duration_ms` after a quorum acknowledged it; followers will not
    /// elect a new leader before `election_timeout_min` of silence. Lease reads are safe only if the lease ends
    /// before that, measured on clocks that may run at slightly different rates and with message delays, hence
    /// `lease_duration_ms < election_timeout_min - leaseDriftMargin(electionTimeoutMin:)`.
    public static func leaseDriftMargin(electionTimeoutMin: Int) -> Int {
        max(100, electionTimeoutMin / 10)
    }

    /// The heartbeat must be at most this fraction of `election_timeout_min` (1/3), so that two heartbeats can be
    /// lost without a follower starting an election.
    public static let heartbeatsPerElectionTimeout = 3

    /// Checks the rules that involve more than one key (single-key ranges are checked while loading).
    ///
    /// - Parameter source: the name used as `SOURCE` in the error message.
    public func validate(source: String = "(config)") throws(ConfigError) {
        try validate(context: LoadContext(fileName: source))
    }

    /// The largest WAL record payload and peer frame (`WALRecord.maxPayload`, `PeerWire.defaultMaxFrameLength`; a
    /// test checks they agree): one log entry must fit both.
    public static let entryHardCap = 64 << 20
    /// Room for what surrounds a command's key and values in an entry, a WAL record and a peer frame.
    public static let entryFramingAllowance = 64 << 10

    /// The largest `max_value_bytes` that `max_key_bytes` allows: a compare-and-swap carries two values and a key,
    /// which with framing must fit one entry (`entryHardCap`).
    public static func maxValueBytesAllowed(maxKeyBytes: Int) -> Int {
        (entryHardCap - entryFramingAllowance - maxKeyBytes) / 2
    }

    func validate(context: LoadContext) throws(ConfigError) {
        try validateMembers(context: context)
        let allowed = Self.maxValueBytesAllowed(maxKeyBytes: raft.maxKeyBytes)
        if raft.maxValueBytes > allowed {
            throw context.error(
                .invalidValue, at: "raft.max_value_bytes",
                "\(raft.maxValueBytes) bytes is too large: a compare-and-swap carries two values and the key, which "
                    + "with framing (2 x max_value_bytes + max_key_bytes + 64 KiB) must fit one WAL record and one peer "
                    + "frame (64 MiB); at most \(allowed) with max_key_bytes = \(raft.maxKeyBytes)")
        }
        try validateNumbers(context: context)
        try validateTiming(context: context)
        try validateStorage(context: context)
        try validateSecurity(context: context)
    }

    /// TLS files all or none; without TLS, loopback addresses only unless `insecure = true`.
    private func validateSecurity(context: LoadContext) throws(ConfigError) {
        let files = [("ca_file", security.caFile), ("cert_file", security.certFile), ("key_file", security.keyFile)]
        let given = files.filter { $0.1 != nil }
        if !given.isEmpty, given.count < files.count {
            let missing = files.filter { $0.1 == nil }.map(\.0)
            throw context.error(
                .invalidValue, at: "security.\(missing[0])",
                "TLS needs ca_file, cert_file and key_file together; missing \(missing.joined(separator: ", "))")
        }
        for (key, value) in files + [("tokens_file", security.tokensFile)] where value?.isEmpty == true {
            throw context.error(.invalidValue, at: "security.\(key)", "must not be empty")
        }
        guard !security.tlsEnabled else { return }
        if security.requireClientCert {
            throw context.error(
                .invalidValue, at: "security.require_client_cert", "needs TLS (ca_file, cert_file and key_file)")
        }
        if security.tokensFile != nil {
            throw context.error(
                .invalidValue, at: "security.tokens_file",
                "needs TLS (ca_file, cert_file and key_file): bearer tokens are never sent in plaintext")
        }
        guard !security.insecure else { return }
        let binds = [("cluster.listen_address", cluster.listenAddress), ("monitoring.metrics_address", monitoring.metricsAddress)]
        for (key, address) in binds where !address.isLoopback {
            throw context.error(
                .invalidValue, at: key,
                "\(address) is not a loopback address: configure TLS ([security] ca_file, cert_file, key_file; "
                    + "`dctl certs init` makes them) or set [security] insecure = true to serve plaintext without "
                    + "authentication")
        }
    }

    /// Ranges that `load` checks per key, repeated here for configurations built in code.
    private func validateNumbers(context: LoadContext) throws(ConfigError) {
        let checks: [(String, Int, ClosedRange<Int>)] = [
            ("cluster.node_id", cluster.nodeID > UInt64(Int.max) ? Int.max : Int(cluster.nodeID), 1...Int.max),
            ("cluster.initial_cluster_size", cluster.initialClusterSize, 1...Int.max),
            ("cluster.request_timeout_ms", cluster.requestTimeoutMs, 1...Int.max),
            ("cluster.max_client_connections", cluster.maxClientConnections, 1...1_000_000),
            ("cluster.client_idle_timeout_ms", cluster.clientIdleTimeoutMs, 100...Int.max),
            ("cluster.client_header_timeout_ms", cluster.clientHeaderTimeoutMs, 100...Int.max),
            ("cluster.client_body_timeout_ms", cluster.clientBodyTimeoutMs, 100...Int.max),
            ("raft.max_value_bytes", raft.maxValueBytes, 1...(64 << 20)),
            ("raft.max_key_bytes", raft.maxKeyBytes, 1...65_536),
            ("raft.election.election_timeout_min", raft.election.electionTimeoutMin, 1...Int.max),
            ("raft.election.election_timeout_max", raft.election.electionTimeoutMax, 1...Int.max),
            (
                "raft.replication.rpc_append_entries_clock_in_ms", raft.replication.rpcAppendEntriesClockInMs,
                1...Int.max
            ),
            (
                "raft.replication.append_entries_max_entries_per_replication",
                raft.replication.appendEntriesMaxEntriesPerReplication, 1...Int.max
            ),
            ("raft.replication.max_inflight_messages", raft.replication.maxInflightMessages, 1...Int.max),
            ("raft.read_consistency.lease_duration_ms", raft.readConsistency.leaseDurationMs, 1...Int.max),
            ("raft.persistence.max_buffered_entries", raft.persistence.maxBufferedEntries, 1...Int.max),
            ("raft.persistence.flush_workers", raft.persistence.flushWorkers, 1...64),
            ("raft.snapshot.max_log_entries_before_snapshot", raft.snapshot.maxLogEntriesBeforeSnapshot, 1...Int.max),
            ("raft.snapshot.retained_log_entries", raft.snapshot.retainedLogEntries, 0...Int.max),
            ("raft.snapshot.max_receive_bytes", raft.snapshot.maxReceiveBytes, 1...Int.max),
            ("watch.history_entries", watch.historyEntries, 1...10_000_000),
            ("watch.history_bytes", watch.historyBytes, 1024...(1 << 40)),
            ("watch.buffer_bytes", watch.bufferBytes, 4096...(1 << 30)),
            ("watch.progress_interval_ms", watch.progressIntervalMs, 10...600_000),
        ]
        for (path, value, range) in checks where !range.contains(value) {
            throw context.error(.invalidValue, at: path, TableReader.rangeMessage(range, value))
        }
        if case .batch(let threshold, let interval) = raft.persistence.flushPolicy {
            if threshold < 1 {
                throw context.error(
                    .invalidValue, at: "raft.persistence.flush_policy",
                    "Batch threshold must be at least 1, got \(threshold)")
            }
            if interval < 1 {
                throw context.error(
                    .invalidValue, at: "raft.persistence.flush_policy",
                    "Batch interval_ms must be at least 1, got \(interval)")
            }
        }
        // A watch stream must hold one largest change, or a watcher of big values would be dropped at once.
        let largestChange = raft.maxValueBytes + raft.maxKeyBytes + (64 << 10)
        if watch.bufferBytes < largestChange {
            throw context.error(
                .invalidValue, at: "watch.buffer_bytes",
                "must be at least max_value_bytes + max_key_bytes + 65536 = \(largestChange), got \(watch.bufferBytes)")
        }
    }

    private func validateMembers(context: LoadContext) throws(ConfigError) {
        let members = cluster.initialCluster
        let path = "cluster.initial_cluster"
        guard !members.isEmpty else {
            throw context.error(.invalidValue, at: path, "must list at least this node (id \(cluster.nodeID))")
        }
        var firstIndexByID: [UInt64: Int] = [:]
        var firstIndexByAddress: [String: Int] = [:]
        for (index, member) in members.enumerated() {
            if let earlier = firstIndexByID[member.id] {
                throw context.error(
                    .invalidValue, at: "\(path)[\(index)].id", "duplicate id \(member.id) (also \(path)[\(earlier)])")
            }
            firstIndexByID[member.id] = index
            if let earlier = firstIndexByAddress[member.address.identityKey] {
                throw context.error(
                    .invalidValue, at: "\(path)[\(index)].address",
                    "duplicate address \(member.address): node \(members[earlier].id) already uses it")
            }
            firstIndexByAddress[member.address.identityKey] = index
            if member.role == .follower, member.status == .promotable {
                throw context.error(
                    .invalidValue, at: "\(path)[\(index)].status",
                    "a voter (role 1) must have status 2 (Active); status 1 (Promotable) is for learners (role 4)")
            }
        }
        guard let me = cluster.selfMember else {
            throw context.error(
                .invalidValue, at: "cluster.node_id",
                "node \(cluster.nodeID) is not listed in cluster.initial_cluster (ids: "
                    + members.map { String($0.id) }.joined(separator: ", ") + ")")
        }
        let voters = members.filter(\.isVoter).count
        guard voters > 0 else {
            throw context.error(.invalidValue, at: path, "has no voter: at least one member needs role = 1")
        }
        if cluster.initialClusterSize > voters {
            throw context.error(
                .invalidValue, at: "cluster.initial_cluster_size",
                "is \(cluster.initialClusterSize) but cluster.initial_cluster lists only \(voters) voter(s)")
        }
        if me.address.port != cluster.listenAddress.port {
            throw context.error(
                .invalidValue, at: "cluster.listen_address",
                "port \(cluster.listenAddress.port) differs from this node's initial_cluster address \(me.address)")
        }
        let metrics = monitoring.metricsAddress
        let listen = cluster.listenAddress
        let sameHost = metrics.identityKey == listen.identityKey || metrics.isWildcard || listen.isWildcard
        if metrics.port == listen.port, sameHost {
            throw context.error(
                .invalidValue, at: "monitoring.metrics_address",
                "\(metrics) collides with cluster.listen_address \(listen)")
        }
    }

    private func validateTiming(context: LoadContext) throws(ConfigError) {
        let election = raft.election
        if election.electionTimeoutMin >= election.electionTimeoutMax {
            throw context.error(
                .invalidValue, at: "raft.election.election_timeout_min",
                "must be less than election_timeout_max (\(election.electionTimeoutMin) >= "
                    + "\(election.electionTimeoutMax))")
        }
        let heartbeat = raft.replication.rpcAppendEntriesClockInMs
        let heartbeatLimit = election.electionTimeoutMin / Self.heartbeatsPerElectionTimeout
        if heartbeat > heartbeatLimit {
            throw context.error(
                .invalidValue, at: "raft.replication.rpc_append_entries_clock_in_ms",
                "heartbeat \(heartbeat) ms must be at most a third of election_timeout_min "
                    + "(\(election.electionTimeoutMin) ms), i.e. <= \(heartbeatLimit)")
        }
        let reads = raft.readConsistency
        guard reads.defaultPolicy == .lease || reads.allowClientOverride else { return }
        let margin = Self.leaseDriftMargin(electionTimeoutMin: election.electionTimeoutMin)
        let leaseLimit = election.electionTimeoutMin - margin
        if reads.leaseDurationMs >= leaseLimit {
            throw context.error(
                .invalidValue, at: "raft.read_consistency.lease_duration_ms",
                "\(reads.leaseDurationMs) ms is too long: must be below election_timeout_min "
                    + "(\(election.electionTimeoutMin)) minus a drift margin of \(margin) ms, i.e. < \(leaseLimit)")
        }
        if reads.leaseDurationMs < heartbeat {
            throw context.error(
                .invalidValue, at: "raft.read_consistency.lease_duration_ms",
                "\(reads.leaseDurationMs) ms is shorter than the heartbeat (rpc_append_entries_clock_in_ms = "
                    + "\(heartbeat)): the lease would lapse between renewals")
        }
    }

    private func validateStorage(context: LoadContext) throws(ConfigError) {
        if cluster.dbRootDir.isEmpty {
            throw context.error(.invalidValue, at: "cluster.db_root_dir", "must not be empty")
        }
        if cluster.logDir.isEmpty {
            throw context.error(.invalidValue, at: "cluster.log_dir", "must not be empty")
        }
        let persistence = raft.persistence
        if case .batch(let threshold, _) = persistence.flushPolicy, threshold > persistence.maxBufferedEntries {
            throw context.error(
                .invalidValue, at: "raft.persistence.flush_policy.Batch.threshold",
                "Batch threshold \(threshold) exceeds max_buffered_entries (\(persistence.maxBufferedEntries))")
        }
        let snapshot = raft.snapshot
        if snapshot.retainedLogEntries > snapshot.maxLogEntriesBeforeSnapshot {
            throw context.error(
                .invalidValue, at: "raft.snapshot.retained_log_entries",
                "\(snapshot.retainedLogEntries) exceeds max_log_entries_before_snapshot "
                    + "(\(snapshot.maxLogEntriesBeforeSnapshot))")
        }
    }
}
