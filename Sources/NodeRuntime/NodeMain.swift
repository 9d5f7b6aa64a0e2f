import ClusterAPI
import Foundation
import HTTPAPI
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import NodeConfig
import PeerTransport
import RaftCore
import RaftStorage

/// Receives from the peer transport and hands over to the Raft loop; serves requests tunnelled by followers.
final class TransportAdapter: PeerTransportHandler, Sendable {
    let raft: RaftServer
    let tunnelled: TunnelledRequestProcessor

    init(raft: RaftServer, tunnelled: TunnelledRequestProcessor) {
        self.raft = raft
        self.tunnelled = tunnelled
    }

    func received(_ message: Message, snapshotData: [UInt8]?) { raft.receive(message, snapshotData: snapshotData) }
    func peerUnreachable(_ id: NodeID) { raft.peerUnreachable(id) }

    func handleForwarded(_ request: TunnelledRequest, on eventLoop: EventLoop)
        -> EventLoopFuture<TunnelledResponse>
    {
        tunnelled.process(
            method: request.method, uri: request.uri, headers: request.headers, body: request.body, on: eventLoop)
            .map { status, headers, body in
                TunnelledResponse(status: status, headers: headers, body: body)
            }
    }
}

/// Runs one cluster member until SIGTERM or SIGINT.
public enum NodeMain {
    public static func run(arguments: [String], environment: [String: String]) -> Int32 {
        // Signals are handled by a dispatch source below; children of test harnesses may inherit a blocked mask.
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        signal(SIGPIPE, SIG_IGN)

        var configPath: String? = environment["CONFIG_PATH"]
        var i = 1
        while i < arguments.count {
            switch arguments[i] {
            case "--config", "-c":
                guard i + 1 < arguments.count else {
                    FileHandle.standardError.write(Data("dnode: --config needs a file\n".utf8))
                    return 64
                }
                configPath = arguments[i + 1]
                i += 2
            case "--help", "-h":
                print(
                    """
                    usage: dnode [--config FILE]    (or CONFIG_PATH=config/n1 dnode)
                    Runs one member of the replicated key-value store. See README.md and docs/config.md.
                    Environment: CONFIG_PATH, RAFT__SECTION__KEY=value overrides, METRICS_PORT, LOG_LEVEL.
                    """)
                return 0
            case "--version":
                print("dnode \(dnodeVersion)")
                return 0
            default:
                FileHandle.standardError.write(Data("dnode: unknown argument \(arguments[i]) (try --help)\n".utf8))
                return 64
            }
        }
        let config: NodeConfig
        do {
            config = try NodeConfig.load(path: configPath, environment: environment)
        } catch {
            FileHandle.standardError.write(Data("dnode: \(error)\n".utf8))
            return Int32(ConfigError.exitCode)
        }
        let levelName = environment["LOG_LEVEL"] ?? "warn"
        guard let level = NodeLog.Level(name: levelName) else {
            FileHandle.standardError.write(Data("dnode: LOG_LEVEL=\(levelName): use trace, debug, info, warn or error\n".utf8))
            return Int32(ConfigError.exitCode)
        }
        do {
            return try start(config: config, level: level)
        } catch let error as NodeStartupError {
            FileHandle.standardError.write(Data("dnode: \(error.message)\n".utf8))
            return error.exitCode
        } catch {
            FileHandle.standardError.write(Data("dnode: \(error)\n".utf8))
            return 1
        }
    }

