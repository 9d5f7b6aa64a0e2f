import Foundation
import Testing

/// `dctl doctor` on real nodes: a healthy cluster passes every check; a stopped node, a node with another election
/// timeout and an insecure bind are each named, and the exit code is not 0.
@Suite(.serialized) struct DoctorTests {
    @Test func healthyThenEachProblemNamed() throws {
        let cluster = try ClusterDirectory()
        defer { cluster.cleanup() }
        #expect(try cluster.dctl(["cluster", "start", "--timeout", "30s"]).code == 0)
        let healthy = try cluster.dctl(["doctor"])
        #expect(healthy.code == 0, "\(healthy)")
        for name in ["quorum", "clocks", "settings", "security", "disk", "wal", "versions"] {
            #expect(healthy.stdout.contains("ok    \(name)"), "\(name) in \(healthy.stdout)")
        }
        #expect(try cluster.dctl(["cluster", "stop"]).code == 0)

        // Node 1: metrics on every interface, allowed by insecure = true. Node 2: another election timeout.
        let one = "\(cluster.root)/config/n1.toml"
        let text1 = try String(contentsOfFile: one, encoding: .utf8)
            .replacingOccurrences(of: "metrics_address = \"127.0.0.1:", with: "metrics_address = \"0.0.0.0:")
            + "\n[security]\ninsecure = true\n"
        try text1.write(toFile: one, atomically: true, encoding: .utf8)
        let two = "\(cluster.root)/config/n2.toml"
        let text2 = try String(contentsOfFile: two, encoding: .utf8)
            .replacingOccurrences(of: "election_timeout_min = 300", with: "election_timeout_min = 350")
        try text2.write(toFile: two, atomically: true, encoding: .utf8)
        #expect(try cluster.dctl(["cluster", "start", "--timeout", "30s"]).code == 0)
        #expect(try cluster.dctl(["node", "stop", "3", "--force"]).code == 0)
        // Node 3 may have led: the two others elect a leader before the checks (no quorum would be exit 4).
        let leader = try cluster.dctl(["wait", "--for", "leader", "--timeout", "20s"])
        #expect(leader.code == 0, "\(leader)")

        let sick = try cluster.dctl(["doctor", "-o", "json"])
        #expect(sick.code != 0, "\(sick)")
        #expect(sick.stdout.contains(#""name":"quorum","verdict":"warn""#), "\(sick.stdout)")
        #expect(sick.stdout.contains("node 3"))
        #expect(sick.stdout.contains(#""name":"settings","verdict":"fail""#))
        #expect(sick.stdout.contains("election_timeout_min: 300 on node 1 but 350 on node 2"))
        #expect(sick.stdout.contains(#""name":"security","verdict":"warn""#))
        #expect(sick.stdout.contains("node 1 serves plaintext without authentication"))
        let text = try cluster.dctl(["doctor"])
        #expect(text.code == 1, "a failing check exits 1: \(text)")
    }
}
