import Chaos
import ClusterAPI
import ClusterClient
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NodeSecurity
import PeerTransport
import RaftCore
import Testing
@testable import ClusterTestSupport

/// The peer fuzzer over authenticated links (issue #14): a secure three-node cluster receives every frame kind and
/// message body on TLS connections that present a real member's certificate and name that member in their hello, so
/// the frames get past authentication and meet admission and validation. Afterwards the cluster has a leader at a
/// sane term, every node answers and takes writes, and no node holds the fuzz connections.
@Suite(.serialized) struct SecureFuzzTests {
    @Test("every peer frame kind from an authenticated member, over TLS, against a secure cluster")
    func authenticatedMembersCannotBreakTheCluster() async throws {
        let certificates = try TestCertificates(nodes: 3)
        var options = LocalCluster.Options()
        options.extraTOML = certificates.toml
        let admin = try certificates.security("admin")
        let counts = PeerFuzzCounts()
        try await withLocalCluster(nodes: 3, options: options, start: false) { cluster in
            try await cluster.start(waitReady: false)
            let before = try await cluster.waitForSecureLeader(as: admin)
            var baselines: [Int: (pid: Int32, fds: Int)] = [:]
            for id in cluster.ids {
                let pid = try #require(cluster.pid(id))
                baselines[id] = (pid, FuzzTests.openFiles(pid))
            }
            // One member certificate per worker; worker w fuzzes node (w % 3) + 1 as the next member.
            let contexts = try (1...3).map { id in try Self.context(presenting: certificates.path("node.\(id)")) }
            let ports = cluster.ids.map { cluster.node($0).clientPort }
            let deadline = ContinuousClock.now + .milliseconds(Int(FuzzTests.seconds * 1000))
            let sent = try await withThrowingTaskGroup(of: Int.self) { group in
                for worker in 0..<3 {
                    group.addTask {
                        var random = SeededRandom(seed: FuzzTests.seed &+ UInt64(worker) &* 104_729)
                        let target = worker % 3
                        let member = UInt64((target + 1) % 3 + 1)
                        var count = 0
                        while ContinuousClock.now < deadline {
                            let bytes = PeerFuzzInputs.input(
                                &random, target: NodeID(target + 1), counts: counts, authenticatedAs: member)
                            await Self.send(bytes, port: ports[target], context: contexts[Int(member) - 1])
                            count += 1
                        }
                        return count
                    }
                }
                return try await group.reduce(0, +)
            }
            print("secure peer fuzz: \(sent) inputs; " + counts.snapshot.sorted { $0.key < $1.key }
                .map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            #expect(sent > 20, "only \(sent) inputs sent")
            for kind in ["requestVote", "appendEntries", "heartbeat", "installSnapshot", "timeoutNow", "snapshotChunk", "forwardRequest"] {
                #expect((counts.snapshot["authenticated.\(kind)"] ?? 0) > 0, "no authenticated.\(kind) sent")
            }

            for id in cluster.ids { #expect(cluster.isRunning(id), "node \(id) died:\n\(cluster.diagnostics())") }
            let after = try await cluster.waitForSecureLeader(as: admin)
            #expect(after.term < RaftNode.termHorizon * 2, "leader \(after.nodeID) at term \(after.term)")
            #expect(after.term >= before.term)
            for id in cluster.ids {
                try await waitFor("a put via node \(id) after fuzzing", timeout: .seconds(10)) {
                    let response = try await cluster.secureRequest(id, "POST", "/put", body: #"{"key":"after","value":"\#(id)"}"#, as: admin)
                    return response.status == 200
                }
            }
            await FuzzTests.expectDescriptorsSettle(baselines)
        }
    }

    static func context(presenting base: String) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(base + ".crt").map { .certificate($0) }
        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: base + ".key", format: .pem))
        return try NIOSSLContext(configuration: configuration)
    }

    /// One TLS connection: the bytes, a short read window, then close (or the node closes first).
    static func send(_ bytes: [UInt8], port: Int, context: NIOSSLContext) async {
        guard
            let channel = try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connectTimeout(.seconds(2))
                .channelInitializer({ channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: context, serverHostname: nil))
                    }
                })
                .connect(host: "127.0.0.1", port: port).get()
        else { return }
        try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        let closed = channel.closeFuture
        let timer = channel.eventLoop.scheduleTask(in: .milliseconds(100)) { channel.close(promise: nil) }
        try? await closed.get()
        timer.cancel()
    }
}
