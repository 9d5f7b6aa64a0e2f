import ClusterAPI
import Foundation
import NIOCore
import NIOEmbedded
import NIOPosix
import NIOSSL
import NodeSecurity
import Testing
import X509

/// Certificates, identities, the certificate checker, tokens and TLS handshakes between the contexts the node and
/// the tools build (no processes; a real loopback socket for the handshakes).
@Suite struct NodeSecurityTests {
    static let ca = try! CertificateFactory.makeAuthority(days: 10)

    @Test func nodeCertificatesBindTheNodeIDAndTheirAddresses() throws {
        let node = try CertificateFactory.makeNode(id: 7, hosts: ["10.0.0.7", "db7.example"], authority: Self.ca)
        #expect(CertificateIdentity(node.certificate) == .node(7))
        let names = try #require(try node.certificate.extensions.subjectAlternativeNames)
        let text = names.map { "\($0)" }.joined(separator: " ")
        #expect(text.contains("localhost"))
        #expect(text.contains("db7.example"))
        #expect(names.contains { if case .ipAddress(let bytes) = $0 { return Array(bytes.bytes) == [10, 0, 0, 7] }; return false })
        #expect(names.contains { if case .ipAddress(let bytes) = $0 { return Array(bytes.bytes) == [127, 0, 0, 1] }; return false })
        #expect(node.privateKeyPEM.contains("PRIVATE KEY"))
        #expect((try? CertificateChecker(authority: Self.ca.certificate).check(node.certificate).get()) == .node(7))
    }

    @Test func clientCertificatesNameARole() throws {
        let client = try CertificateFactory.makeClient(
            name: "alice", role: .readwrite, authority: Self.ca, notValidBefore: Date().addingTimeInterval(-60),
            notValidAfter: Date().addingTimeInterval(3600))
        #expect(CertificateIdentity(client.certificate) == .client(Caller(name: "alice", role: .readwrite)))
    }

    @Test func theCheckerSaysWhyItRefuses() throws {
        let checker = CertificateChecker(authority: Self.ca.certificate)
        let expired = try CertificateFactory.makeClient(
            name: "old", role: .admin, authority: Self.ca, notValidBefore: Date().addingTimeInterval(-7200),
            notValidAfter: Date().addingTimeInterval(-3600))
        #expect(Self.reason(checker.check(expired.certificate))?.hasPrefix("certificate \"old\" expired at 20") == true)
        let early = try CertificateFactory.makeClient(
            name: "early", role: .admin, authority: Self.ca, notValidBefore: Date().addingTimeInterval(3600),
            notValidAfter: Date().addingTimeInterval(7200))
        #expect(Self.reason(checker.check(early.certificate))?.contains("not valid before") == true)
        let otherCA = try CertificateFactory.makeAuthority(commonName: "other")
        let foreign = try CertificateFactory.makeNode(id: 1, hosts: [], authority: otherCA)
        #expect(Self.reason(checker.check(foreign.certificate)) == "certificate \"node.1\" is not signed by the cluster CA")
        #expect(Self.reason(checker.check(Self.ca.certificate))?.contains("is a CA certificate") == true)
    }

    static func reason(_ result: Result<CertificateIdentity, TLSMaterialError>) -> String? {
        if case .failure(let error) = result { return error.description }
        return nil
    }

