import ClusterAPI
import Foundation
import HTTPAPI
import NIOPosix
import Synchronization
import Testing

@Suite("Metrics port")
struct MetricsHTTPTests {
    private static let status = NodeStatus(
        nodeID: 2, address: "127.0.0.1:9082", role: .follower, term: 7, leaderID: 1, commitIndex: 42,
        appliedIndex: 42, lastLogIndex: 43, snapshotIndex: 0, voters: [1, 2, 3], learners: [], leaseRemainingMs: 0,
        uptimeMs: 1000, peers: [], stats: NodeStats(writesTotal: 3, readsTotal: 4, writeP99Ms: 1.5))

    /// A health switch shared between the test and the provider.
    private final class HealthFlag: Sendable {
        private let state = Mutex(true)
        var value: Bool {
            get { state.withLock { $0 } }
        }
        func set(_ healthy: Bool) { state.withLock { $0 = healthy } }
    }

    /// Binds the metrics port with a health flag the test can flip.
    private func withMetricsServer(_ body: (Int, HealthFlag) async throws -> Void) async throws {
        let healthy = HealthFlag()
        let endpoints = MetricsEndpoints(
            metrics: {
                var text = PrometheusText()
                text.counter("dengine_writes_total", help: "Writes applied.", value: 3)
                return text.output
            },
            status: { Self.status },
            health: {
                let ok = healthy.value
                return HealthReport(
                    healthy: ok, nodeID: 2, role: .follower, leaderID: ok ? 1 : nil, reason: ok ? nil : "no leader")
            })
        let channel = try await MetricsHTTPServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, endpoints: endpoints)
        do {
            try await body(channel.localAddress!.port!, healthy)
            try await channel.close()
        } catch {
            try? await channel.close()
            throw error
        }
    }

    @Test("/metrics, /status and /health")
    func endpoints() async throws {
        try await withMetricsServer { port, healthy in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("GET", "/metrics"),
                    try client.exchange("GET", "/status"),
                    try client.exchange("GET", "/health"),
                ]
            }
            #expect(responses[0].status == 200)
            #expect(responses[0].header("content-type") == PrometheusText.contentType)
            #expect(responses[0].bodyText.contains("# TYPE dengine_writes_total counter\ndengine_writes_total 3\n"))
            #expect(try WireJSON.decode(NodeStatus.self, from: Data(responses[1].body)) == Self.status)
            #expect(responses[2].status == 200)
            #expect(responses[2].json["status"] as? String == "ok")
            #expect(responses[2].json["leader_id"] as? Int == 1)

            healthy.set(false)
            let unhealthy = try await blocking { try RawHTTPClient(port: port).exchange("GET", "/health") }
            #expect(unhealthy.status == 503)
            #expect(unhealthy.json["status"] as? String == "unhealthy")
            #expect(unhealthy.json["reason"] as? String == "no leader")
            #expect(unhealthy.json["leader_id"] is NSNull)
        }
    }

    @Test("unknown path is 404, wrong method is 405, both in the envelope")
    func errors() async throws {
        try await withMetricsServer { port, _ in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [try client.exchange("GET", "/nope"), try client.exchange("POST", "/metrics", body: "x")]
            }
            #expect(responses[0].status == 404 && responses[0].errorCode == "not_found")
            #expect(responses[1].status == 405 && responses[1].errorCode == "invalid_request")
            #expect(responses[1].header("allow") == "GET")
        }
    }
}