    static func start(config: NodeConfig, level: NodeLog.Level) throws -> Int32 {
        let log = try NodeLog(directory: config.cluster.logDir, level: level)
        let id = config.cluster.nodeID
        let security = try NodeSecurityWiring(config: config, log: log)
        let storage: DataDirectory.Opened
        do {
            storage = try DataDirectory.open(
                path: config.cluster.dbRootDir, nodeID: id, retainSnapshots: 3)
        } catch {
            throw NodeStartupError("cannot open the data directory \(config.cluster.dbRootDir): \(error)", exitCode: 73)
        }

        var raftConfig = RaftCore.RaftConfig(
            id: id,
            initialMembership: Membership(
                voters: Set(config.cluster.bootstrapVoters.map(\.id)),
                learners: Set(config.cluster.initialCluster.filter { !$0.isVoter }.map(\.id))))
        raftConfig.electionTimeoutMin = UInt64(config.raft.election.electionTimeoutMin)
        raftConfig.electionTimeoutMax = UInt64(config.raft.election.electionTimeoutMax)
        raftConfig.heartbeatInterval = UInt64(config.raft.replication.rpcAppendEntriesClockInMs)
        raftConfig.maxEntriesPerMessage = config.raft.replication.appendEntriesMaxEntriesPerReplication
        raftConfig.maxInflightMessages = config.raft.replication.maxInflightMessages
        let leaseUsed = config.raft.readConsistency.defaultPolicy == .lease
            || config.raft.readConsistency.allowClientOverride
        raftConfig.leaseDuration = leaseUsed ? UInt64(config.raft.readConsistency.leaseDurationMs) : 0
        raftConfig.followerReads = config.raft.readConsistency.followerReads
        raftConfig.clockDriftMargin = UInt64(NodeConfig.leaseDriftMargin(electionTimeoutMin: config.raft.election.electionTimeoutMin))
        raftConfig.randomSeed = UInt64(truncatingIfNeeded: Int64(Date().timeIntervalSince1970 * 1000)) ^ id
        #if PLANTED_BUGS
            // TEST-ONLY, compiled only into debug builds and `make chaos PLANT=...`: the chaos harness
            // (docs/chaos.md) plants a deliberate bug to prove it catches it. A release binary never reads this.
            if let bug = ProcessInfo.processInfo.environment["DNODE_PLANTED_BUG"], !bug.isEmpty {
                guard let planted = PlantedBug(rawValue: bug) else {
                    throw NodeStartupError("DNODE_PLANTED_BUG=\(bug) is not a planted bug", exitCode: 78)
                }
                raftConfig.plantedBug = planted
                log.always("WARNING: test-only planted bug \(bug) is active; this node is deliberately unsafe")
            }
        #endif
        do {
            try raftConfig.validate()
        } catch {
            throw NodeStartupError("invalid Raft settings: \(error)", exitCode: 78)
        }

        var settings = RaftServer.Settings(raft: raftConfig)
        settings.requestTimeoutMs = Int64(config.cluster.requestTimeoutMs)
        settings.snapshotEnabled = config.raft.snapshot.enable
        settings.snapshotEvery = UInt64(config.raft.snapshot.maxLogEntriesBeforeSnapshot)
        settings.retainedEntries = UInt64(config.raft.snapshot.retainedLogEntries)
        settings.maxPendingWrites = max(1, config.raft.persistence.maxBufferedEntries)
        settings.quotaBackendBytes = UInt64(config.raft.persistence.quotaBackendBytes)
        settings.watchHistory = WatchHub.Settings(
            historyEntries: config.watch.historyEntries, historyBytes: config.watch.historyBytes)
        settings.watchProgressMs = Int64(config.watch.progressIntervalMs)
        for member in config.cluster.initialCluster { settings.addresses[member.id] = member.address.description }
        // What clients and operators are shown: dialable (never the wildcard a node may listen on).
        settings.selfAddress = (config.cluster.selfMember?.address ?? config.cluster.listenAddress).dialAddress.description

        let strategy: RaftStorage.PersistenceStrategy
        switch (config.raft.persistence.strategy, config.raft.persistence.flushPolicy) {
        case (.diskFirst, _): strategy = .diskFirst
        case (.memFirst, .batch(let threshold, let interval)):
            strategy = .memFirst(threshold: threshold, intervalMs: UInt64(interval))
        case (.memFirst, .immediate): strategy = .memFirst(threshold: 1, intervalMs: 0)
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(2, System.coreCount))
        let raftLoop = group.next()

        var limitsBuilder = ClientHTTPLimits()
        limitsBuilder.maxValueBytes = config.raft.maxValueBytes
        limitsBuilder.maxKeyBytes = config.raft.maxKeyBytes
        limitsBuilder.maxBodyBytes = config.raft.maxValueBytes + config.raft.maxKeyBytes + (64 << 10)
        limitsBuilder.requestTimeout = .milliseconds(Int64(config.cluster.requestTimeoutMs))
        limitsBuilder.idleTimeout = .milliseconds(Int64(config.cluster.clientIdleTimeoutMs))
        limitsBuilder.headerTimeout = .milliseconds(Int64(config.cluster.clientHeaderTimeoutMs))
        limitsBuilder.bodyTimeout = .milliseconds(Int64(config.cluster.clientBodyTimeoutMs))
        let limits = limitsBuilder
        // Connections never take the descriptors the log, snapshots and peers need: the client cap fits under the
        // descriptor limit (raised to the hard limit first), with room kept for the rest.
        let descriptorLimit = DescriptorLimit.raiseToHardLimit()
        let reservedDescriptors = DescriptorLimit.reservedForPeersAndStorage + DescriptorLimit.metricsConnections
            + DescriptorLimit.undecidedAndPeerConnections
        let clientCap = min(config.cluster.maxClientConnections, max(16, descriptorLimit - reservedDescriptors))
        if clientCap < config.cluster.maxClientConnections {
            log.warn(
                "max_client_connections lowered from \(config.cluster.maxClientConnections) to \(clientCap) to fit the "
                    + "descriptor limit (\(descriptorLimit), of which \(reservedDescriptors) are kept for peers, "
                    + "metrics and storage)")
        }
        let clientConnections = ConnectionLimiter(limit: clientCap)
        // Every connection on the shared port before it says what it speaks, and peers: bounded too.
        let acceptedConnections = ConnectionLimiter(limit: clientCap + DescriptorLimit.undecidedAndPeerConnections)
        let metricsConnections = ConnectionLimiter(limit: DescriptorLimit.metricsConnections)
        let authenticator = security.authenticator

        var peers: [NodeID: (host: String, port: Int)] = [:]
        for member in config.cluster.initialCluster where member.id != id {
            peers[member.id] = (member.dialAddress.host, member.dialAddress.port)
        }
        // The transport shares the Raft loop: a Ready's messages are queued and flushed without a thread hop.
        var transportConfiguration = PeerTransport.Configuration()
        transportConfiguration.snapshotStagingDirectory = config.cluster.dbRootDir + "/incoming-snapshots"
        transportConfiguration.maxSnapshotBytes = UInt64(config.raft.snapshot.maxReceiveBytes)
        // A restored cluster's nodes carry its id and talk to no node of another (`dctl snapshot restore`).
        transportConfiguration.clusterID = storage.clusterID ?? 0
        if let clusterID = storage.clusterID { log.always("cluster id \(String(clusterID, radix: 16)) (a restored cluster)") }
        let transport = PeerTransport(
            selfID: id, group: raftLoop, peers: peers, configuration: transportConfiguration, tls: security.peerTLS)
        let raft = try RaftServer(
            settings: settings, storage: storage, strategy: strategy,
            maxBufferedEntries: config.raft.persistence.maxBufferedEntries, loop: raftLoop, transport: transport,
            log: log)
        let backend = NodeBackend(
            raft: raft, transport: transport, defaultConsistency: config.raft.readConsistency.defaultPolicy,
            allowClientOverride: config.raft.readConsistency.allowClientOverride,
            requestTimeout: .milliseconds(Int64(config.cluster.requestTimeoutMs)),
            watchBufferBytes: config.watch.bufferBytes)
        raft.onLeadershipChange = { isLeader, leader, removed in
            backend.updateLeadership(isLeader: isLeader, leader: leader, removed: removed)
        }
        let tunnelled = TunnelledRequestProcessor(
            backend: backend.localOnly(), limits: limits, requiresCaller: security.context != nil)
        // Inbound peer traffic goes to the Raft server from now on; it ticks before the client port opens.
        transport.start(handler: TransportAdapter(raft: raft, tunnelled: tunnelled))
        raft.start()

        let listen = config.cluster.listenAddress
        let metricsAddress = config.monitoring.metricsAddress
        let clientChannel: Channel
        let metricsChannel: Channel
        do {
            clientChannel = try ServerBootstrap(group: group)
                .serverChannelOption(.backlog, value: 512)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                // Out of descriptors (EMFILE): stop accepting for a second instead of spinning (`AcceptPauseHandler`).
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(.allowRemoteHalfClosure, value: true)
                .childChannelOption(.maxMessagesPerRead, value: 16)
                .childChannelInitializer { channel in
                    guard acceptedConnections.admit(channel) else {
                        return channel.close()
                    }
                    let detector = transport.makeSharedPortDetector(configureHTTP: { channel in
                        guard clientConnections.admit(channel) else {
                            ConnectionRefusal.refuse(channel, cap: clientConnections.limit)
                            return channel.eventLoop.makeSucceededVoidFuture()
                        }
                        return configureClientHTTP(
                            channel: channel, backend: backend, limits: limits, authenticator: authenticator)
                    })
                    return channel.eventLoop.makeCompletedFuture {
                        // Secure mode: TLS first; the peer preamble and HTTP both travel inside it.
                        try security.addServerTLS(to: channel)
                        try channel.pipeline.syncOperations.addHandler(detector)
                    }
                }
                .bind(host: listen.host, port: listen.port).wait()
        } catch {
            throw NodeStartupError("cannot listen on \(listen): \(error)", exitCode: 69)
        }
        let startedAt = Date()
        let sharedSettings = config.sharedSettings
        let endpoints = MetricsEndpoints(
            metrics: { (try? await raft.metricsText().get()) ?? "" },
            status: {
                var status = await raft.currentStatus()
                status.security = security.status
                status.node = NodeFacts(
                    version: dnodeVersion, nowMs: UInt64(max(0, Date().timeIntervalSince1970 * 1000)),
                    settings: sharedSettings, disk: DiskFacts.of(config.cluster.dbRootDir))
                return status
            },
            health: {
                let status = await raft.currentStatus()
                let removed = status.role == .removed
                let healthy = status.leaderID != nil && !removed
                let reason = removed
                    ? "removed from the cluster" : "no leader known (up \(Int(Date().timeIntervalSince(startedAt))) s)"
                return HealthReport(
                    healthy: healthy, nodeID: status.nodeID, role: status.role, leaderID: status.leaderID,
                    reason: healthy ? nil : reason)
            },
            events: { [events = raft.events] after in
                NodeEventsResponse(nodeID: events.nodeID, events: events.events(after: after))
            })
        do {
            metricsChannel = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                    }
                }
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { channel in
                    guard metricsConnections.admit(channel) else { return channel.close() }
                    return channel.eventLoop.makeCompletedFuture { try security.addServerTLS(to: channel) }.flatMap {
                        MetricsHTTPServer.configure(channel: channel, endpoints: endpoints, authenticator: authenticator)
                    }
                }
                .bind(host: metricsAddress.host, port: metricsAddress.port).wait()
        } catch {
            throw NodeStartupError("cannot listen on the metrics address \(metricsAddress): \(error)", exitCode: 69)
        }

        if let context = security.context {
            context.watch(on: group.next(), every: .milliseconds(Int64(config.security.reloadIntervalMs)))
        }
        log.always("dnode \(id) listening on \(listen) (client API and peers), metrics on \(metricsAddress)")
        var joiner: Joiner?
        if (try? raft.needsToJoin().wait()) == true {
            let advertised = (config.cluster.selfMember?.address ?? listen).description
            let contacts = config.cluster.initialCluster.filter { $0.id != id }.sorted { lhs, rhs in
                // Bootstrap voters first: they are the likeliest to know the leader.
                (lhs.isVoter ? 0 : 1, lhs.id) < (rhs.isVoter ? 0 : 1, rhs.id)
            }.map(\.id)
            joiner = Joiner(
                selfID: id, advertised: advertised, contacts: contacts, transport: transport, raft: raft, log: log,
                loop: group.next())
            joiner?.start()
        }

        // Graceful shutdown: stop accepting, finish or fail what is in flight, flush the log, exit 0.
        let done = DispatchSemaphore(value: 0)
        let shuttingDown = NIOLockedValueBox(false)
        var sources: [DispatchSourceSignal] = []
        for sig in [SIGTERM, SIGINT] {
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler {
                guard !shuttingDown.withLockedValue({ let was = $0; $0 = true; return was }) else { return }
                log.always("dnode \(id) shutting down (signal \(sig))")
                joiner?.stop()
                _ = try? clientChannel.close().wait()
                _ = try? metricsChannel.close().wait()
                _ = try? raft.shutdown().wait()
                _ = try? transport.shutdown().wait()
                done.signal()
            }
            source.resume()
            sources.append(source)
        }
        // SIGHUP: reload the certificates, key, CA and tokens now (they are also checked every reload_interval_ms).
        signal(SIGHUP, SIG_IGN)
        let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hangup.setEventHandler {
            guard let context = security.context else {
                log.always("SIGHUP: plaintext mode, nothing to reload")
                return
            }
            if context.reload(force: true) == nil { log.always("SIGHUP: TLS material unchanged") }
        }
        hangup.resume()
        sources.append(hangup)
        done.wait()
        try? group.syncShutdownGracefully()
        log.always("dnode \(id) stopped")
        _ = sources
        return 0
    }

}

