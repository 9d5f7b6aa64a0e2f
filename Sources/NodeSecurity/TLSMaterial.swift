import ClusterAPI
import Foundation
import NIOCore
import NIOSSL
import X509

/// Files of a TLS identity: the cluster CA, and this party's certificate and key (PEM).
public struct TLSFiles: Sendable, Hashable {
    public var caFile: String
    /// `nil` for a client that presents no certificate (it may use a bearer token).
    public var certFile: String?
    public var keyFile: String?

    public init(caFile: String, certFile: String?, keyFile: String?) {
        self.caFile = caFile
        self.certFile = certFile
        self.keyFile = keyFile
    }

    var paths: [String] { [caFile] + [certFile, keyFile].compactMap { $0 } }
}

/// Why TLS material could not be loaded or a certificate was refused: one sentence for a log line or an exit.
public struct TLSMaterialError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Checks a presented certificate against the cluster CA: signed by it, inside its validity period, not a CA
/// itself, naming an identity. The reason for a refusal is a clear sentence ("expired at ...").
public struct CertificateChecker: Sendable {
    public let authority: Certificate

    public init(authority: Certificate) {
        self.authority = authority
    }

    public func check(_ leaf: Certificate, now: Date = Date()) -> Result<CertificateIdentity, TLSMaterialError> {
        let who = leaf.subject.commonName.map { "certificate \"\($0)\"" } ?? "certificate"
        if now > leaf.notValidAfter {
            return .failure(TLSMaterialError("\(who) expired at \(Self.format(leaf.notValidAfter))"))
        }
        if now < leaf.notValidBefore {
            return .failure(TLSMaterialError("\(who) is not valid before \(Self.format(leaf.notValidBefore))"))
        }
        guard leaf.issuer == authority.subject, authority.publicKey.isValidSignature(leaf.signature, for: leaf) else {
            return .failure(TLSMaterialError("\(who) is not signed by the cluster CA"))
        }
        if case .isCertificateAuthority = (try? leaf.extensions.basicConstraints) ?? .notCertificateAuthority {
            return .failure(TLSMaterialError("\(who) is a CA certificate, not a node's or a client's"))
        }
        guard let identity = CertificateIdentity(leaf) else {
            return .failure(TLSMaterialError("\(who) names no dengine node or role"))
        }
        return .success(identity)
    }

    /// `2027-12-04T10:00:00Z`.
    public static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }
}

/// A loaded TLS identity: contexts for serving and dialling, and what to report about the certificates.
public struct TLSMaterial: Sendable {
    public let files: TLSFiles
    public let checker: CertificateChecker
    /// This party's own certificate (`nil` for a certificate-less client).
    public let own: Certificate?
    /// Built lazily per role: a server context needs a certificate.
    let serverContext: NIOSSLContext?
    let clientContext: NIOSSLContext

