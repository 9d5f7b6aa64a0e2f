import ClusterClient
import Foundation

/// `GET /status` through the tools' client when the cluster is secure (TLS, client certificate, token): the same
/// exchange `dctl` uses. Kept apart from the dashboard's types (both modules name an `Endpoint`).
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

    /// The status body, or a short reason.
    static func status(host: String, port: Int, timeoutMs: Int) -> Result<(code: Int, body: Data), TransportError> {
        let timeout = Duration.milliseconds(timeoutMs)
        do {
            let response = try blockingExchange(
                method: "GET", endpoint: Endpoint(host: host, port: port, secure: true), path: "/status", body: nil,
                deadline: ContinuousClock.now + timeout, timeout: timeout)
            return .success((response.status, response.body))
        } catch {
            return .failure(error)
        }
    }
}
