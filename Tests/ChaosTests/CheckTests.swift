import ClusterClient
import Foundation
import Linearizability
import Testing

@testable import Chaos

/// The harness's own judgements, without processes: how a response is classified, and the lost-write check.
@Suite("Chaos checks")
struct CheckTests {
    @Test("responses are ok, fail (certainly not applied) or info (unknown) as SPEC's error table says")
    func classification() {
        func status(_ code: Int) -> Completion { .classify(.success(HTTPResponse(status: code))) }
        #expect(status(200) == .ok(status: 200, body: Data()))
        #expect(status(404) == .ok(status: 404, body: Data()))
        for code in [400, 409, 413, 429, 503] { #expect(status(code) == .fail("HTTP \(code)")) }
        for code in [500, 502, 504] { #expect(status(code) == .info("HTTP \(code)")) }
        let refused = TransportError(kind: .connectFailed, requestSent: false, reason: "refused")
        #expect(Completion.classify(.failure(refused)) == .fail("refused"))
        let lost = TransportError(kind: .closed, requestSent: true, reason: "closed")
        #expect(Completion.classify(.failure(lost)) == .info("closed"))
    }

    func history(_ operations: [(KVInput, Outcome<KVOutput>, UInt64?)]) -> History<KVInput, KVOutput> {
        History(
            operations.enumerated().map { i, op in
                HistoryOperation(
                    process: i, input: op.0, outcome: op.1, invokedAt: UInt64(2 * i), returnedAt: UInt64(2 * i + 1),
                    index: op.2)
            })
    }

    @Test("a final value older than the last acknowledged write is a lost write")
    func lostWrite() {
        let h = history([
            (.put(key: "k", value: "a"), .ok(.done), 5),
            (.put(key: "k", value: "b"), .ok(.done), 7),
        ])
        let lost = LostWrites.check(history: h, finalValues: ["k": "a"])
        #expect(lost.count == 1)
        #expect(lost.first?.contains("\"b\" acknowledged at index 7") == true)
        #expect(LostWrites.check(history: h, finalValues: ["k": "b"]).isEmpty)
    }

    @Test("a final value from a write of unknown outcome, or a later index, explains a newer state")
    func explainedFinalValues() {
        let h = history([
            (.put(key: "k", value: "a"), .ok(.done), 5),
            (.put(key: "k", value: "c"), .info, nil),
            (.cas(key: "k", expected: "a", new: "d"), .ok(.swapped(true)), 9),
            (.delete(key: "j"), .ok(.done), 3),
        ])
        #expect(LostWrites.check(history: h, finalValues: ["k": "c"]).isEmpty)
        #expect(LostWrites.check(history: h, finalValues: ["k": "d"]).isEmpty)
        let absent: [String: String?] = ["j": Optional<String>.none]
        #expect(LostWrites.check(history: h, finalValues: absent).isEmpty)
        #expect(LostWrites.check(history: h, finalValues: ["j": "x"]).count == 1)
    }
}
