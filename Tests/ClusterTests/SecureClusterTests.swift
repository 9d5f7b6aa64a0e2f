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

#if canImport(Glibc)
import Glibc
#endif

/// Secure mode with real processes (docs/security.md): TLS on every port, peers authenticated by the node id bound
/// in their certificates, roles for clients (certificates and bearer tokens), rotation without downtime.
@Suite(.serialized) struct SecureClusterTests {
    // MARK: Fixture

    typealias Certificates = TestCertificates

    static func options(_ certificates: Certificates, _ base: LocalCluster.Options = .init()) -> LocalCluster.Options {
        var options = base
        options.extraTOML = certificates.toml
        return options
    }

    static func request(
        _ cluster: LocalCluster, _ id: Int, _ method: String, _ path: String, body: String? = nil,
        as security: ClientSecurity, metrics: Bool = false
    ) async throws -> ClientHTTPResponse {
        try await cluster.secureRequest(id, method, path, body: body, as: security, metrics: metrics)
    }

    static func status(_ cluster: LocalCluster, _ id: Int, as security: ClientSecurity) async throws -> NodeStatus {
        try await cluster.secureStatus(id, as: security)
    }

    /// Starts every node and waits until one leads and every node follows it; returns the leader's status.
    static func startSecure(_ cluster: LocalCluster, admin: ClientSecurity) async throws -> NodeStatus {
        try await cluster.start(waitReady: false)
        return try await cluster.waitForSecureLeader(as: admin)
    }

    static func code(_ response: ClientHTTPResponse) -> String? {
        guard let envelope = try? WireJSON.decode(APIErrorEnvelope.self, from: response.body) else { return nil }
        return envelope.error.code.rawValue
    }

    // MARK: Clients and roles

