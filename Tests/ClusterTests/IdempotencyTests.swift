import ClusterAPI
import Foundation
import HTTPClient
import Testing
@testable import ClusterTestSupport

/// Issue #15: writes retried with the same `Idempotency-Key` apply once, across a leader kill, through any node.
@Suite(
    "Idempotency-Key (processes)", .serialized, .tags(.cluster),
    .enabled(if: ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"].map { $0.isEmpty || $0 == "0" } ?? true)
)
struct IdempotencyTests {
    /// A request with an `Idempotency-Key` header.
    private func post<Body: Encodable>(
        _ client: NodeClient, _ target: String, _ body: Body, key: String
    ) async throws -> HTTPResponse {
        try await client.send("POST", target, body: try WireJSON.encode(body), headers: [("Idempotency-Key", key)])
    }

    @Test("put, cas and delete answered by the leader, then retried after it is killed: first outcome, applied once",
          .tags(.faults))
    func retriesAfterALeaderKillApplyOnce() async throws {
        try await withLocalCluster { cluster in
            let leaderID = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let survivors = cluster.ids.filter { $0 != leaderID }
            let leader = cluster.client(leaderID)
            try await leader.putOK("x", "0")
            try await leader.putOK("d", "1")

            // First attempts, answered (the client will act as if those answers were lost).
            let cas = try await post(leader, "/cas", CasRequest(key: "x", expected: "0", value: "1"), key: "cas-1")
                .decode(CasResponse.self)
            #expect(cas.succeeded)
            let deleted = try await post(leader, "/delete", DeleteRequest(key: "d"), key: "del-1")
                .decode(DeleteResponse.self)
            #expect(deleted.deleted)
            let put = try await post(leader, "/put", PutRequest(key: "p", value: "first"), key: "put-1")
                .decode(PutResponse.self)

            try await cluster.crash(leaderID)
            _ = try await cluster.waitForLeader(among: survivors, requireMajority: true)
            // Through a follower when there is one (the header must survive forwarding), else the new leader.
            let via = cluster.client(survivors[0])
            // Another client overwrites p: a put applied twice would bring "first" back.
            _ = try await waitFor("a write under the new leader", timeout: .seconds(5)) {
                (try? await via.put("p", "second"))?.status == 200
            }

            let casAgain = try await post(via, "/cas", CasRequest(key: "x", expected: "0", value: "1"), key: "cas-1")
            #expect(casAgain.status == 200, "\(casAgain)")
            let casReplay = try casAgain.decode(CasResponse.self)
            #expect(casReplay.succeeded && casReplay.index == cas.index, "\(casReplay) vs \(cas)")
            let delAgain = try await post(via, "/delete", DeleteRequest(key: "d"), key: "del-1")
                .decode(DeleteResponse.self)
            #expect(delAgain.deleted && delAgain.index == deleted.index, "\(delAgain) vs \(deleted)")
            let putAgain = try await post(via, "/put", PutRequest(key: "p", value: "first"), key: "put-1")
                .decode(PutResponse.self)
            #expect(putAgain.index == put.index)
            #expect(try await via.value(of: "p", consistency: .linearizable) == "second")
            #expect(try await via.value(of: "x", consistency: .linearizable) == "1")

            // The same key with another request is refused; a malformed key is a 400.
            let reused = try await post(via, "/put", PutRequest(key: "p", value: "other"), key: "put-1")
            #expect(reused.status == 422 && reused.bodyText.contains("idempotency_key_reused"), "\(reused)")
            let malformed = try await post(via, "/put", PutRequest(key: "p", value: "v"), key: "")
            #expect(malformed.status == 400, "\(malformed)")

            // The old leader comes back: it replays the same log, so its table agrees.
            try await cluster.restart(leaderID)
            let back = cluster.client(leaderID)
            let fromOld = try await waitFor("node \(leaderID) to serve again", timeout: .seconds(5)) {
                () async throws -> CasResponse? in
                // 503 (no leader known yet) was certainly not proposed: sending again is safe.
                let response = try await post(
                    back, "/cas", CasRequest(key: "x", expected: "0", value: "1"), key: "cas-1")
                return response.status == 200 ? try response.decode(CasResponse.self) : nil
            }
            #expect(fromOld.succeeded && fromOld.index == cas.index)
        }
    }
}

/// Issue #15: one clock for TTLs. Once GET says 404, a CAS expecting the old value fails and a DELETE finds nothing.
@Suite(
    "TTL on log time (processes)", .serialized, .tags(.cluster),
    .enabled(if: ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"].map { $0.isEmpty || $0 == "0" } ?? true)
)
struct TTLProcessTests {
    @Test("a TTL key expires for GET, SCAN, CAS and DELETE alike")
    func expiryIsTheSameForEveryRequest() async throws {
        try await withLocalCluster { cluster in
            let leader = cluster.client(Int(try await cluster.waitForLeader(requireMajority: true).nodeID))
            let put = try await leader.put("t", "old", ttlSecs: 1)
            #expect(put.status == 200, "\(put)")
            #expect(try await leader.value(of: "t", consistency: .linearizable) == "old")
            try await waitFor("the key to expire", timeout: .seconds(5)) {
                try await leader.value(of: "t", consistency: .linearizable) == nil
            }
            let cas = try await leader.cas("t", expected: "old", value: "new").decode(CasResponse.self)
            #expect(!cas.succeeded)
            let deleted = try await leader.delete("t").decode(DeleteResponse.self)
            #expect(!deleted.deleted)
            let scan = try await leader.scan(prefix: "t").decode(ScanResponse.self)
            #expect(scan.entries.isEmpty)
            let zero = try await leader.put("z", "v", ttlSecs: 0)
            #expect(zero.status == 400, "\(zero)")
        }
    }
}
