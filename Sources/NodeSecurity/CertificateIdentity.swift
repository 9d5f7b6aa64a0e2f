import ClusterAPI
import SwiftASN1
import X509

/// Reading a ``CertificateIdentity`` from the subject alternative names of a certificate of the cluster's CA.
///
/// - A node certificate carries the URI `urn:dengine:node:N`: the node id is bound into the certificate, so a
///   peer link is accepted only from the member that id names.
/// - A client certificate carries `urn:dengine:role:ROLE`; the caller's name is the subject's common name.
extension CertificateIdentity {
    public static let nodeURIPrefix = "urn:dengine:node:"
    public static let roleURIPrefix = "urn:dengine:role:"

    /// The identity a certificate names; `nil` when it names none (or two).
    public init?(_ certificate: Certificate) {
        guard let names = try? certificate.extensions.subjectAlternativeNames else { return nil }
        var found: CertificateIdentity?
        for name in names {
            guard case .uniformResourceIdentifier(let uri) = name else { continue }
            var identity: CertificateIdentity?
            if uri.hasPrefix(Self.nodeURIPrefix) {
                guard let id = UInt64(uri.dropFirst(Self.nodeURIPrefix.count)), id > 0 else { return nil }
                identity = .node(id)
            } else if uri.hasPrefix(Self.roleURIPrefix) {
                guard let role = ClientRole(rawValue: String(uri.dropFirst(Self.roleURIPrefix.count))),
                    let commonName = certificate.subject.commonName, !commonName.isEmpty
                else { return nil }
                identity = .client(Caller(name: commonName, role: role))
            }
            guard let identity else { continue }
            guard found == nil else { return nil }
            found = identity
        }
        guard let found else { return nil }
        self = found
    }
}

extension DistinguishedName {
    /// The first common name, if any.
    var commonName: String? {
        for rdn in self {
            for attribute in rdn where attribute.type == .RDNAttributeType.commonName {
                return attribute.value.description
            }
        }
        return nil
    }
}
