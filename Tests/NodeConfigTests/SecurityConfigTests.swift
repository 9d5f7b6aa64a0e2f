import NodeConfig
import Testing

/// `[security]`: TLS files all or none, loopback-only plaintext unless `insecure = true`, and the keys that need TLS.
@Suite struct SecurityConfigTests {
    /// `baseTOML` with its `[security] insecure = true` replaced by `section`.
    func secured(_ section: String) -> String {
        base(replacing: "[security]\ninsecure = true", with: section)
    }

    @Test func plaintextOnANetworkAddressIsRefusedWithTheWayOut() {
        #expect(throws: ConfigError.self) { try parse(secured("")) }
        do {
            _ = try parse(secured(""))
        } catch {
            #expect(error.description.hasPrefix("test.toml: cluster.listen_address: 0.0.0.0:9081 is not a loopback address"))
            #expect(error.description.contains("insecure = true"))
            #expect(error.description.contains("dctl certs init"))
        }
    }

    @Test func metricsOnANetworkAddressIsRefusedToo() throws {
        let text = secured("")
            .replacingOccurrences(of: "0.0.0.0:", with: "127.0.0.1:")
            .replacingOccurrences(of: "metrics_address = \"127.0.0.1:8081\"", with: "metrics_address = \"10.1.2.3:8081\"")
        #expect(throws: ConfigError.self) { try parse(text) }
        let loopback = secured("").replacingOccurrences(of: "0.0.0.0:", with: "127.0.0.1:")
        let config = try parse(loopback)
        #expect(!config.security.tlsEnabled)
    }

    @Test func insecureAllowsNetworkAddresses() throws {
        let config = try parse(baseTOML)
        #expect(config.security.insecure)
        #expect(!config.security.tlsEnabled)
    }

    @Test func tlsNeedsAllThreeFiles() {
        let partial = secured("[security]\nca_file = \"certs/ca.crt\"\ncert_file = \"certs/node.1.crt\"")
        do {
            _ = try parse(partial)
            Issue.record("a partial TLS configuration loaded")
        } catch {
            #expect(error.description == "test.toml: security.key_file: TLS needs ca_file, cert_file and key_file together; missing key_file")
        }
    }

    @Test func tlsConfigurationLoadsOnNetworkAddresses() throws {
        let config = try parse(
            secured(
                """
                [security]
                ca_file = "certs/ca.crt"
                cert_file = "certs/node.1.crt"
                key_file = "certs/node.1.key"
                require_client_cert = true
                tokens_file = "certs/tokens"
                reload_interval_ms = 1000
                """))
        #expect(config.security.tlsEnabled)
        #expect(config.security.requireClientCert)
        #expect(config.security.tokensFile == "certs/tokens")
        #expect(config.security.reloadIntervalMs == 1000)
    }

    @Test(arguments: [
        ("[security]\ninsecure = true\ntokens_file = \"t\"", "test.toml: security.tokens_file: needs TLS"),
        ("[security]\ninsecure = true\nrequire_client_cert = true", "test.toml: security.require_client_cert: needs TLS"),
        ("[security]\ninsecure = true\nreload_interval_ms = 5", "test.toml: security.reload_interval_ms:"),
        ("[security]\nverify = false", "test.toml: security.verify:"),
    ])
    func badSecurityKeysAreNamed(section: String, prefix: String) {
        do {
            _ = try parse(secured(section))
            Issue.record("loaded: \(section)")
        } catch {
            #expect(error.description.hasPrefix(prefix), "\(error.description)")
        }
    }

    @Test func environmentOverridesReachTheSection() throws {
        let config = try parse(secured(""), environment: ["RAFT__SECURITY__INSECURE": "true"])
        #expect(config.security.insecure)
    }

    @Test(arguments: [
        ("127.0.0.1", true), ("127.1.2.3", true), ("localhost", true), ("::1", true), ("0.0.0.0", false),
        ("10.0.0.1", false), ("127.evil.example", false), ("127.0.0.1.nip.io", false), ("1270.0.0.1", false),
    ])
    func loopbackMeansTheAddressNotAPrefix(host: String, loopback: Bool) {
        #expect(HostPort(host: host, port: 1).isLoopback == loopback)
    }
}
