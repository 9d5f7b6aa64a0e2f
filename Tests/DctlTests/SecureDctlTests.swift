import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `dctl` against a secure cluster made from its config dir: certificates created by `cluster start`, TLS and the
/// admin certificate picked up from the config dir, client certificates and tokens by flag, roles enforced.
@Suite(.serialized) struct SecureDctlTests {
    @Test func aSecureConfigDirJustWorks() throws {
        let cluster = try ClusterDirectory(secure: true)
        defer { cluster.cleanup() }

        let start = try cluster.dctl(["cluster", "start", "--timeout", "30s"])
        #expect(start.code == 0, "\(start)")
        #expect(start.stderr.contains("certificate files in certs/ (dctl certs init)"))
        for name in ["ca", "node.1", "node.2", "node.3", "client.admin", "client.reader"] {
            let key = "\(cluster.root)/certs/\(name).key"
            let mode = try FileManager.default.attributesOfItem(atPath: key)[.posixPermissions] as? Int
            #expect(mode == 0o600, "\(name).key")
        }

        let put = try cluster.dctl(["put", "a", "1"])
        #expect(put.code == 0, "\(put)")
        let reader = ["--cert", "certs/client.reader.crt", "--key", "certs/client.reader.key"]
        let get = try cluster.dctl(["get", "a", "--consistency", "linearizable"] + reader)
        #expect(get.code == 0 && get.stdout == "1\n", "\(get)")
        let refused = try cluster.dctl(["put", "b", "2"] + reader)
        #expect(refused.code == 1, "\(refused)")
        #expect(refused.stderr.contains("forbidden"))

        // Plaintext to the secure ports: refused, and dctl says what to pass.
        let plain = try cluster.dctl(["get", "a", "--endpoints", cluster.endpoint(1), "--config-dir", "nowhere"])
        #expect(plain.code == 4, "\(plain)")
        #expect(plain.stderr.contains("pass --cacert"))

        // A token made now is accepted once the nodes reload the tokens file (every 200 ms here).
        let token = try cluster.dctl(["certs", "token", "ci", "--role", "readwrite"])
        #expect(token.code == 0)
        let value = token.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(value.hasPrefix("dtk_"))
        let tokens = try String(contentsOfFile: "\(cluster.root)/certs/tokens", encoding: .utf8)
        #expect(tokens.contains("ci readwrite sha256:") && !tokens.contains(value))
        var accepted = false
        let deadline = ContinuousClock.now + .seconds(10)
        while !accepted && ContinuousClock.now < deadline {
            let byToken = try cluster.dctl(["put", "c", "3", "--token", value, "--cacert", "certs/ca.crt"])
            accepted = byToken.code == 0
            if !accepted { usleep(100_000) }
        }
        #expect(accepted, "the token was never accepted")

        let again = try cluster.dctl(["certs", "init", "-o", "json"])
        #expect(again.code == 0)
        #expect(!again.stdout.contains("\"created\":true"), "a second init creates nothing: \(again.stdout)")

        let status = try cluster.dctl(["status", "-o", "json"])
        #expect(status.code == 0, "\(status)")
        #expect(status.stdout.contains("\"mode\":\"tls\""))
        // dtop polls the secure cluster with the config dir's CA and admin certificate, and says TLS.
        let dtop = URL(fileURLWithPath: Dctl.binary).deletingLastPathComponent().appendingPathComponent("dtop").path
        let frame = try Dctl.run(["--once", "-o", "json", "--config-dir", "config"], in: cluster.root, executable: dtop)
        #expect(frame.code == 0, "\(frame)")
        #expect(frame.stdout.contains("\"security\":\"tls\""))
        let list = try cluster.dctl(["certs", "list"])
        #expect(list.stdout.contains("node 2") && list.stdout.contains("client reader (readonly)"))
        #expect(try cluster.dctl(["cluster", "stop"]).code == 0)
    }
}
