import ClusterAPI
import Foundation
import HTTPAPI
import NIOCore
import NodeConfig
import NodeSecurity
import PeerTransport

/// Secure mode as the node's shell uses it: the TLS handlers for its listeners and peer links, the authenticator
/// of its HTTP handlers, and what `/status` says (docs/security.md).
struct NodeSecurityWiring: Sendable {
    /// `nil` in plaintext mode.
    let context: SecurityContext?
    let config: NodeConfig

    /// Loads the TLS material when `[security]` configures it; throws (the node refuses to start) when a file is
    /// missing, unreadable, expired, not signed by the CA, or names another node.
    init(config: NodeConfig, log: NodeLog) throws {
        self.config = config
        let security = config.security
        guard security.tlsEnabled, let ca = security.caFile, let cert = security.certFile, let key = security.keyFile
        else {
            context = nil
            let binds = [config.cluster.listenAddress, config.monitoring.metricsAddress]
            if binds.allSatisfy(\.isLoopback) {
                log.always("plaintext mode: no TLS and no authentication; loopback addresses only ([security] in docs/security.md)")
            } else {
                log.always(
                    "WARNING: insecure mode ([security] insecure = true): plaintext without authentication on "
                        + binds.map(\.description).joined(separator: " and ") + "; anyone who reaches these ports controls the cluster")
            }
            return
        }
        do {
            context = try SecurityContext(
                settings: SecurityContext.Settings(
                    files: TLSFiles(caFile: ca, certFile: cert, keyFile: key), tokensFile: security.tokensFile,
                    requireClientCertificate: security.requireClientCert, nodeID: config.cluster.nodeID),
                report: { message in log.warn(message) })
        } catch {
            throw NodeStartupError("[security]: \(error)", exitCode: 78)
        }
        if let summary = context?.material.summary {
            let until = summary.certificateNotAfter.map(CertificateChecker.format) ?? "-"
            log.always(
                "TLS on every port, mutual TLS between peers, authentication required; certificate serial "
                    + "\(summary.certificateSerial ?? "-") valid until \(until), CA until "
                    + CertificateChecker.format(summary.authorityNotAfter))
        }
    }

    /// The HTTP layer's authenticator; `nil` in plaintext mode.
    var authenticator: (any ClientAuthenticator)? {
        context.map(NodeAuthenticator.init)
    }

    /// Puts TLS in front of a freshly accepted connection (client, peer or metrics port).
    func addServerTLS(to channel: any Channel) throws {
        guard let context else { return }
        try channel.pipeline.syncOperations.addHandler(try context.makeServerHandler())
        try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
    }

    var peerTLS: PeerTLS? {
        guard let context else { return nil }
        return PeerTLS(
            addClientHandler: { channel, peer in
                try channel.pipeline.syncOperations.addHandler(try context.makeClientHandler(expectingNode: peer))
                try channel.pipeline.syncOperations.addHandler(TLSWriteCoalescer())
            },
            certifiedNodeID: { channel in channel.tlsPeerIdentity()?.nodeID },
            report: context.report)
    }

    var status: SecurityStatus {
        guard let context else {
            let loopback = config.cluster.listenAddress.isLoopback && config.monitoring.metricsAddress.isLoopback
            return SecurityStatus(mode: loopback ? "plaintext" : "insecure", clientAuth: false)
        }
        let summary = context.material.summary
        return SecurityStatus(
            mode: "tls", clientAuth: true, certificateNotAfter: summary.certificateNotAfter.map(CertificateChecker.format),
            certificateSerial: summary.certificateSerial, caNotAfter: CertificateChecker.format(summary.authorityNotAfter))
    }
}

/// Client certificates and bearer tokens, for the HTTP handlers.
struct NodeAuthenticator: ClientAuthenticator {
    let context: SecurityContext

    func certificateIdentity(of channel: any Channel) -> CertificateIdentity? {
        channel.tlsPeerIdentity()
    }

    func authenticate(authorization: String?, certificate: CertificateIdentity?) -> Result<Caller, APIError> {
        context.authenticate(authorization: authorization, certificate: certificate)
    }
}
