import ClusterAPI
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import SwiftASN1
import X509

/// A certificate and its private key, PEM-encoded, as `dctl certs` writes them.
public struct IssuedCertificate: Sendable {
    public var certificate: Certificate
    public var certificatePEM: String
    public var privateKeyPEM: String

    public var notValidAfter: Date { certificate.notValidAfter }
}

/// Makes the cluster's certificate authority and the certificates it signs, with no openssl (docs/security.md).
///
/// Keys are ECDSA P-256, signatures ECDSA with SHA-256. Node certificates are valid for TLS servers and clients
/// (a node dials its peers with the same certificate) and name their node id and addresses; client certificates
/// name a role.
public enum CertificateFactory {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// A self-signed CA valid from five minutes ago for `days` days.
    public static func makeAuthority(commonName: String = "dengine cluster CA", days: Int = 3650, now: Date = Date())
        throws -> IssuedCertificate
    {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let name = try DistinguishedName {
            OrganizationName("dengine")
            CommonName(commonName)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: key)
        return try issued(certificate, key)
    }

    /// A node's certificate: `urn:dengine:node:ID`, DNS `localhost`, and the given hosts (IP addresses or names)
    /// plus 127.0.0.1 in its subject alternative names.
    public static func makeNode(
        id: UInt64, hosts: [String], authority: IssuedCertificate, days: Int = 825, now: Date = Date()
    ) throws -> IssuedCertificate {
        var names: [GeneralName] = [.dnsName("localhost"), .uniformResourceIdentifier(CertificateIdentity.nodeURIPrefix + "\(id)")]
        for host in Set(hosts + ["127.0.0.1"]).sorted() where !host.isEmpty {
            if let bytes = ipAddressBytes(host) {
                names.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes))))
            } else if host != "localhost" {
                names.append(.dnsName(host))
            }
        }
        return try makeLeaf(
            commonName: "node.\(id)", names: names, usages: [.serverAuth, .clientAuth], authority: authority,
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Double(days) * 86_400))
    }

    /// A client's certificate: common name `name`, `urn:dengine:role:ROLE`.
    public static func makeClient(
        name: String, role: ClientRole, authority: IssuedCertificate, notValidBefore: Date, notValidAfter: Date
    ) throws -> IssuedCertificate {
        try makeLeaf(
            commonName: name, names: [.uniformResourceIdentifier(CertificateIdentity.roleURIPrefix + role.rawValue)],
            usages: [.clientAuth], authority: authority, notValidBefore: notValidBefore, notValidAfter: notValidAfter)
    }

    /// Reads a CA (or any certificate and key) back from PEM files.
    public static func load(certificateFile: String, keyFile: String) throws -> IssuedCertificate {
        let certificatePEM = try readText(certificateFile)
        let keyPEM = try readText(keyFile)
        do {
            let certificate = try Certificate(pemEncoded: certificatePEM)
            let key = try Certificate.PrivateKey(pemEncoded: keyPEM)
            return try IssuedCertificate(certificate: certificate, certificatePEM: certificatePEM, privateKeyPEM: keyPEM)
                .checked(key)
        } catch {
            throw Failure(description: "\(certificateFile) / \(keyFile): not a PEM certificate and key: \(error)")
        }
    }

    /// Writes `issued` as `base.crt` (0644) and `base.key` (0600, created with that mode).
    public static func write(_ issued: IssuedCertificate, to base: String) throws {
        try writeFile(base + ".crt", issued.certificatePEM, mode: 0o644)
        try writeFile(base + ".key", issued.privateKeyPEM, mode: 0o600)
    }

    // MARK: - Helpers

    private static func makeLeaf(
        commonName: String, names: [GeneralName], usages: [ExtendedKeyUsage.Usage], authority: IssuedCertificate,
        notValidBefore: Date, notValidAfter: Date
    ) throws -> IssuedCertificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        let issuerKey = try Certificate.PrivateKey(pemEncoded: authority.privateKeyPEM)
        let subject = try DistinguishedName {
            OrganizationName("dengine")
            CommonName(commonName)
        }
        let certificate = try Certificate(
            version: .v3, serialNumber: Certificate.SerialNumber(), publicKey: key.publicKey,
            notValidBefore: notValidBefore, notValidAfter: notValidAfter, issuer: authority.certificate.subject,
            subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyAgreement: true))
                try ExtendedKeyUsage(usages)
                SubjectAlternativeNames(names)
                SubjectKeyIdentifier(hash: key.publicKey)
            },
            issuerPrivateKey: issuerKey)
        return try issued(certificate, key)
    }

    private static func issued(_ certificate: Certificate, _ key: Certificate.PrivateKey) throws -> IssuedCertificate {
        IssuedCertificate(
            certificate: certificate, certificatePEM: try certificate.serializeAsPEM().pemString,
            privateKeyPEM: try key.serializeAsPEM().pemString)
    }

    /// IPv4 or IPv6 text as network-order bytes.
    static func ipAddressBytes(_ host: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }

    static func readText(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else { throw Failure(description: "cannot read \(path)") }
        return text
    }

    /// Writes `text` to `path` atomically (temporary file, fsync, rename) with `mode`.
    public static func writeText(_ path: String, _ text: String, mode: mode_t) throws {
        try writeFile(path, text, mode: mode)
    }

    /// A certificate's identity (or subject) and expiry, for listings.
    public static func describe(pem: String) throws -> (subject: String, notAfter: Date) {
        let certificate = try Certificate(pemEncoded: pem)
        let subject: String
        if let identity = CertificateIdentity(certificate) {
            subject = "\(identity)"
        } else if case .isCertificateAuthority = (try? certificate.extensions.basicConstraints) ?? .notCertificateAuthority {
            subject = "cluster CA"
        } else {
            subject = "\(certificate.subject)"
        }
        return (subject, certificate.notValidAfter)
    }

    static func writeFile(_ path: String, _ text: String, mode: mode_t) throws {
        let temporary = path + ".tmp"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw Failure(description: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        let bytes = Array(text.utf8)
        var written = 0
        while written < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            guard count > 0 else {
                close(fd)
                throw Failure(description: "cannot write \(temporary): \(String(cString: strerror(errno)))")
            }
            written += count
        }
        fchmod(fd, mode)
        fsync(fd)
        close(fd)
        guard rename(temporary, path) == 0 else {
            throw Failure(description: "cannot rename \(temporary) to \(path): \(String(cString: strerror(errno)))")
        }
        // The rename is durable only once the directory is.
        let directory = (path as NSString).deletingLastPathComponent
        let directoryFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directoryFD >= 0 {
            fsync(directoryFD)
            close(directoryFD)
        }
    }
}

extension IssuedCertificate {
    fileprivate func checked(_ key: Certificate.PrivateKey) throws -> IssuedCertificate {
        guard key.publicKey == certificate.publicKey else {
            throw CertificateFactory.Failure(description: "the private key does not belong to the certificate")
        }
        return self
    }
}