    @Test func clientsNeedCredentialsAndARoleThatAllowsTheRequest() async throws {
        let certificates = try Certificates(nodes: 3)
        try await withLocalCluster(options: Self.options(certificates), start: false) { cluster in
            let admin = try certificates.security("admin")
            let leader = try await Self.startSecure(cluster, admin: admin)
            let leaderID = Int(leader.nodeID)
            let follower = cluster.ids.first { $0 != leaderID }!

            // Plaintext to a TLS port: closed without an answer, nothing served.
            let node = cluster.node(follower)
            await #expect(throws: TransportError.self) {
                _ = try await httpExchange(
                    method: "GET", endpoint: Endpoint(host: "127.0.0.1", port: node.clientPort), path: "/get?key=a",
                    timeout: .seconds(2), security: ClientSecurity())
            }

            // TLS without credentials: 401 on the client API and on the metrics port.
            let anonymous = try certificates.security(nil)
            let noCredentials = try await Self.request(cluster, follower, "GET", "/get?key=a", as: anonymous)
            #expect(noCredentials.status == 401)
            #expect(Self.code(noCredentials) == "unauthenticated")
            #expect(try await Self.request(cluster, follower, "GET", "/status", as: anonymous, metrics: true).status == 401)

            // admin writes through a follower: the leader checks the caller the follower authenticated.
            let put = try await Self.request(cluster, follower, "POST", "/put", body: #"{"key":"a","value":"1"}"#, as: admin)
            #expect(put.status == 200, "\(String(decoding: put.body, as: UTF8.self))")

            // reader: reads, never writes, never administers, on the leader and through a follower.
            let reader = try certificates.security("reader")
            for id in [leaderID, follower] {
                let get = try await Self.request(cluster, id, "GET", "/get?key=a&consistency=linearizable", as: reader)
                #expect(get.status == 200)
                let write = try await Self.request(cluster, id, "POST", "/put", body: #"{"key":"a","value":"2"}"#, as: reader)
                #expect(write.status == 403)
                #expect(Self.code(write) == "forbidden")
                for (path, body) in [
                    ("/join", #"{"node_id":9,"address":"127.0.0.1:1"}"#), ("/promote", #"{"node_id":2}"#),
                    ("/remove", #"{"node_id":2}"#), ("/transfer-leader", #"{"node_id":2}"#),
                ] {
                    let refused = try await Self.request(cluster, id, "POST", path, body: body, as: reader)
                    #expect(refused.status == 403, "\(path) as reader on node \(id)")
                }
            }
            let unchanged = try await Self.request(cluster, leaderID, "GET", "/get?key=a&consistency=linearizable", as: reader)
            #expect(String(decoding: unchanged.body, as: UTF8.self).contains(#""value":"1""#))

            // A readwrite token (added while the cluster runs, picked up by the reload) writes; a wrong one is 401.
            let (token, line) = TokenStore.makeToken(name: "ci", role: .readwrite)
            try CertificateFactory.writeText(certificates.path("tokens"), line + "\n", mode: 0o600)
            let bearer = try certificates.security(nil, token: token)
            try await waitFor("the token to be accepted by every node", timeout: .seconds(10)) { () async throws -> Bool in
                for id in cluster.ids {
                    let response = try await Self.request(cluster, id, "POST", "/put", body: #"{"key":"t","value":"1"}"#, as: bearer)
                    if response.status != 200 { return false }
                }
                return true
            }
            let wrong = try certificates.security(nil, token: "dtk_" + String(repeating: "0", count: 64))
            #expect(try await Self.request(cluster, follower, "GET", "/get?key=t", as: wrong).status == 401)
            let tokenAdmin = try await Self.request(cluster, follower, "POST", "/transfer-leader", body: #"{"node_id":\#(follower)}"#, as: bearer)
            #expect(tokenAdmin.status == 403)

            // admin administers: transfer leadership to the follower.
            let transfer = try await Self.request(cluster, leaderID, "POST", "/transfer-leader", body: #"{"node_id":\#(follower)}"#, as: admin)
            #expect(transfer.status == 200, "\(String(decoding: transfer.body, as: UTF8.self))")
            try await waitFor("node \(follower) to lead", timeout: .seconds(10)) {
                try await Self.status(cluster, follower, as: admin).role == .leader
            }

            // /status reports TLS and the certificate's expiry.
            let status = try await Self.status(cluster, follower, as: reader)
            #expect(status.security?.mode == "tls")
            #expect(status.security?.clientAuth == true)
            #expect(status.security?.certificateNotAfter != nil)
        }
    }

    @Test func adminJoinsAndPromotesALearnerWithItsOwnNodeCertificate() async throws {
        let certificates = try Certificates(nodes: 4)
        var options = Self.options(certificates)
        options.joiners = [4]
        try await withLocalCluster(nodes: 4, options: options, start: false) { cluster in
            let admin = try certificates.security("admin")
            try await cluster.start([1, 2, 3], waitReady: false)
            let leader = try await waitFor("a leader", timeout: .seconds(20)) { () async -> NodeStatus? in
                for id in 1...3 {
                    if let status = try? await Self.status(cluster, id, as: admin), status.role == .leader { return status }
                }
                return nil
            }
            try await cluster.start([4], waitReady: false)
            try await waitFor("node 4 to be a learner", timeout: .seconds(20)) {
                (try? await Self.status(cluster, Int(leader.nodeID), as: admin))?.learners.contains(4) == true
            }
            let writer = try certificates.security("writer")
            let refused = try await Self.request(cluster, Int(leader.nodeID), "POST", "/promote", body: #"{"node_id":4}"#, as: writer)
            #expect(refused.status == 403)
            try await waitFor("admin to promote node 4", timeout: .seconds(20)) {
                let response = try await Self.request(cluster, Int(leader.nodeID), "POST", "/promote", body: #"{"node_id":4}"#, as: admin)
                return response.status == 200
            }
            let status = try await Self.status(cluster, 4, as: admin)
            #expect(status.voters.contains(4))
        }
    }

    // MARK: Peers

    /// A TLS client context presenting `base.crt|key` (none with `nil`), whatever its validity: an attacker's
    /// or a careless client's, not the tools' (which refuse to present a bad certificate).
    static func attackerContext(_ base: String?) throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .none
        if let base {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(base + ".crt").map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: base + ".key", format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// Connects to `port` over TLS with `context`; `nil` when the handshake or the connection failed.
    static func connect(port: Int, context: NIOSSLContext) async -> (any Channel)? {
        try? await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        try NIOSSLClientHandler(context: context, serverHostname: nil))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
    }

    /// Opens a TLS connection to `port` presenting `context`'s certificate, sends the peer preamble, a hello
    /// claiming `claimed` and `message`; returns whether the node closed the link within 5 s.
    static func peerLinkIsClosed(
        port: Int, context: NIOSSLContext, claimed: UInt64, message: Message
    ) async throws -> Bool {
        guard let channel = await connect(port: port, context: context) else { return true }
        var bytes = ByteBuffer()
        PeerWire.writePreamble(into: &bytes)
        PeerWire.encode(.hello(PeerHello(nodeID: claimed)), into: &bytes)
        PeerWire.encode(.raft(message, snapshotData: nil), into: &bytes)
        try? await channel.writeAndFlush(bytes)
        // Both callbacks run on the channel's loop: the first one decides.
        let decided = channel.eventLoop.makePromise(of: Bool.self)
        final class Once: @unchecked Sendable { var done = false }
        let once = Once()
        channel.closeFuture.whenComplete { _ in
            if !once.done { once.done = true; decided.succeed(true) }
        }
        channel.eventLoop.scheduleTask(in: .seconds(5)) {
            if !once.done { once.done = true; decided.succeed(false) }
        }
        let closed = try await decided.futureResult.get()
        channel.close(promise: nil)
        return closed
    }

    @Test func peerFramesAreAcceptedOnlyFromTheNodeTheCertificateNames() async throws {
        let certificates = try Certificates(nodes: 3)
        // It asserts that the leader keeps its term through the attacks.
        try await withLocalCluster(options: Self.options(certificates, .steady), start: false) { cluster in
            let admin = try certificates.security("admin")
            let leader = try await Self.startSecure(cluster, admin: admin)
            let target = cluster.ids.first { $0 != Int(leader.nodeID) }!
            let port = cluster.node(target).clientPort
            // The attack of issue 14: a heartbeat response at term 2^62-1 claiming to come from the leader.
            let poison = Message(
                from: leader.nodeID, to: UInt64(target), term: (1 << 62) - 1, body: .heartbeatResponse(round: 1))

            // No client certificate; a client (reader) certificate; another node's certificate claiming the
            // leader's id; the leader's id in a certificate from another CA.
            let otherNode = cluster.ids.first { $0 != target && $0 != Int(leader.nodeID) }!
            let stranger = try CertificateFactory.makeAuthority(commonName: "stranger CA")
            let strangerNode = try CertificateFactory.makeNode(id: leader.nodeID, hosts: [], authority: stranger)
            try CertificateFactory.write(strangerNode, to: certificates.path("stranger"))
            let attempts: [(String, String?)] = [
                ("no certificate", nil), ("a client certificate", certificates.path("client.reader")),
                ("node \(otherNode)'s certificate", certificates.path("node.\(otherNode)")),
                ("a certificate of another CA", certificates.path("stranger")),
            ]
            for (what, base) in attempts {
                let closed = try await Self.peerLinkIsClosed(
                    port: port, context: try Self.attackerContext(base), claimed: leader.nodeID, message: poison)
                #expect(closed, "a peer link with \(what) claiming node \(leader.nodeID) was kept open")
            }
            // A member's own certificate and hello, but a frame whose `from` names the leader: refused too.
            let spoofing = try await Self.peerLinkIsClosed(
                port: port, context: try Self.attackerContext(certificates.path("node.\(otherNode)")),
                claimed: UInt64(otherNode), message: poison)
            #expect(spoofing, "node \(otherNode)'s link carried a frame from node \(leader.nodeID)")

            // The cluster never saw the term: same leader, same term, every node still follows it.
            let after = try await Self.startSecureCheck(cluster, admin: admin)
            #expect(after.nodeID == leader.nodeID)
            #expect(after.term == leader.term)
            let log = cluster.logText(target)
            #expect(log.contains("refused a peer link"), "node \(target)'s log names the refused link")
            #expect(log.contains("not signed by the cluster CA"))
        }
    }

    /// The leader every node follows (the cluster is already started).
    static func startSecureCheck(_ cluster: LocalCluster, admin: ClientSecurity) async throws -> NodeStatus {
        try await cluster.waitForSecureLeader(as: admin, timeout: .seconds(10))
    }

    // MARK: Rotation and expiry

    @Test func nodeCertificatesRotateWhileTheClusterServesWrites() async throws {
        let certificates = try Certificates(nodes: 3)
        try await withLocalCluster(options: Self.options(certificates), start: false) { cluster in
            let admin = try certificates.security("admin")
            _ = try await Self.startSecure(cluster, admin: admin)
            var before: [Int: String] = [:]
            for id in cluster.ids { before[id] = try await Self.status(cluster, id, as: admin).security?.certificateSerial }

            // A writer keeps writing through node 1 while every node's certificate is replaced.
            let writes = Task { () -> (ok: Int, failed: [String]) in
                var ok = 0
                var failed: [String] = []
                for index in 0..<400 {
                    if Task.isCancelled { break }
                    // A 503 (no leader for a moment on a loaded machine) was not proposed: send it again. Anything
                    // else that is not a 200, and any transport error (a refused handshake), is a failure.
                    for attempt in 0..<20 {
                        do {
                            let response = try await Self.request(
                                cluster, 1 + index % 3, "POST", "/put", body: #"{"key":"r\#(index)","value":"v"}"#,
                                as: admin)
                            if response.status == 503, attempt < 19 {
                                try? await Task.sleep(for: .milliseconds(100))  // a retry policy's backoff
                                continue
                            }
                            if response.status == 200 { ok += 1 } else { failed.append("HTTP \(response.status)") }
                        } catch {
                            failed.append("\(error)")
                        }
                        break
                    }
                }
                return (ok, failed)
            }
            for id in cluster.ids {
                try certificates.issueNode(id)
                cluster.signal(id, SIGHUP)
            }
            try await waitFor("every node to serve its new certificate", timeout: .seconds(10)) { () async throws -> Bool in
                for id in cluster.ids {
                    let serial = try await Self.status(cluster, id, as: admin).security?.certificateSerial
                    if serial == nil || serial == before[id] { return false }
                }
                return true
            }
            let result = await writes.value
            #expect(result.failed.isEmpty, "writes failed during rotation: \(result.failed.prefix(5))")
            #expect(result.ok == 400)
            // New peer links use the new certificates: a leader change needs them.
            let leader = try await Self.startSecureCheck(cluster, admin: admin)
            let next = cluster.ids.first { $0 != Int(leader.nodeID) }!
            let transfer = try await Self.request(
                cluster, Int(leader.nodeID), "POST", "/transfer-leader", body: #"{"node_id":\#(next)}"#, as: admin)
            #expect(transfer.status == 200)
            try await waitFor("node \(next) to lead", timeout: .seconds(10)) {
                try await Self.status(cluster, next, as: admin).role == .leader
            }
            #expect(cluster.logText(1).contains("TLS material reloaded"))
        }
    }

    @Test func anExpiredCertificateIsRefusedWithAClearLogLine() async throws {
        let certificates = try Certificates(nodes: 3)
        try certificates.client("old", role: .admin, notAfter: Date().addingTimeInterval(-3600))
        try await withLocalCluster(options: Self.options(certificates), start: false) { cluster in
            let admin = try certificates.security("admin")
            let leader = try await Self.startSecure(cluster, admin: admin)
            // The tools refuse to present it; a client that does is refused by the node.
            #expect(throws: (any Error).self) { _ = try certificates.security("old") }
            let context = try Self.attackerContext(certificates.path("client.old"))
            if let channel = await Self.connect(port: cluster.node(Int(leader.nodeID)).clientPort, context: context) {
                try? await channel.writeAndFlush(ByteBuffer(string: "GET /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n"))
                try await channel.closeFuture.get()
            }
            try await waitFor("the refusal in the log", timeout: .seconds(5)) {
                cluster.logText(Int(leader.nodeID)).contains("refused a TLS peer: certificate \"old\" expired at")
            }
        }
    }

    @Test func aNodeRefusesToStartWithAnExpiredOrForeignCertificate() async throws {
        let certificates = try Certificates(nodes: 3)
        // Node 1's certificate expired an hour ago; node 2 is given node 3's certificate.
        let expired = try CertificateFactory.makeNode(id: 1, hosts: [], authority: certificates.ca, days: 1, now: Date().addingTimeInterval(-3 * 86_400))
        try CertificateFactory.write(expired, to: certificates.path("node.1"))
        try FileManager.default.removeItem(atPath: certificates.path("node.2.crt"))
        try FileManager.default.removeItem(atPath: certificates.path("node.2.key"))
        try FileManager.default.copyItem(atPath: certificates.path("node.3.crt"), toPath: certificates.path("node.2.crt"))
        try FileManager.default.copyItem(atPath: certificates.path("node.3.key"), toPath: certificates.path("node.2.key"))
        try await withLocalCluster(options: Self.options(certificates), start: false) { cluster in
            try cluster.launch(1)
            try cluster.launch(2)
            #expect(try await cluster.waitForExit(1, timeout: .seconds(10)) == .exited(78))
            #expect(try await cluster.waitForExit(2, timeout: .seconds(10)) == .exited(78))
            #expect(cluster.stderrText(1).contains("expired at"))
            #expect(cluster.stderrText(2).contains("is the certificate of node 3, not of node 2"))
        }
    }

    // MARK: Insecure mode

    @Test func insecureModeIsLoggedAndReported() async throws {
        var options = LocalCluster.Options()
        options.extraTOML = "[security]\ninsecure = true"
        try await withLocalCluster(nodes: 1, options: options, start: false) { cluster in
            // Bind the wildcard address: a network address, allowed only by insecure = true.
            let config = try String(contentsOfFile: cluster.node(1).configPath, encoding: .utf8)
                .replacingOccurrences(of: "metrics_address = \"127.0.0.1:", with: "metrics_address = \"0.0.0.0:")
            try cluster.writeConfig(1, config)
            try await cluster.start()
            let status = try await cluster.status(1)
            #expect(status.security?.mode == "insecure")
            #expect(status.security?.clientAuth == false)
            #expect(cluster.logText(1).contains("WARNING: insecure mode"))
            let view = ClusterView(probes: [NodeProbe(target: NodeTarget(id: 1, client: Endpoint(host: "127.0.0.1", port: cluster.node(1).clientPort), metrics: nil), status: status, error: nil)], maxLag: 10)
            #expect(view.reasons.contains { $0.contains("INSECURE") })
        }
    }
}
