import ClusterAPI
import Foundation
import NIOCore
import NIOHTTP1
import Testing

@testable import HTTPAPI

// MARK: - JSON

@Suite("Request JSON reader and response writer")
struct JSONCodecTests {
    private func parse(_ text: String) throws(JSONBodyError) -> JSONRequestObject {
        let result = Array(text.utf8).withUnsafeBytes { raw in
            Result { () throws(JSONBodyError) in try JSONRequestObject(parsing: raw) }
        }
        return try result.get()
    }

    @Test("scalars, nested values skipped, last duplicate wins")
    func members() throws {
        let object = try parse(
            #"{"a":"x","n":18446744073709551615,"big":18446744073709551616,"f":-1,"t":true,"#
                + #""z":null,"o":{"p":[1,{"q":"r"}]},"a":"y"}"#)
        #expect(object["a"] == .string("y"))
        #expect(object["n"] == .unsignedInteger(UInt64.max))
        #expect(object["big"] == .otherNumber)
        #expect(object["f"] == .otherNumber)
        #expect(object["t"] == .bool(true))
        #expect(object["z"] == .null)
        #expect(object["o"] == .compound)
        #expect(object["missing"] == nil)
        #expect(try parse("{}").members.isEmpty)
    }

    @Test("escapes and surrogate pairs decode to the same string")
    func escapes() throws {
        let object = try parse(#"{"s":"\"\\\/\b\f\n\r\t\u0041\u00e9\ud83d\ude00"}"#)
        #expect(object["s"] == .string("\"\\/\u{08}\u{0C}\n\r\tAé😀"))
    }

    @Test(
        "rejects what RFC 8259 rejects",
        arguments: [
            "", " ", "{", "}", "[1]", "\"s\"", #"{"a"}"#, #"{"a":}"#, #"{"a":1,}"#, #"{"a":01}"#, #"{"a":1.}"#,
            #"{"a":-}"#, #"{"a":tru}"#, #"{"a":"\x"}"#, #"{"a":"\u12"}"#, #"{"a":"\udc00"}"#, #"{"a":"unterminated}"#,
            #"{"a":[1,]}"#, #"{"a":{"b"}}"#, #"{a:1}"#, #"{"a":1}{"#, "{\"a\":\"tab\there\"}",
        ])
    func rejects(text: String) {
        #expect(throws: JSONBodyError.self) { try parse(text) }
    }

    @Test("invalid UTF-8 is rejected, in plain and escaped strings")
    func invalidUTF8() {
        for bytes: [UInt8] in [[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80]] {
            for prefix in [#"{"a":""#, #"{"a":"\n"#] {
                let body = Array(prefix.utf8) + bytes + Array(#""}"#.utf8)
                #expect(throws: JSONBodyError.self) {
                    try body.withUnsafeBytes { raw in _ = try JSONRequestObject(parsing: raw) }
                }
            }
        }
    }

    @Test("written strings escape quotes, backslashes and control characters and round-trip")
    func writerRoundTrip() throws {
        let tricky = "q\"b\\n\nt\tc\u{01}\u{1F}é😀/\u{7F}"
        var buffer = ByteBuffer()
        ClientResponseEncoder.writeGet(GetResponse(key: tricky, value: "", index: UInt64.max), into: &buffer)
        let text = String(buffer: buffer)
        #expect(text.contains(#"\u0001"#) && text.contains(#"\u001f"#) && text.contains(#"\""#))
        let decoded = try WireJSON.decode(GetResponse.self, from: Data(text.utf8))
        #expect(decoded == GetResponse(key: tricky, value: "", index: UInt64.max))
    }

    @Test("every hand-written body decodes into its ClusterAPI type")
    func handWrittenBodies() throws {
        func text(_ write: (inout ByteBuffer) -> Void) -> Data {
            var buffer = ByteBuffer()
            write(&buffer)
            return Data(String(buffer: buffer).utf8)
        }
        let put = PutResponse(key: "k", index: 0)
        #expect(
            try WireJSON.decode(PutResponse.self, from: text { ClientResponseEncoder.writePut(put, into: &$0) }) == put)
        let delete = DeleteResponse(key: "k", index: 9, deleted: true)
        #expect(
            try WireJSON.decode(
                DeleteResponse.self, from: text { ClientResponseEncoder.writeDelete(delete, into: &$0) }) == delete)
        let cas = CasResponse(succeeded: false, index: 10)
        #expect(
            try WireJSON.decode(CasResponse.self, from: text { ClientResponseEncoder.writeCas(cas, into: &$0) }) == cas)
        for entries in [[], [KeyValue(key: "a", value: "1"), KeyValue(key: "b", value: "\"")]] {
            let scan = ScanResponse(entries: entries, index: 3)
            #expect(
                try WireJSON.decode(ScanResponse.self, from: text { ClientResponseEncoder.writeScan(scan, into: &$0) })
                    == scan)
        }
        let error = APIError(
            code: .notCaughtUp, message: "behind", progress: CatchUpProgress(matchIndex: 1, leaderLastIndex: 5))
        let hint = LeaderHint(id: 3, address: "h:1")
        let envelope = try WireJSON.decode(
            APIErrorEnvelope.self, from: text { ClientResponseEncoder.writeError(error, hint: hint, into: &$0) })
        var expected = error
        expected.leaderID = 3
        expected.leaderAddress = "h:1"
        #expect(envelope.error == expected)
    }
}