/// The version `dnode --version` prints and `/status` reports.
let dnodeVersion = "0.1.0"

extension NodeConfig {
    /// The settings every member should share, for `dctl doctor`'s disagreement check.
    var sharedSettings: [String: String] {
        var settings = [
            "election_timeout_min": "\(raft.election.electionTimeoutMin)",
            "election_timeout_max": "\(raft.election.electionTimeoutMax)",
            "rpc_append_entries_clock_in_ms": "\(raft.replication.rpcAppendEntriesClockInMs)",
            "lease_duration_ms": "\(raft.readConsistency.leaseDurationMs)",
            "default_policy": raft.readConsistency.defaultPolicy.configName,
            "strategy": raft.persistence.strategy.rawValue,
            "max_value_bytes": "\(raft.maxValueBytes)",
            "tls": security.tlsEnabled ? "on" : "off",
        ]
        if case .batch(let threshold, let interval) = raft.persistence.flushPolicy {
            settings["flush_policy"] = "Batch(\(threshold), \(interval) ms)"
        } else {
            settings["flush_policy"] = "Immediate"
        }
        return settings
    }
}

extension DiskFacts {
    /// Free and total bytes of the file system holding `path` (statvfs); `nil` if it cannot be read.
    static func of(_ path: String) -> DiskFacts? {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return nil }
        let block = UInt64(stats.f_frsize)
        return DiskFacts(
            path: path, freeBytes: UInt64(stats.f_bavail) * block, totalBytes: UInt64(stats.f_blocks) * block)
    }
}