    /// Loads and checks the files; `requireClientCertificate` applies to the server context.
    ///
    /// - Parameter expectedNode: when set, the own certificate must be a node certificate of this id.
    public init(files: TLSFiles, requireClientCertificate: Bool = false, expectedNode: UInt64? = nil) throws {
        self.files = files
        let authority: Certificate
        do {
            authority = try Certificate(pemEncoded: try CertificateFactory.readText(files.caFile))
        } catch {
            throw TLSMaterialError("\(files.caFile): not a PEM certificate (\(error))")
        }
        checker = CertificateChecker(authority: authority)
        let caNIO = try Self.nioCertificate(files.caFile)

        var chain: [NIOSSLCertificateSource] = []
        var key: NIOSSLPrivateKeySource?
        if let certFile = files.certFile, let keyFile = files.keyFile {
            let ownCertificate: Certificate
            do {
                ownCertificate = try Certificate(pemEncoded: try CertificateFactory.readText(certFile))
            } catch {
                throw TLSMaterialError("\(certFile): not a PEM certificate (\(error))")
            }
            switch checker.check(ownCertificate) {
            case .failure(let reason): throw TLSMaterialError("\(certFile): \(reason)")
            case .success(let identity):
                if let expectedNode, identity != .node(expectedNode) {
                    throw TLSMaterialError("\(certFile) is the certificate of \(identity), not of node \(expectedNode)")
                }
            }
            own = ownCertificate
            chain = [.certificate(try Self.nioCertificate(certFile))]
            do {
                key = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
            } catch {
                throw TLSMaterialError("\(keyFile): not a PEM private key (\(error))")
            }
            let privateKey = try? Certificate.PrivateKey(pemEncoded: CertificateFactory.readText(keyFile))
            guard privateKey?.publicKey == ownCertificate.publicKey else {
                throw TLSMaterialError("\(keyFile) is not the key of \(certFile)")
            }
        } else {
            own = nil
        }

        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv12
        client.trustRoots = .certificates([caNIO])
        client.certificateChain = chain
        client.privateKey = key
        // The server's identity is checked against the CA and its node id by `verify`, not by host name: nodes
        // are dialled by address, and the id bound in the certificate is the stronger check.
        client.certificateVerification = .noHostnameVerification
        do {
            clientContext = try NIOSSLContext(configuration: client)
        } catch {
            throw TLSMaterialError("cannot build a TLS client context: \(error)")
        }
        if let key, !chain.isEmpty {
            var server = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: key)
            server.minimumTLSVersion = .tlsv12
            server.trustRoots = .certificates([caNIO])
            server.certificateVerification = requireClientCertificate ? .noHostnameVerification : .optionalVerification
            do {
                serverContext = try NIOSSLContext(configuration: server)
            } catch {
                throw TLSMaterialError("cannot build a TLS server context: \(error)")
            }
        } else {
            serverContext = nil
        }
    }

    private static func nioCertificate(_ path: String) throws -> NIOSSLCertificate {
        do {
            guard let first = try NIOSSLCertificate.fromPEMFile(path).first else {
                throw TLSMaterialError("no certificate in it")
            }
            return first
        } catch {
            throw TLSMaterialError("\(path): not a PEM certificate (\(error))")
        }
    }

    // MARK: Handlers

    /// A server-side TLS handler: a presented certificate must pass `checker`; refusals go to `refused`.
    public func makeServerHandler(refused: @escaping @Sendable (String) -> Void) throws -> NIOSSLServerHandler {
        guard let serverContext else { throw TLSMaterialError("no certificate to serve TLS with") }
        let checker = self.checker
        return NIOSSLServerHandler(context: serverContext) { certificates, promise in
            promise.succeed(Self.verify(certificates, checker: checker, expectingNode: nil, refused: refused))
        }
    }

    /// A client-side TLS handler. The server must present a node certificate of the CA; of node `expectingNode`
    /// when given.
    public func makeClientHandler(
        expectingNode: UInt64?, refused: @escaping @Sendable (String) -> Void = { _ in }
    ) throws -> NIOSSLClientHandler {
        let checker = self.checker
        return try NIOSSLClientHandler(context: clientContext, serverHostname: nil) { certificates, promise in
            promise.succeed(
                Self.verify(certificates, checker: checker, expectingNode: expectingNode ?? 0, refused: refused))
        }
    }

    /// `expectingNode`: `nil` accepts any identity, `0` any node, `N` only node N.
    static func verify(
        _ certificates: [NIOSSLCertificate], checker: CertificateChecker, expectingNode: UInt64?,
        refused: @Sendable (String) -> Void
    ) -> NIOSSLVerificationResult {
        guard let first = certificates.first, let der = try? first.toDERBytes(),
            let leaf = try? Certificate(derEncoded: der)
        else {
            refused("refused a TLS peer: unreadable certificate")
            return .failed
        }
        switch checker.check(leaf) {
        case .failure(let reason):
            refused("refused a TLS peer: \(reason)")
            return .failed
        case .success(let identity):
            if let expectingNode {
                guard case .node(let id) = identity, expectingNode == 0 || id == expectingNode else {
                    let wanted = expectingNode == 0 ? "a node" : "node \(expectingNode)"
                    refused("refused a TLS peer: expected \(wanted), the certificate is of \(identity)")
                    return .failed
                }
            }
            return .certificateVerified
        }
    }

    // MARK: Reporting

    /// Expiry of the own certificate and of the CA, for `/status` and `dctl certs`.
    public var summary: CertificateSummary {
        CertificateSummary(
            certificateNotAfter: own?.notValidAfter, certificateSerial: own.map { "\($0.serialNumber)" },
            authorityNotAfter: checker.authority.notValidAfter)
    }
}

/// What `/status` says about the certificates in use.
public struct CertificateSummary: Sendable, Hashable {
    public var certificateNotAfter: Date?
    public var certificateSerial: String?
    public var authorityNotAfter: Date
}

// MARK: - Channel identity

extension Channel {
    /// The identity named by the peer's certificate, verified during the handshake; `nil` without TLS or without
    /// a client certificate. Call on the channel's event loop.
    public func tlsPeerIdentity() -> CertificateIdentity? {
        guard let certificate = try? pipeline.syncOperations.nioSSL_peerCertificate(),
            let der = try? certificate.toDERBytes(), let parsed = try? Certificate(derEncoded: der)
        else { return nil }
        return CertificateIdentity(parsed)
    }
}