// MARK: - Query strings

@Suite("Query strings")
struct QueryStringTests {
    @Test("percent-decoding keeps plus signs and rejects bad escapes")
    func decoding() throws {
        let parameters = try QueryParameters("key=a%20b+c%2B&empty=&flag&key2=%E2%82%AC")
        #expect(parameters["key"] == "a b+c+")
        #expect(parameters["empty"] == "")
        #expect(parameters["flag"] == "")
        #expect(parameters["key2"] == "€")
        #expect(parameters["absent"] == nil)
        // Empty components are skipped; the last of a repeated name wins; `=` inside a value stays.
        let odd = try QueryParameters("&&a=1&&a=2&b=x=y&")
        #expect(odd["a"] == "2")
        #expect(odd["b"] == "x=y")
        #expect(try QueryParameters("&")["a"] == nil)
        for bad in ["k=%", "k=%4", "k=%G0", "k=%FF", "k=%C3%28"] {
            #expect(throws: ClientRequestRejection.self) { try QueryParameters(Substring(bad)) }
        }
    }

    @Test("targets split at ? and drop the fragment")
    func targets() {
        #expect(ClientRequestDecoder.splitTarget("/get?key=a#x") == ("/get", "key=a"))
        #expect(ClientRequestDecoder.splitTarget("/cluster") == ("/cluster", ""))
        #expect(ClientRequestDecoder.splitTarget("/scan?") == ("/scan", ""))
    }
}

// MARK: - Connection state machine

@Suite("Client connection state machine")
struct ConnectionStateMachineTests {
    private func head(_ headers: HTTPHeaders = [:]) -> HTTPRequestHead {
        HTTPRequestHead(version: .http1_1, method: .POST, uri: "/put", headers: headers)
    }

    @Test("a declared length over the cap is rejected at the head, then everything is dropped")
    func earlyReject() {
        var machine = ClientConnectionStateMachine(maxBodyBytes: 10)
        guard case .rejectEarly(let rejection, _) = machine.receivedHead(head(["content-length": "11"])) else {
            Issue.record("expected an early rejection")
            return
        }
        #expect(rejection.error.code == .tooLarge)
        #expect(machine.receivedBody(ByteBuffer(string: "0123456789a")) == .proceed)
        #expect(machine.receivedEnd() == .closeAfterDrain)
        #expect(machine.receivedHead(head()) == .ignore)
    }

