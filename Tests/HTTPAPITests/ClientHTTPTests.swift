import ClusterAPI
import Foundation
import HTTPAPI
import NIOCore
import Testing

/// The client API over real loopback sockets, one server per test.
@Suite("Client HTTP API")
struct ClientHTTPTests {
    // MARK: Routes

    @Test("put, get, delete and the X-Leader-Id header")
    func putGetDelete() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("POST", "/put", body: #"{"key":"k1","value":"v1"}"#),
                    try client.exchange("GET", "/get?key=k1"),
                    try client.exchange("POST", "/delete", body: #"{"key":"k1"}"#),
                    try client.exchange("POST", "/delete", body: #"{"key":"k1"}"#),
                    try client.exchange("GET", "/get?key=k1"),
                ]
            }
            for response in responses {
                #expect(response.header("x-leader-id") == "1")
                #expect(response.header("content-type") == "application/json")
            }
            #expect(responses[0].status == 200)
            let put = try WireJSON.decode(PutResponse.self, from: Data(responses[0].body))
            #expect(put == PutResponse(key: "k1", index: 1))
            let get = try WireJSON.decode(GetResponse.self, from: Data(responses[1].body))
            #expect(get == GetResponse(key: "k1", value: "v1", index: 1))
            #expect(try WireJSON.decode(DeleteResponse.self, from: Data(responses[2].body)).deleted == true)
            #expect(try WireJSON.decode(DeleteResponse.self, from: Data(responses[3].body)).deleted == false)
            #expect(responses[4].status == 404)
            #expect(responses[4].errorCode == "key_not_found")
        }
    }

    @Test("error envelope shape carries the leader hint")
    func errorEnvelope() async throws {
        try await withClientServer { port in
            let response = try await blocking { try RawHTTPClient(port: port).exchange("GET", "/get?key=absent") }
            #expect(response.status == 404)
            let envelope = try WireJSON.decode(APIErrorEnvelope.self, from: Data(response.body))
            #expect(envelope.error.code == .keyNotFound)
            #expect(envelope.error.leaderID == 1)
            #expect(envelope.error.leaderAddress == "127.0.0.1:9081")
            #expect(Set(response.json.keys) == ["error"])
            #expect(Set(response.errorObject.keys) == ["code", "message", "leader_id", "leader_address"])
        }
    }

    @Test("no leader known: no X-Leader-Id, no leader fields")
    func noLeaderHint() async throws {
        try await withClientServer(backend: DictionaryBackend(leader: nil)) { port in
            let response = try await blocking { try RawHTTPClient(port: port).exchange("GET", "/get?key=absent") }
            #expect(response.status == 404)
            #expect(response.header("x-leader-id") == nil)
            #expect(Set(response.errorObject.keys) == ["code", "message"])
        }
    }

    @Test("cas with null, matching and stale expectations")
    func compareAndSwap() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("POST", "/cas", body: #"{"key":"c","expected":null,"value":"1"}"#),
                    try client.exchange("POST", "/cas", body: #"{"key":"c","expected":"1","value":"2"}"#),
                    try client.exchange("POST", "/cas", body: #"{"key":"c","expected":"1","value":"3"}"#),
                    try client.exchange("POST", "/cas", body: #"{"key":"c","value":"3"}"#),
                    try client.exchange("GET", "/get?key=c"),
                ]
            }
            let outcomes = try responses[0..<3].map {
                try WireJSON.decode(CasResponse.self, from: Data($0.body)).succeeded
            }
            #expect(outcomes == [true, true, false])
            #expect(responses[3].status == 400)
            #expect(responses[3].errorCode == "invalid_request")
            #expect(responses[4].json["value"] as? String == "2")
        }
    }

    @Test("scan by prefix with a limit")
    func scan() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                for key in ["a/1", "a/2", "a/3", "b/1"] {
                    _ = try client.exchange("POST", "/put", body: #"{"key":"\#(key)","value":"x"}"#)
                }
                return [
                    try client.exchange("GET", "/scan?prefix=a%2F&limit=2"),
                    try client.exchange("GET", "/scan"),
                    try client.exchange("GET", "/scan?prefix=a&limit=0"),
                    try client.exchange("GET", "/scan?prefix=a&limit=x"),
                    try client.exchange("GET", "/scan?prefix=a%2F&limit=2&after=a%2F2"),
                    try client.exchange("GET", "/scan?prefix=a&consistency=sometimes"),
                    try client.exchange("GET", "/scan?prefix=a&after="),
                ]
            }
            let limited = try WireJSON.decode(ScanResponse.self, from: Data(responses[0].body))
            #expect(limited.entries.map(\.key) == ["a/1", "a/2"])
            #expect(limited.index == 4)
            #expect(limited.next == "a/2")
            let all = try WireJSON.decode(ScanResponse.self, from: Data(responses[1].body))
            #expect(all.entries.count == 4)
            #expect(all.next == nil)
            #expect(responses[2].status == 400)
            #expect(responses[3].status == 400)
            let continued = try WireJSON.decode(ScanResponse.self, from: Data(responses[4].body))
            #expect(continued.entries.map(\.key) == ["a/3"])
            #expect(continued.next == nil)
            #expect(responses[5].status == 400)
            #expect(responses[6].status == 400)
        }
    }

    @Test("consistency query: absent, each name, case-insensitive, unknown")
    func consistencyNames() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return try [
                    "", "&consistency=linearizable", "&consistency=lease", "&consistency=EVENTUAL",
                    "&consistency=strong", "&consistency=",
                ]
                .map { try client.exchange("GET", "/get?key=consistency\($0)") }
            }
            #expect(
                responses[0..<4].map { $0.json["value"] as? String } == [
                    "default", "linearizable", "lease", "eventual",
                ])
            #expect(responses[4].status == 400 && responses[4].errorCode == "invalid_request")
            #expect(responses[5].status == 400)
        }
    }

    @Test("cluster and membership routes")
    func clusterAndMembership() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("GET", "/cluster"),
                    try client.exchange("POST", "/join", body: #"{"node_id":4,"address":"127.0.0.1:9084"}"#),
                    try client.exchange("POST", "/promote", body: #"{"node_id":4}"#),
                    try client.exchange("POST", "/promote", body: #"{"node_id":9}"#),
                    try client.exchange("POST", "/remove", body: #"{"node_id":4}"#),
                    try client.exchange("POST", "/remove", body: #"{"node_id":1}"#),
                    try client.exchange("POST", "/transfer-leader", body: #"{"node_id":2}"#),
                    try client.exchange("POST", "/join", body: #"{"node_id":4}"#),
                    try client.exchange("POST", "/promote", body: #"{"node_id":-1}"#),
                    try client.exchange("POST", "/promote", body: #"{"node_id":0}"#),
                ]
            }
            let cluster = try WireJSON.decode(ClusterResponse.self, from: Data(responses[0].body))
            #expect(cluster.leaderID == 1 && cluster.members.count == 2)
            #expect(try WireJSON.decode(MembershipChangeResponse.self, from: Data(responses[1].body)).nodeID == 4)
            #expect(responses[2].status == 200)
            #expect(responses[3].status == 409 && responses[3].errorCode == "not_caught_up")
            let progress = responses[3].errorObject["progress"] as? [String: Any]
            #expect(progress?["lag_entries"] as? Int == 45)
            #expect(responses[4].status == 200)
            #expect(responses[5].status == 409 && responses[5].errorCode == "conflict")
            #expect(try WireJSON.decode(MembershipChangeResponse.self, from: Data(responses[6].body)).nodeID == 2)
            #expect(responses[7].status == 400 && responses[8].status == 400 && responses[9].status == 400)
        }
    }

    // MARK: Validation

    @Test(
        "malformed bodies are 400 invalid_request",
        arguments: [
            "", "{", "[]", #"{"key":"k","value":"v"} x"#, #"{"key":"k","value":"v",}"#, #"{"key":"k"}"#,
            #"{"value":"v"}"#, #"{"key":5,"value":"v"}"#, #"{"key":"k","value":null}"#, #"{"key":"","value":"v"}"#,
            #"{"key":"k","value":"v","ttl_secs":-1}"#, #"{"key":"k","value":"v","ttl_secs":1.5}"#,
            #"{"key":"k","value":"\ud800"}"#, "{\"key\":\"k\",\"value\":\"a\u{01}b\"}", #"{'key':'k'}"#,
            #"{"key":"k","value":"v","nested":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ])
    func malformedBodies(body: String) async throws {
        try await withClientServer { port in
            let response = try await blocking { try RawHTTPClient(port: port).exchange("POST", "/put", body: body) }
            #expect(response.status == 400)
            #expect(response.errorCode == "invalid_request")
            #expect((response.errorObject["message"] as? String)?.isEmpty == false)
        }
    }

    @Test("accepted bodies: unknown members, whitespace, escapes, ttl")
    func acceptedBodies() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange(
                        "POST", "/put",
                        body: " {\n \"extra\": {\"a\": [1, 2.5e3, true, null]}, "
                            + "\"key\" : \"e\\u00e9\\ud83d\\ude00\\\"q\\n\","
                            + " \"value\": \"\\t\\\\\\/ok\", \"ttl_secs\": 60 } "),
                    try client.exchange("GET", "/get?key=" + percentEncode("eé😀\"q\n")),
                ]
            }
            #expect(responses[0].status == 200)
            let get = try WireJSON.decode(GetResponse.self, from: Data(responses[1].body))
            #expect(get.key == "eé😀\"q\n")
            #expect(get.value == "\t\\/ok")
        }
    }

    @Test("invalid UTF-8 in the body or the percent-decoded query is 400")
    func invalidUTF8() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                let body = Array(#"{"key":"k","value":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
                client.sendRequest("POST", "/put", body: body)
                let first = try client.readResponse()
                return [
                    first,
                    try client.exchange("GET", "/get?key=%C3%28"),
                    try client.exchange("GET", "/get?key=%ZZ"),
                    try client.exchange("GET", "/get?key=abc%4"),
                    try client.exchange("GET", "/get"),
                ]
            }
            for response in responses {
                #expect(response.status == 400)
                #expect(response.errorCode == "invalid_request")
            }
        }
    }

    @Test("oversized key or value is 413 and the connection stays usable")
    func tooLargeFields() async throws {
        let limits = ClientHTTPLimits(maxValueBytes: 1024)
        try await withClientServer(limits: limits) { port in
            let bigKey = String(repeating: "k", count: 4097)
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("POST", "/put", body: #"{"key":"\#(bigKey)","value":"v"}"#),
                    try client.exchange(
                        "POST", "/put", body: #"{"key":"k","value":"\#(String(repeating: "v", count: 1025))"}"#),
                    try client.exchange("GET", "/get?key=\(bigKey)"),
                    try client.exchange(
                        "POST", "/put", body: #"{"key":"k","value":"\#(String(repeating: "v", count: 1024))"}"#),
                ]
            }
            #expect(responses[0..<3].map(\.status) == [413, 413, 413])
            #expect(responses[0..<3].allSatisfy { $0.errorCode == "too_large" })
            #expect(responses[3].status == 200)
        }
    }

    @Test("unknown route is 404, wrong method is 405 with Allow")
    func routing() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("GET", "/nope"),
                    try client.exchange("GET", "/put/"),
                    try client.exchange("GET", "/put"),
                    try client.exchange("DELETE", "/get?key=a"),
                    try client.exchange("GET", "/get?key=k#fragment"),
                ]
            }
            #expect(responses[0].status == 404 && responses[0].errorCode == "not_found")
            #expect(responses[1].status == 404)
            #expect(responses[2].status == 405 && responses[2].errorCode == "invalid_request")
            #expect(responses[2].header("allow") == "POST")
            #expect(responses[3].status == 405 && responses[3].header("allow") == "GET")
            #expect(responses[4].status == 404 && responses[4].errorCode == "key_not_found")
        }
    }

    // MARK: Connection handling

    @Test("keep-alive serves many requests on one connection")
    func keepAlive() async throws {
        try await withClientServer { port in
            let statuses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return try (0..<20).map { index in
                    try client.exchange("POST", "/put", body: #"{"key":"k\#(index)","value":"v"}"#).status
                }
            }
            #expect(statuses == Array(repeating: 200, count: 20))
        }
    }

    @Test("pipelined requests are answered in order")
    func pipelining() async throws {
        try await withClientServer { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                var bytes: [UInt8] = []
                bytes += RawHTTPClient.request("POST", "/put", body: Array(#"{"key":"p","value":"1"}"#.utf8))
                bytes += RawHTTPClient.request("GET", "/get?key=p")
                bytes += RawHTTPClient.request("GET", "/get?key=missing")
                bytes += RawHTTPClient.request("GET", "/nope")
                bytes += RawHTTPClient.request("POST", "/put", body: Array(#"{"key":"p","value":"2"}"#.utf8))
                bytes += RawHTTPClient.request("GET", "/get?key=p")
                client.send(bytes)
                return try (0..<6).map { _ in try client.readResponse() }
            }
            #expect(responses.map(\.status) == [200, 200, 404, 404, 200, 200])
            #expect(responses[1].json["value"] as? String == "1")
            #expect(responses[2].errorCode == "key_not_found")
            #expect(responses[3].errorCode == "not_found")
            #expect(responses[5].json["value"] as? String == "2")
        }
    }

    @Test("a 100 MiB Content-Length is refused with 413 at once and the connection closes")
    func hugeUpload() async throws {
        try await withClientServer { port in
            let started = ContinuousClock.now
            let (response, closed) = try await blocking {
                let client = try RawHTTPClient(port: port)
                client.send("POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: \(100 << 20)\r\n\r\n")
                let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1 << 20)
                for _ in 0..<3 where client.send(chunk) == chunk.count {}
                let response = try client.readResponse()
                return (response, client.waitForClose())
            }
            #expect(response.status == 413)
            #expect(response.errorCode == "too_large")
            #expect(response.header("connection") == "close")
            #expect(closed)
            #expect(ContinuousClock.now - started < .seconds(4))
            let next = try await blocking { try RawHTTPClient(port: port).exchange("GET", "/get?key=k") }
            #expect(next.status == 404)
        }
    }

    @Test("a chunked upload growing past the cap is refused with 413")
    func chunkedOverCap() async throws {
        try await withClientServer(limits: ClientHTTPLimits(maxValueBytes: 1024, maxBodyBytes: 4096)) { port in
            let (response, closed) = try await blocking {
                let client = try RawHTTPClient(port: port)
                client.send("POST /put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                let chunk = "1000\r\n" + String(repeating: "a", count: 4096) + "\r\n"
                client.send(chunk + chunk)
                return (try client.readResponse(), client.waitForClose())
            }
            #expect(response.status == 413)
            #expect(closed)
        }
    }

    @Test("garbage bytes close the connection and the server keeps serving")
    func garbage() async throws {
        try await withClientServer { port in
            var generator = SystemRandomNumberGenerator()
            for round in 0..<5 {
                var bytes = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
                if round == 0 { bytes[0] = 0x00 }
                let garbage = bytes
                let closed = try await blocking {
                    let client = try RawHTTPClient(port: port)
                    client.send(garbage)
                    return client.waitForClose()
                }
                #expect(closed)
            }
            let (first, closed) = try await blocking {
                let client = try RawHTTPClient(port: port)
                client.send("GARBAGE\u{01} / HTTP/1.1\r\n\r\n")
                let response = try client.readResponse()
                return (response, client.waitForClose())
            }
            #expect(first.status == 400 && first.errorCode == "invalid_request")
            #expect(closed)
            let next = try await blocking { try RawHTTPClient(port: port).exchange("GET", "/cluster") }
            #expect(next.status == 200)
        }
    }

    @Test("HTTP/1.0 without keep-alive is closed after the answer; half-close still gets the answer")
    func connectionClose() async throws {
        try await withClientServer { port in
            let (http10, closed10) = try await blocking {
                let client = try RawHTTPClient(port: port)
                client.send("GET /cluster HTTP/1.0\r\n\r\n")
                return (try client.readResponse(), client.waitForClose())
            }
            #expect(http10.status == 200 && http10.header("connection") == "close")
            #expect(closed10)
            let (halfClosed, closedHalf) = try await blocking {
                let client = try RawHTTPClient(port: port)
                client.sendRequest("GET", "/cluster")
                client.shutdownWrite()
                return (try client.readResponse(), client.waitForClose())
            }
            #expect(halfClosed.status == 200)
            #expect(closedHalf)
        }
    }

    @Test("Expect: 100-continue gets an interim response")
    func expectContinue() async throws {
        try await withClientServer { port in
            let (interim, final) = try await blocking {
                let client = try RawHTTPClient(port: port)
                let body = #"{"key":"e","value":"v"}"#
                client.send("POST /put HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n")
                client.send("Content-Length: \(body.utf8.count)\r\n\r\n")
                let interim = try client.readResponse()
                client.send(body)
                return (interim, try client.readResponse())
            }
            #expect(interim.status == 100)
            #expect(final.status == 200)
        }
    }

    @Test("a backend slower than the request timeout is answered 504")
    func requestTimeout() async throws {
        try await withClientServer(limits: ClientHTTPLimits(requestTimeout: .milliseconds(200))) { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [try client.exchange("GET", "/get?key=slow"), try client.exchange("GET", "/get?key=slow2")]
            }
            #expect(responses[0].status == 504 && responses[0].errorCode == "timeout")
            #expect(responses[1].status == 404)
        }
    }

    @Test("forwarded writes are relayed as is, undecoded; reads stay local")
    func forwarding() async throws {
        try await withClientServer(backend: ForwardingBackend()) { port in
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("POST", "/put", body: #"{"key":"k","value":"v"}"#),
                    try client.exchange("GET", "/get?key=k"),
                    try client.exchange("POST", "/put", body: #"{"key":"k"}"#),
                ]
            }
            #expect(responses[0].status == 201)
            #expect(responses[0].json["forwarded"] as? String == "POST /put")
            #expect(responses[0].json["bytes"] as? Int == 23)
            #expect(responses[0].header("x-leader-id") == "2")
            #expect(responses[0].header("x-extra") == "1")
            #expect(responses[0].header("connection") == nil)
            #expect(responses[0].header("x-split") == nil && responses[0].header("injected") == nil)
            #expect(responses[1].json["value"] as? String == "local")
            // Forwarded as received: the node that serves a request is the one that decodes it (the leader answers
            // this one's 400), so no request is decoded twice.
            #expect(responses[2].status == 201)
            #expect(responses[2].json["bytes"] as? Int == 11)
        }
    }
}