    @Test func keysAreWrittenPrivateAndReadBack() throws {
        let directory = NSTemporaryDirectory() + "/dengine-sec-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let node = try CertificateFactory.makeNode(id: 2, hosts: [], authority: Self.ca)
        try CertificateFactory.write(node, to: directory + "/node.2")
        let keyMode = try FileManager.default.attributesOfItem(atPath: directory + "/node.2.key")[.posixPermissions] as? Int
        #expect(keyMode == 0o600)
        let loaded = try CertificateFactory.load(certificateFile: directory + "/node.2.crt", keyFile: directory + "/node.2.key")
        #expect(loaded.certificate == node.certificate)
        // A key that is not the certificate's is refused.
        let other = try CertificateFactory.makeNode(id: 3, hosts: [], authority: Self.ca)
        try CertificateFactory.write(other, to: directory + "/node.3")
        #expect(throws: (any Error).self) {
            _ = try CertificateFactory.load(certificateFile: directory + "/node.2.crt", keyFile: directory + "/node.3.key")
        }
    }

    @Test func tokensAreStoredHashedAndMatchedExactly() throws {
        let (token, line) = TokenStore.makeToken(name: "ci", role: .readwrite)
        #expect(token.hasPrefix("dtk_") && token.count == 68)
        #expect(!line.contains(token))
        let store = try TokenStore(text: "# comment\n\n" + line + "  # trailing\n", source: "tokens")
        #expect(store.caller(forToken: Substring(token)) == Caller(name: "ci", role: .readwrite))
        #expect(store.caller(forToken: Substring(token.dropLast())) == nil)
        #expect(store.caller(forToken: "") == nil)
        #expect(throws: TLSMaterialError.self) { try TokenStore(text: "ci admin deadbeef\n", source: "tokens") }
        #expect(throws: TLSMaterialError.self) { try TokenStore(text: "ci root sha256:" + String(repeating: "0", count: 64), source: "t") }
    }

    @Test func callerHeaderRoundTripsAndRejectsGarbage() {
        let caller = Caller(name: "node.4", role: .admin)
        #expect(Caller(headerValue: caller.headerValue) == caller)
        #expect(Caller(headerValue: "root:x") == nil)
        #expect(Caller(headerValue: "admin:") == nil)
        #expect(Caller(headerValue: "garbage") == nil)
        #expect(ClientRole.readonly < .readwrite && ClientRole.readwrite < .admin)
    }

    // MARK: Handshakes

    /// A TLS echo of the server's view of the client: the server answers with the identity it verified.
    final class IdentityReply: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let identity = context.channel.tlsPeerIdentity().map { "\($0)" } ?? "none"
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: identity)), promise: nil)
        }
    }

    final class Collect: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<String>
        init(_ promise: EventLoopPromise<String>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(String(buffer: unwrapInboundIn(data)))
        }
        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            promise.fail(error)
            context.close(promise: nil)
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
        }
    }

    static func files(_ directory: String, _ name: String?) -> TLSFiles {
        TLSFiles(
            caFile: directory + "/ca.crt", certFile: name.map { "\(directory)/\($0).crt" },
            keyFile: name.map { "\(directory)/\($0).key" })
    }

    /// Serves with node 1's material; the client presents `client` and expects `expecting`.
    static func handshake(client: String?, expecting node: UInt64, in directory: String) async throws -> String {
        let server = try TLSMaterial(files: files(directory, "node.1"), expectedNode: 1)
        let clientMaterial = try TLSMaterial(files: files(directory, client))
        let group = MultiThreadedEventLoopGroup.singleton
        let listener = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try server.makeServerHandler(refused: { _ in }))
                    try channel.pipeline.syncOperations.addHandler(IdentityReply())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { listener.close(promise: nil) }
        let promise = group.next().makePromise(of: String.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(try clientMaterial.makeClientHandler(expectingNode: node))
                    try channel.pipeline.syncOperations.addHandler(Collect(promise))
                }
            }
            .connect(host: "127.0.0.1", port: listener.localAddress!.port!).get()
        defer { channel.close(promise: nil) }
        try await channel.writeAndFlush(ByteBuffer(string: "who am I?"))
        return try await promise.futureResult.get()
    }

    @Test func mutualTLSCarriesTheVerifiedIdentity() async throws {
        let directory = NSTemporaryDirectory() + "/dengine-hs-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try CertificateFactory.write(Self.ca, to: directory + "/ca")
        try CertificateFactory.write(try CertificateFactory.makeNode(id: 1, hosts: [], authority: Self.ca), to: directory + "/node.1")
        try CertificateFactory.write(try CertificateFactory.makeNode(id: 2, hosts: [], authority: Self.ca), to: directory + "/node.2")
        let reader = try CertificateFactory.makeClient(
            name: "reader", role: .readonly, authority: Self.ca, notValidBefore: Date().addingTimeInterval(-60),
            notValidAfter: Date().addingTimeInterval(3600))
        try CertificateFactory.write(reader, to: directory + "/client.reader")

        #expect(try await Self.handshake(client: "node.2", expecting: 1, in: directory) == "node 2")
        #expect(try await Self.handshake(client: "client.reader", expecting: 0, in: directory) == "client reader (readonly)")
        #expect(try await Self.handshake(client: nil, expecting: 0, in: directory) == "none")
        // The dialler expects node 3 but node 1 answers: refused before any byte of the request is read.
        await #expect(throws: (any Error).self) {
            _ = try await Self.handshake(client: "node.2", expecting: 3, in: directory)
        }
        // A node material for the wrong id is refused at load.
        #expect(throws: TLSMaterialError.self) {
            _ = try TLSMaterial(files: Self.files(directory, "node.2"), expectedNode: 1)
        }
    }
}

/// The coalescer joins the writes between flushes into one buffer (one TLS record) and keeps their order.
@Suite struct TLSWriteCoalescerTests {
    @Test func smallWritesBetweenFlushesBecomeOneBuffer() throws {
        let channel = EmbeddedChannel(handler: TLSWriteCoalescer())
        let first = channel.eventLoop.makePromise(of: Void.self)
        let second = channel.eventLoop.makePromise(of: Void.self)
        var completed = 0
        first.futureResult.whenSuccess { completed += 1 }
        second.futureResult.whenSuccess { completed += 1 }
        channel.write(ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\n"), promise: first)
        channel.write(ByteBuffer(string: "body"), promise: second)
        channel.write(ByteBuffer(), promise: nil)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        channel.flush()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "HTTP/1.1 200 OK\r\n\r\nbody"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == nil)
        // EmbeddedChannel completes a written buffer's promise at once: both promises of the joined write are done.
        #expect(completed == 2)

        let large = ByteBuffer(repeating: 7, count: 64 * 1024)
        channel.write(ByteBuffer(string: "frame"), promise: nil)
        channel.write(large, promise: nil)
        channel.write(ByteBuffer(string: "next"), promise: nil)
        channel.flush()
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "frame"))
        #expect(try channel.readOutbound(as: ByteBuffer.self) == large)
        #expect(try channel.readOutbound(as: ByteBuffer.self) == ByteBuffer(string: "next"))
        _ = try channel.finish()
    }
}