    @Test("a streamed body is collected up to the cap and rejected past it")
    func streamedBody() {
        var machine = ClientConnectionStateMachine(maxBodyBytes: 10)
        #expect(machine.receivedHead(head(["expect": "100-Continue"])) == .sendContinue)
        #expect(machine.receivedBody(ByteBuffer(string: "01234")) == .proceed)
        #expect(machine.receivedBody(ByteBuffer(string: "56789")) == .proceed)
        guard case .dispatch(_, let body, let sequence) = machine.receivedEnd() else {
            Issue.record("expected a dispatch")
            return
        }
        #expect(body.map { String(buffer: $0) } == "0123456789")
        #expect(machine.completeRequest(sequence: sequence + 1) == nil)
        #expect(machine.completeRequest(sequence: sequence) != nil)
        #expect(machine.completeRequest(sequence: sequence) == nil)

        #expect(machine.receivedHead(head()) == .proceed)
        #expect(machine.receivedBody(ByteBuffer(string: "0123456789")) == .proceed)
        guard case .rejectEarly = machine.receivedBody(ByteBuffer(string: "x")) else {
            Issue.record("expected a rejection past the cap")
            return
        }
    }

    @Test("a parser error answers 400 only when no response is pending")
    func protocolErrors() {
        var idle = ClientConnectionStateMachine(maxBodyBytes: 10)
        #expect(idle.protocolError() == .respondAndClose)
        var busy = ClientConnectionStateMachine(maxBodyBytes: 10)
        _ = busy.receivedHead(head())
        _ = busy.receivedEnd()
        #expect(busy.protocolError() == .close)
    }
}

// MARK: - Prometheus text

@Suite("Prometheus text")
struct PrometheusTextTests {
    @Test("families, labels, escaping and number formats")
    func exposition() {
        var text = PrometheusText()
        text.counter("raft_proposals_total", help: "Proposals.\nSecond \\ line", value: 42)
        text.gauge(
            "raft peer-lag", help: "Lag.",
            samples: [
                ([("peer", "2"), ("addr", "a\"b\\c\nd")], 1.5), ([("peer", "3")], .infinity),
            ])
        text.summary("write_ms", help: "Write latency.", quantiles: [(0.5, 1), (0.99, 8.25)], sum: 100, count: 40)
        text.histogram(
            "read_ms", help: "Read latency.", buckets: [(1, 2), (5, 3)], sum: 7.5, count: 4, labels: [("n", "1")])
        #expect(
            text.output == """
                # HELP raft_proposals_total Proposals.\\nSecond \\\\ line
                # TYPE raft_proposals_total counter
                raft_proposals_total 42
                # HELP raft_peer_lag Lag.
                # TYPE raft_peer_lag gauge
                raft_peer_lag{peer="2",addr="a\\"b\\\\c\\nd"} 1.5
                raft_peer_lag{peer="3"} +Inf
                # HELP write_ms Write latency.
                # TYPE write_ms summary
                write_ms{quantile="0.5"} 1
                write_ms{quantile="0.99"} 8.25
                write_ms_sum 100
                write_ms_count 40
                # HELP read_ms Read latency.
                # TYPE read_ms histogram
                read_ms_bucket{n="1",le="1"} 2
                read_ms_bucket{n="1",le="5"} 3
                read_ms_bucket{n="1",le="+Inf"} 4
                read_ms_sum{n="1"} 7.5
                read_ms_count{n="1"} 4

                """)
    }

    @Test("names are sanitised")
    func names() {
        #expect(PrometheusText.sanitize("9lives:x-y", allowColon: true) == "_lives:x_y")
        #expect(PrometheusText.sanitize("a:b", allowColon: false) == "a_b")
        #expect(PrometheusText.format(.nan) == "NaN")
        #expect(PrometheusText.format(-.infinity) == "-Inf")
        #expect(PrometheusText.format(0.001) == "0.001")
    }
}
