import ClusterAPI
import ClusterClient
import Foundation
import HTTPClient
import NodeSecurity

#if canImport(Glibc)
import Glibc
#endif

/// A CA, node certificates 1...nodes and client certificates (admin, reader, writer) in a temporary directory, for
/// secure clusters in tests; `toml` is the `[security]` section of node `{id}` (`LocalCluster.Options.extraTOML`).
final class TestCertificates: @unchecked Sendable {
    let directory: URL
    let ca: IssuedCertificate

    init(nodes: Int) throws {
        directory = URL(fileURLWithPath: NSTemporaryDirectory())
            .appendingPathComponent("dengine-certs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        ca = try CertificateFactory.makeAuthority(days: 30)
        try CertificateFactory.write(ca, to: path("ca"))
        for id in 1...nodes { try issueNode(id) }
        try client("admin", role: .admin)
        try client("reader", role: .readonly)
        try client("writer", role: .readwrite)
        try CertificateFactory.writeText(path("tokens"), "", mode: 0o600)
    }

    deinit { try? FileManager.default.removeItem(at: directory) }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func issueNode(_ id: Int) throws {
        let node = try CertificateFactory.makeNode(id: UInt64(id), hosts: ["127.0.0.1"], authority: ca, days: 30)
        try CertificateFactory.write(node, to: path("node.\(id)"))
    }

    func client(_ name: String, role: ClientRole, notAfter: Date = Date().addingTimeInterval(86_400)) throws {
        let issued = try CertificateFactory.makeClient(
            name: name, role: role, authority: ca, notValidBefore: Date().addingTimeInterval(-7200),
            notValidAfter: notAfter)
        try CertificateFactory.write(issued, to: path("client.\(name)"))
    }

    /// The `[security]` section of node `{id}`.
    var toml: String {
        """
        [security]
        ca_file = "\(path("ca.crt"))"
        cert_file = "\(path("node.{id}.crt"))"
        key_file = "\(path("node.{id}.key"))"
        tokens_file = "\(path("tokens"))"
        reload_interval_ms = 200
        """
    }

    /// Client settings presenting `client.NAME` (none with `nil`), with an optional bearer token.
    func security(_ name: String?, token: String? = nil) throws -> ClientSecurity {
        try ClientSecurity.load(
            caFile: path("ca.crt"), certFile: name.map { path("client.\($0).crt") },
            keyFile: name.map { path("client.\($0).key") }, token: token)
    }
}

// MARK: - Requests to a secure LocalCluster

extension LocalCluster {
    /// One request over TLS to node `id`'s client port (or metrics port), as `security`.
    func secureRequest(
        _ id: Int, _ method: String, _ path: String, body: String? = nil, as security: ClientSecurity,
        metrics: Bool = false
    ) async throws -> ClientHTTPResponse {
        let node = node(id)
        return try await httpExchange(
            method: method,
            endpoint: Endpoint(host: "127.0.0.1", port: metrics ? node.metricsPort : node.clientPort, secure: true),
            path: path, body: body.map { Data($0.utf8) }, timeout: .seconds(3), security: security)
    }

    /// `GET /status` of node `id` over TLS.
    func secureStatus(_ id: Int, as security: ClientSecurity) async throws -> NodeStatus {
        let response = try await secureRequest(id, "GET", "/status", as: security, metrics: true)
        return try WireJSON.decode(NodeStatus.self, from: response.body)
    }

    /// Waits until one node leads and every node follows it at its term; fails fast if a node exits.
    func waitForSecureLeader(as security: ClientSecurity, timeout: Duration = .seconds(20)) async throws -> NodeStatus {
        try await waitFor("a leader every node follows", timeout: timeout) { () async throws -> NodeStatus? in
            for id in ids {
                if let exit = exitStatus(id) {
                    throw NodeExited(id: id, status: exit, stderrTail: stderrText(id))
                }
            }
            var statuses: [NodeStatus] = []
            for id in ids {
                guard let status = try? await secureStatus(id, as: security) else { return nil }
                statuses.append(status)
            }
            guard let leader = statuses.first(where: { $0.role == .leader }),
                statuses.allSatisfy({ $0.leaderID == leader.nodeID && $0.term == leader.term })
            else { return nil }
            return leader
        }
    }
}
