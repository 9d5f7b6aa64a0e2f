import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import NodeSecurity

/// How the tools reach a secure cluster (docs/security.md): the CA that signed the nodes' certificates, the
/// client certificate to present, a bearer token. Set once per process by `dctl` or `dtop`, before any request;
/// read by every exchange. With TLS set, every endpoint is dialled with TLS and must present a node certificate
/// of that CA.
public struct ClientSecurity: Sendable {
    public var tls: TLSMaterial?
    public var token: String?

    public init(tls: TLSMaterial? = nil, token: String? = nil) {
        self.tls = tls
        self.token = token
    }

    private static let box = NIOLockedValueBox(ClientSecurity())

    /// The process-wide settings.
    public static var current: ClientSecurity {
        get { box.withLockedValue { $0 } }
        set { box.withLockedValue { $0 = newValue } }
    }

    /// The tools' settings from flags, else the `DCTL_CACERT`, `DCTL_CERT`, `DCTL_KEY`, `DCTL_TOKEN` variables, else a
    /// config dir whose node files configure TLS (its `ca_file`, and the `client.admin` certificate beside it when
    /// neither a certificate nor a token was given). `nil` for a plaintext cluster. Shared by `dctl` and `dtop`.
    public static func resolve(
        cacert: String?, cert: String?, key: String?, token: String?, configDir: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ClientSecurity? {
        func pick(_ flag: String?, _ variable: String) -> String? {
            if let flag, !flag.isEmpty { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            return nil
        }
        var ca = pick(cacert, "DCTL_CACERT")
        var certFile = pick(cert, "DCTL_CERT")
        var keyFile = pick(key, "DCTL_KEY")
        let tokenValue = pick(token, "DCTL_TOKEN")
        if ca == nil, let configDir,
            let caFile = Discovery.localNodes(in: configDir).nodes.lazy.compactMap({ $0.security.tlsEnabled ? $0.security.caFile : nil }).first
        {
            ca = caFile
            let admin = ((caFile as NSString).deletingLastPathComponent as NSString).appendingPathComponent("client.admin")
            if certFile == nil, tokenValue == nil, FileManager.default.fileExists(atPath: admin + ".crt") {
                certFile = admin + ".crt"
                keyFile = admin + ".key"
            }
        }
        guard let ca else {
            if tokenValue != nil || certFile != nil {
                throw TLSMaterialError("--cert and --token need --cacert (the cluster CA)")
            }
            return nil
        }
        return try load(caFile: ca, certFile: certFile, keyFile: keyFile, token: tokenValue)
    }

    /// Loads `--cacert/--cert/--key` (a certificate needs its key). Throws a one-sentence reason.
    public static func load(caFile: String, certFile: String?, keyFile: String?, token: String?) throws -> ClientSecurity {
        guard (certFile == nil) == (keyFile == nil) else {
            throw TLSMaterialError("--cert and --key go together")
        }
        return ClientSecurity(
            tls: try TLSMaterial(files: TLSFiles(caFile: caFile, certFile: certFile, keyFile: keyFile)), token: token)
    }
}

// MARK: - TLS exchange

/// One request over TLS with the same deadline and error semantics as the plaintext exchange (`requestSent` is
/// `false` until the handshake completed, so a refused certificate proves nothing was done).
func tlsExchange(
    request: Data, endpoint: Endpoint, material: TLSMaterial, deadline: ContinuousClock.Instant, timeout: Duration
) throws(TransportError) -> HTTPResponse {
    let loop = MultiThreadedEventLoopGroup.singleton.next()
    let collector = ResponseCollector(promise: loop.makePromise(of: HTTPResponse.self))
    let remaining = ContinuousClock.now.duration(to: deadline)
    let host = endpoint.host == "localhost" ? "127.0.0.1" : endpoint.host
    let connected = ClientBootstrap(group: loop)
        .connectTimeout(.milliseconds(max(1, milliseconds(remaining))))
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(try material.makeClientHandler(expectingNode: 0))
                try channel.pipeline.syncOperations.addHandler(collector)
            }
        }
        .connect(host: host, port: endpoint.port)
    let timer = loop.scheduleTask(in: .milliseconds(max(1, milliseconds(remaining)))) {
        collector.fail(TransportError(kind: .timedOut, requestSent: collector.handshakeDone, reason: "no answer within \(formatDuration(timeout))"))
    }
    connected.whenComplete { result in
        switch result {
        case .success(let channel):
            var buffer = channel.allocator.buffer(capacity: request.count)
            buffer.writeBytes(request)
            channel.writeAndFlush(buffer, promise: nil)
        case .failure(let error):
            collector.fail(TransportError(kind: .connectFailed, requestSent: false, reason: "\(error)"))
        }
    }
    defer {
        timer.cancel()
        connected.whenSuccess { $0.close(promise: nil) }
    }
    do {
        return try collector.promise.futureResult.wait()
    } catch let error as TransportError {
        throw error
    } catch {
        throw TransportError(kind: .closed, requestSent: true, reason: "\(error)")
    }
}

/// Collects the bytes of one response until it parses, and turns TLS failures into clear transport errors.
// @unchecked Sendable: a channel handler, used only on its channel's event loop.
private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    // @unchecked: every mutable field is touched on the channel's event loop only (handler callbacks and the
    // timer scheduled on the same loop).
    typealias InboundIn = ByteBuffer

    let promise: EventLoopPromise<HTTPResponse>
    private var received = Data()
    private var done = false
    private(set) var handshakeDone = false

    init(promise: EventLoopPromise<HTTPResponse>) {
        self.promise = promise
    }

    func fail(_ error: TransportError) {
        guard !done else { return }
        done = true
        promise.fail(error)
    }

    private func succeed(_ response: HTTPResponse) {
        guard !done else { return }
        done = true
        promise.succeed(response)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { handshakeDone = true }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if let bytes = buffer.readBytes(length: buffer.readableBytes) { received.append(contentsOf: bytes) }
        do {
            if let response = try parseResponse(received, atEOF: false) {
                succeed(response)
                context.close(promise: nil)
            }
        } catch {
            fail(error)
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        do {
            if let response = try parseResponse(received, atEOF: true), !received.isEmpty {
                succeed(response)
            } else {
                fail(TransportError(kind: .closed, requestSent: handshakeDone, reason: "connection closed before a complete response"))
            }
        } catch {
            fail(error)
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let reason: String
        if let ssl = error as? NIOSSLError {
            reason = handshakeDone ? "TLS error: \(ssl)" : "TLS handshake failed (is the server's certificate from this CA, and is ours accepted?): \(ssl)"
        } else {
            reason = "\(error)"
        }
        fail(TransportError(kind: handshakeDone ? .closed : .connectFailed, requestSent: handshakeDone, reason: reason))
        context.close(promise: nil)
    }
}
