import ArgumentParser
import HTTPClient
import NIOCore
import Testing

@testable import BenchKit

@Suite struct HTTPResponseParserTests {
    private func buffer(_ text: String) -> ByteBuffer {
        ByteBuffer(string: text)
    }

    @Test func contentLengthResponsesSplitAnywhere() throws {
        let wire =
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
            + "HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nX-Leader-Id: 1\r\n\r\n{}"
        // Every split point of the two pipelined responses gives the same two answers.
        for split in 0...wire.utf8.count {
            var parser = HTTPResponseParser()
            var input = ByteBuffer()
            var statuses: [Int] = []
            for part in [String(wire.utf8.prefix(split))!, String(wire.utf8.dropFirst(split))!] {
                input.writeString(part)
                while let response = try parser.next(from: &input) { statuses.append(response.status) }
            }
            #expect(statuses == [200, 404], "split at \(split)")
            #expect(input.readableBytes == 0)
        }
    }

    @Test func chunkedBodies() throws {
        var parser = HTTPResponseParser()
        var input = buffer(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;x=y\r\nefg\r\n0\r\n\r\n"
                + "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        let first = try parser.next(from: &input)
        #expect(first == ParsedResponse(status: 200, bodyLength: 7, closes: false))
        let second = try parser.next(from: &input)
        #expect(second == ParsedResponse(status: 503, bodyLength: 0, closes: true))
        #expect(try parser.next(from: &input) == nil)
    }

    @Test func garbageIsAnError() {
        var parser = HTTPResponseParser()
        var input = buffer("SSH-2.0-OpenSSH\r\n\r\n")
        #expect(throws: HTTPParseError.self) { try parser.next(from: &input) }
    }
}

@Suite struct WorkloadTests {
    @Test func keysHaveTheRequestedSize() {
        let shape = KeyShape(keySize: 8)
        #expect(shape.key(42) == "k0000042")
        #expect(shape.key(9_999_999) == "k9999999")
        #expect(KeyShape(keySize: 4).key(12345) == "k12345")
        #expect(KeyShape(valueSize: 256).value.utf8.count == 256)
    }

    @Test func dengineRequests() {
        let builder = RequestBuilder(system: .dengine, host: "127.0.0.1:9081", value: "v\"1")
        var put = ByteBuffer()
        builder.writePut(key: "k0000001", into: &put)
        let body = "{\"key\":\"k0000001\",\"value\":\"v\\\"1\"}"
        #expect(
            put.readString(length: put.readableBytes)
                == "POST /put HTTP/1.1\r\nHost: 127.0.0.1:9081\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
        var get = ByteBuffer()
        builder.writeGet(key: "k 1", consistency: .lease, into: &get)
        #expect(
            get.readString(length: get.readableBytes)
                == "GET /get?key=k%201&consistency=lease HTTP/1.1\r\nHost: 127.0.0.1:9081\r\n\r\n")
    }

    @Test func etcdRequestsUseBase64AndSerializable() {
        let builder = RequestBuilder(system: .etcd, host: "127.0.0.1:2379", value: "hello")
        var put = ByteBuffer()
        builder.writePut(key: "k0000001", into: &put)
        let text = put.readString(length: put.readableBytes)!
        #expect(text.hasPrefix("POST /v3/kv/put HTTP/1.1\r\n"))
        #expect(text.hasSuffix("{\"key\":\"azAwMDAwMDE=\",\"value\":\"aGVsbG8=\"}"))
        for (consistency, serializable) in [(BenchConsistency.linearizable, false), (.lease, true), (.eventual, true)] {
            var get = ByteBuffer()
            builder.writeGet(key: "k0000001", consistency: consistency, into: &get)
            let request = get.readString(length: get.readableBytes)!
            #expect(request.hasPrefix("POST /v3/kv/range HTTP/1.1\r\n"))
            #expect(request.hasSuffix("{\"key\":\"azAwMDAwMDE=\",\"serializable\":\(serializable)}"))
        }
    }
}

@Suite struct OptionsTests {
    @Test func defaultsAreTheStandardShape() throws {
        let options = try LoadOptions.parse([])
        let spec = try options.spec(operation: .put)
        #expect(spec.keys == KeyShape(keySize: 8, valueSize: 256, keySpace: 100_000, sequential: false))
        #expect(spec.stop == .total(10_000))
        #expect(spec.endpoints.map(\.description) == ["127.0.0.1:9081", "127.0.0.1:9082", "127.0.0.1:9083"])
        #expect(spec.clients == 1)
    }

    @Test func hotKeyAndDurationAndEtcdDefaults() throws {
        let options = try LoadOptions.parse(["--system", "etcd", "--hot-key", "--duration", "1.5s", "--conns", "6"])
        let spec = try options.spec(operation: .get(.linearizable))
        #expect(spec.keys.keySpace == 10)
        #expect(spec.stop == .duration(.milliseconds(1500)))
        #expect(spec.endpoints.map(\.port) == [2379, 22379, 32379])
        #expect(spec.clients == 6)
    }

