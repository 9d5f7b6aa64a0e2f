import ClusterAPI
import NIOCore
import Testing

@testable import HTTPAPI

/// Issue #17: what `/watch` and `/txn` accept, and the `4xx` every bad input gets (validated in the decoder).
@Suite struct CoordinationDecodingTests {
    private func watch(_ uri: String, lastEventID: String? = nil) -> Result<WatchRequest, ClientRequestRejection> {
        ClientRequestDecoder.route(method: .GET, uri: uri).flatMap {
            ClientRequestDecoder.decodeWatch($0, lastEventID: lastEventID)
        }
    }

    private func txn(_ body: String) -> Result<DecodedClientRequest, ClientRequestRejection> {
        ClientRequestDecoder.decode(
            method: .POST, uri: "/txn", body: ByteBuffer(string: body), limits: ClientHTTPLimits(maxValueBytes: 64))
    }

    private func rejection<T>(_ result: Result<T, ClientRequestRejection>) -> ClientRequestRejection? {
        if case .failure(let rejection) = result { return rejection }
        return nil
    }

    @Test func watchRequests() throws {
        #expect(try watch("/watch?key=a").get() == WatchRequest(filter: .key(Array("a".utf8)), since: nil))
        #expect(try watch("/watch?prefix=").get() == WatchRequest(filter: .prefix([]), since: nil))
        #expect(try watch("/watch?prefix=p&since=7").get().since == 7)
        // Last-Event-ID is the last event received: the stream resumes after it, whatever `since` says.
        #expect(try watch("/watch?prefix=p&since=7", lastEventID: " 41 ").get().since == 42)
    }

    @Test(arguments: [
        "/watch", "/watch?key=", "/watch?key=a&prefix=b", "/watch?key=a&since=0", "/watch?key=a&since=-1",
        "/watch?key=a&since=1x", "/watch?key=a&since=99999999999999999999",
    ])
    func badWatchRequests(_ uri: String) {
        #expect(rejection(watch(uri))?.error.code == .invalidRequest)
    }

    @Test func badLastEventID() {
        #expect(rejection(watch("/watch?key=a", lastEventID: "abc"))?.error.code == .invalidRequest)
        #expect(rejection(watch("/watch?key=a", lastEventID: "18446744073709551615"))?.error.code == .invalidRequest)
        #expect(rejection(watch("/watch?key=a", lastEventID: ""))?.error.code == .invalidRequest)
    }

    @Test func aWatchIsNeverDecodedAsACommand() {
        #expect(rejection(ClientRequestDecoder.decode(method: .GET, uri: "/watch?key=a", body: nil, limits: .init()))?
            .error.code == .invalidRequest)
    }

    @Test func transactions() throws {
        let decoded = try txn(
            #"{"compare":[{"key":"a","op":"value","cmp":"=","target":"1"},{"key":"b","op":"index","cmp":"<","target":9},"#
                + #"{"key":"c","op":"exists","cmp":"!=","target":true}],"success":[{"op":"put","key":"a","value":"2"}],"#
                + #""failure":[{"op":"get","key":"a"},{"op":"delete","key":"b"}]}"#
        ).get()
        guard case .txn(let request) = decoded.command else {
            Issue.record("not a txn: \(decoded.command)")
            return
        }
        #expect(request.compare.map(\.op) == [.value, .index, .exists])
        #expect(request.compare[1].target == .integer(9))
        #expect(request.success == [TxnOp(op: .put, key: "a", value: "2")])
        #expect(request.failure.count == 2)
        // Missing branches are empty.
        #expect(try txn("{}").get().command == .txn(TxnRequest()))
    }

    @Test(arguments: [
        ("", APIErrorCode.invalidRequest),
        ("[]", .invalidRequest),
        (#"{"compare":[{"key":"a","op":"size","cmp":"=","target":"1"}]}"#, .invalidRequest),
        (#"{"compare":[{"key":"a","op":"value","cmp":"~","target":"1"}]}"#, .invalidRequest),
        (#"{"compare":[{"key":"a","op":"value","cmp":"=","target":1}]}"#, .invalidRequest),
        (#"{"compare":[{"key":"a","op":"index","cmp":"=","target":"1"}]}"#, .invalidRequest),
        (#"{"compare":[{"key":"a","op":"exists","cmp":"<","target":true}]}"#, .invalidRequest),
        (#"{"compare":[{"key":"a","op":"index","cmp":"=","target":-1}]}"#, .invalidRequest),
        (#"{"compare":[{"op":"value","cmp":"=","target":"1"}]}"#, .invalidRequest),
        (#"{"success":[{"op":"put","key":"a"}]}"#, .invalidRequest),
        (#"{"success":[{"op":"get","key":"a","value":"x"}]}"#, .invalidRequest),
        (#"{"success":[{"op":"put","key":"","value":"x"}]}"#, .invalidRequest),
        (#"{"success":[{"op":"merge","key":"a"}]}"#, .invalidRequest),
        (#"{"success":"put"}"#, .invalidRequest),
    ])
    func badTransactions(_ body: String, _ code: APIErrorCode) {
        #expect(rejection(txn(body))?.error.code == code, "\(body)")
    }

    @Test func transactionLimits() {
        // Keys and values together within max_value_bytes + max_key_bytes (64 + 4096 here).
        let big = String(repeating: "v", count: 3000)
        let twoBig = #"{"success":[{"op":"put","key":"a","value":"\#(big)"},{"op":"put","key":"b","value":"\#(big)"}]}"#
        #expect(rejection(txn(twoBig))?.error.code == .tooLarge)
        let ops = (0...ClientRequestDecoder.maxTxnOperations).map { #"{"op":"get","key":"k\#($0)"}"# }
        #expect(rejection(txn(#"{"success":[\#(ops.joined(separator: ","))]}"#))?.error.code == .tooLarge)
    }

    @Test func watchEventsAreFramedWithTheirIndex() {
        var buffer = ByteBuffer()
        WatchStreamEvent(kind: .change(.put), key: Array("k\"".utf8), value: Array("v".utf8), index: 12, closesIndex: true)
            .write(into: &buffer)
        WatchStreamEvent(kind: .change(.delete), key: Array("k".utf8), value: [], index: 13, closesIndex: false)
            .write(into: &buffer)
        WatchStreamEvent.progress(13).write(into: &buffer)
        #expect(
            String(buffer: buffer) == """
                id: 12
                event: put
                data: {"type":"put","key":"k\\"","value":"v","index":12}

                event: delete
                data: {"type":"delete","key":"k","index":13}

                id: 13
                event: progress
                data: {"index":13}


                """)
    }
}
