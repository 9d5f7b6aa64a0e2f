import ClusterClient
import Foundation

/// dtop's secure mode (TLS, client certificate, token): the settings `dctl` resolves, installed process-wide for
/// `StatusFetcher`, which uses the same client as `dctl`.
enum SecureFetch {
    /// `true` once `--cacert` (or a secure `--config-dir`) configured TLS.
    static var isEnabled: Bool { ClientSecurity.current.tls != nil }

    /// Configures TLS from the flags, the `DCTL_*` variables or a secure config dir (`ClientSecurity.resolve`);
    /// returns the config dir's metrics endpoints (voters) when it has node files, for dtop's default endpoints.
    static func configure(
        configDir: String?, cacert: String?, cert: String?, key: String?, token: String?
    ) throws -> [String] {
        if let security = try ClientSecurity.resolve(
            cacert: cacert, cert: cert, key: key, token: token, configDir: configDir)
        {
            ClientSecurity.current = security
        }
        guard let configDir else { return [] }
        return Discovery.localNodes(in: configDir).nodes.filter(\.isVoter).map { "\($0.metrics)" }
    }
}
