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
