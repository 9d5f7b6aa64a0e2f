import ClusterClient
import Foundation

/// `GET /status` through the tools' client when the cluster is secure (TLS, client certificate, token): the same
/// exchange `dctl` uses. Kept apart from the dashboard's types (both modules name an `Endpoint`).
enum SecureFetch {
    /// `true` once `--cacert` (or a secure `--config-dir`) configured TLS.
    static var isEnabled: Bool { ClientSecurity.current.tls != nil }

    /// Configures TLS from the flags, the `DCTL_*` variables or a secure config dir; returns the config dir's
    /// metrics endpoints (voters) when it has node files, for dtop's default endpoints.
    static func configure(
        configDir: String?, cacert: String?, cert: String?, key: String?, token: String?
    ) throws -> [String] {
        let environment = ProcessInfo.processInfo.environment
        func pick(_ flag: String?, _ variable: String) -> String? {
            if let flag, !flag.isEmpty { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            return nil
        }
        var ca = pick(cacert, "DCTL_CACERT")
        var certFile = pick(cert, "DCTL_CERT")
        var keyFile = pick(key, "DCTL_KEY")
        let tokenValue = pick(token, "DCTL_TOKEN")
        var metrics: [String] = []
        if let configDir {
            let nodes = Discovery.localNodes(in: configDir).nodes
            metrics = nodes.filter(\.isVoter).compactMap { "\($0.metrics)" }
            if ca == nil, let secure = nodes.first(where: { $0.security.tlsEnabled }), let caFile = secure.security.caFile {
                ca = caFile
                let admin = ((caFile as NSString).deletingLastPathComponent as NSString).appendingPathComponent("client.admin")
                if certFile == nil, tokenValue == nil, FileManager.default.fileExists(atPath: admin + ".crt") {
                    certFile = admin + ".crt"
                    keyFile = admin + ".key"
                }
            }
        }
        if let ca {
            ClientSecurity.current = try ClientSecurity.load(
                caFile: ca, certFile: certFile, keyFile: keyFile, token: tokenValue)
        }
        return metrics
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