    @Test(arguments: [
        ["--total", "10", "--duration", "1s"],
        ["--conns", "0"],
        ["--conns", "4", "--clients", "2"],
        ["--key-size", "1"],
        ["--endpoints", "localhost"],
        ["--endpoints", "127.0.0.1:99999"],
        ["--duration", "-1s"],
        ["--system", "redis"],
    ])
    func badArgumentsAreRejected(arguments: [String]) {
        #expect(throws: (any Error).self) { try LoadOptions.parse(arguments) }
    }

    @Test func suiteRejectsUnknownScenario() {
        #expect(throws: (any Error).self) { try BenchSuite.parse(["--scenarios", "write-1,nope"]) }
        #expect(throws: (any Error).self) { try BenchSuite.parse(["--etcd-only"]) }
        #expect(throws: (any Error).self) { try BenchMixed.parse(["--write-percent", "101"]) }
    }

    @Test func suiteSelectsScenariosInOrder() throws {
        let suite = try BenchSuite.parse(["--scenarios", "hotkey,write-1", "--hc-conns", "30"])
        let scenarios = try suite.selectedScenarios()
        #expect(scenarios.map(\.name) == ["hotkey", "write-1"])
        #expect(scenarios[0].conns == 30 && scenarios[0].keySpace == 10)
        #expect(scenarios[1].conns == 1 && scenarios[1].firstEndpointOnly)
    }
}

@Suite struct ReportTests {
    private func record(_ system: BenchSystem, _ scenario: String, round: Int, ops: Double, p99: Int) -> RunRecord {
        RunRecord(
            system: system, scenario: scenario, round: round, conns: 120, opsPerSecond: ops, succeeded: Int(ops) * 10,
            notFound: 0, errors: system == .etcd ? ["http_503": 2, "timeout": 1] : [:],
            latency: LatencySummary(count: Int(ops) * 10, mean: 1500, p50: 1200, p90: 2000, p99: p99, p999: 9000,
                                    max: 12_000))
    }

    @Test func csvHasOneLinePerRun() {
        let csv = ReportWriter.csv([record(.dengine, "write-hc", round: 1, ops: 1234.56, p99: 3000)])
        #expect(
            csv == ReportWriter.csvHeader + "\n"
                + "dengine,write-hc,1,120,1234.6,12340,0,0,1500.0,1200,2000,3000,9000,12000,,\n")
        let etcd = ReportWriter.csv([record(.etcd, "write-hc", round: 1, ops: 10, p99: 3000)])
        #expect(etcd.hasSuffix(",http_503=2;timeout=1,\n"), "no CPU measured: an empty cpu_s")
    }

    @Test func markdownRatiosUseMediansOverRounds() {
        let records = [
            record(.dengine, "write-hc", round: 1, ops: 6000, p99: 20_000),
            record(.etcd, "write-hc", round: 1, ops: 2000, p99: 40_000),
            record(.dengine, "write-hc", round: 2, ops: 8000, p99: 30_000),
            record(.etcd, "write-hc", round: 2, ops: 4000, p99: 60_000),
        ]
        let text = ReportWriter.markdown(title: "T", meta: [("commit", "abc123")], records: records)
        #expect(text.hasPrefix("# T\n\n- **commit**: abc123\n"))
        // Medians: 7000 vs 3000 ops/s (2.33x); p99 25 ms vs 50 ms (0.50).
        #expect(text.contains("| write-hc | 7,000 | 3,000 | 2.33x | 1.20 / 25.00 | 1.20 / 50.00 | 0.50 | 0 / 6 |"))
        #expect(text.contains("| etcd | write-hc | 2 | 120 | 4,000 | 1.50 | 1.20 | 2.00 | 60.00 | 9.00 | 12.00 |"))
    }

    @Test func ceilingTableComparesWithNginx() {
        let records = [
            record(.dengine, "read-lease", round: 1, ops: 6000, p99: 20_000),
            record(.etcd, "read-lease", round: 1, ops: 2000, p99: 40_000),
            record(.nginx, "read-lease", round: 1, ops: 24000, p99: 5_000),
        ]
        let text = ReportWriter.markdown(title: "T", meta: [], records: records)
        #expect(text.contains("| read-lease | 6,000 | 2,000 | 3.00x |"))
        #expect(text.contains("| read-lease | 6,000 | 24,000 | 25 % | 1.20 / 20.00 | 1.20 / 5.00 |"))
    }

    @Test func oneSystemHasNoRatioTable() {
        let text = ReportWriter.markdown(
            title: "T", meta: [], records: [record(.dengine, "write-1", round: 1, ops: 700, p99: 1000)])
        #expect(!text.contains("Ratios"))
        #expect(!text.contains("HTTP ceiling"))
        #expect(text.contains("| dengine | write-1 | 1 | 120 | 700 |"))
    }

    @Test func numberFormats() {
        #expect(ReportWriter.formatOps(1_234_567.4) == "1,234,567")
        #expect(ReportWriter.formatOps(999) == "999")
        #expect(ReportWriter.formatMillis(1234) == "1.23")
        #expect(ScenarioMedian.median([3, 1, 2]) == 2)
        #expect(ScenarioMedian.median([4, 1]) == 2.5)
    }
}
