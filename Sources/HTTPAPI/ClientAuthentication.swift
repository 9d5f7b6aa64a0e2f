import ClusterAPI
import NIOCore

/// Secure mode's authentication, as the HTTP layer sees it (docs/security.md). The node supplies it; `nil`
/// everywhere means plaintext mode, where every request is served without credentials.
public protocol ClientAuthenticator: Sendable {
    /// The identity of the connection's verified client certificate, if any. Called once per connection, on its
    /// event loop.
    func certificateIdentity(of channel: any Channel) -> CertificateIdentity?

    /// The caller of one request: its `Authorization` header if present, else the certificate.
    func authenticate(authorization: String?, certificate: CertificateIdentity?) -> Result<Caller, APIError>
}

extension ClientCommand {
    /// The least role allowed to send this command.
    public var requiredRole: ClientRole {
        switch self {
        case .get, .scan, .cluster: return .readonly
        case .put, .delete, .cas: return .readwrite
        case .join, .promote, .remove, .transferLeader: return .admin
        }
    }

    /// `nil` when `caller` may send this command, else the `403 forbidden` to answer.
    public func authorize(_ caller: Caller) -> APIError? {
        guard caller.role < requiredRole else { return nil }
        return APIError(
            code: .forbidden,
            message: "\(caller.name) has role \(caller.role); this request needs \(requiredRole)")
    }
}

/// Per-connection authentication state of a handler: the certificate is read once, then each request is checked.
struct ConnectionAuthentication {
    let authenticator: any ClientAuthenticator
    private var certificate: CertificateIdentity??

    init(_ authenticator: any ClientAuthenticator) {
        self.authenticator = authenticator
    }

    mutating func authenticate(authorization: String?, channel: any Channel) -> Result<Caller, APIError> {
        if certificate == nil { certificate = .some(authenticator.certificateIdentity(of: channel)) }
        return authenticator.authenticate(authorization: authorization, certificate: certificate ?? nil)
    }
}
