import ClusterAPI
import Foundation
import Testing

// MARK: - Helpers

/// Encodes with the shared wire settings and decodes back.
private func roundTrip<Value: Codable & Equatable>(_ value: Value) throws -> Value {
    try WireJSON.decode(Value.self, from: WireJSON.encode(value))
}

/// The compact, key-sorted JSON text of `value`.
private func json<Value: Encodable>(_ value: Value) throws -> String {
    String(decoding: try WireJSON.encode(value), as: UTF8.self)
}

private func decode<Value: Decodable>(_ type: Value.Type, _ text: String) throws -> Value {
    try WireJSON.decode(type, from: Data(text.utf8))
}

/// A fully populated status, reused by several tests.
private let sampleStatus = NodeStatus(
    nodeID: 1, address: "0.0.0.0:9081", role: .leader, term: 7, leaderID: 1, commitIndex: 42, appliedIndex: 41,
    lastLogIndex: 43, snapshotIndex: 10, voters: [1, 2, 3], learners: [4], leaseRemainingMs: 350, uptimeMs: 60_000,
    peers: [
        PeerStatus(
            id: 2, address: "0.0.0.0:9082", matchIndex: 43, lagEntries: 0, lastAckMsAgo: 12, state: .replicate),
        PeerStatus(id: 4, address: "127.0.0.1:9084", matchIndex: 0, lagEntries: 43, lastAckMsAgo: nil, state: .probe),
    ],
    stats: NodeStats(writesTotal: 100, readsTotal: 250, writeP99Ms: 3.5)
)

// MARK: - Requests

@Suite struct RequestTests {
    @Test func putRoundTripsAndOmitsAbsentTTL() throws {
        let plain = PutRequest(key: "k", value: "v")
        #expect(try json(plain) == #"{"key":"k","value":"v"}"#)
        #expect(try roundTrip(plain) == plain)
        let expiring = PutRequest(key: "k", value: "v", ttlSecs: 60)
        #expect(try json(expiring) == #"{"key":"k","ttl_secs":60,"value":"v"}"#)
        #expect(try roundTrip(expiring) == expiring)
    }

    @Test func decodesSpecPutExample() throws {
        let request = try decode(PutRequest.self, #"{"key":"k","value":"v"}"#)
        #expect(request == PutRequest(key: "k", value: "v", ttlSecs: nil))
    }

    @Test func putWithoutValueIsRejected() {
        #expect(throws: DecodingError.self) { try decode(PutRequest.self, #"{"key":"k"}"#) }
    }

    @Test func deleteRoundTrips() throws {
        let request = try decode(DeleteRequest.self, #"{"key":"k"}"#)
        #expect(request == DeleteRequest(key: "k"))
        #expect(try json(request) == #"{"key":"k"}"#)
    }

    @Test func casKeepsExplicitNull() throws {
        let absent = CasRequest(key: "k", expected: nil, value: "v")
        #expect(try json(absent) == #"{"expected":null,"key":"k","value":"v"}"#)
        #expect(try roundTrip(absent) == absent)
        let swap = try decode(CasRequest.self, #"{"key":"k","expected":"old","value":"new"}"#)
        #expect(swap == CasRequest(key: "k", expected: "old", value: "new"))
        let null = try decode(CasRequest.self, #"{"key":"k","expected":null,"value":"new"}"#)
        #expect(null.expected == nil)
    }

    @Test func casWithoutExpectedIsRejected() {
        #expect(throws: DecodingError.self) { try decode(CasRequest.self, #"{"key":"k","value":"v"}"#) }
    }

    @Test func membershipRequestsUseNodeID() throws {
        let join = try decode(JoinRequest.self, #"{"node_id":4,"address":"127.0.0.1:9084"}"#)
        #expect(join == JoinRequest(nodeID: 4, address: "127.0.0.1:9084"))
        #expect(try json(join) == #"{"address":"127.0.0.1:9084","node_id":4}"#)
        #expect(try decode(PromoteRequest.self, #"{"node_id":4}"#) == PromoteRequest(nodeID: 4))
        #expect(try decode(RemoveRequest.self, #"{"node_id":4}"#) == RemoveRequest(nodeID: 4))
        #expect(try decode(TransferLeaderRequest.self, #"{"node_id":2}"#) == TransferLeaderRequest(nodeID: 2))
        #expect(try json(PromoteRequest(nodeID: 5)) == #"{"node_id":5}"#)
        #expect(try json(RemoveRequest(nodeID: 5)) == #"{"node_id":5}"#)
        #expect(try json(TransferLeaderRequest(nodeID: 2)) == #"{"node_id":2}"#)
    }

    @Test func negativeNodeIDIsRejected() {
        #expect(throws: DecodingError.self) { try decode(PromoteRequest.self, #"{"node_id":-1}"#) }
    }
}

// MARK: - Responses

@Suite struct ResponseTests {
    @Test func keyValueResponsesHaveSpecShape() throws {
        #expect(try json(PutResponse(key: "k", index: 5)) == #"{"index":5,"key":"k"}"#)
        #expect(try json(GetResponse(key: "k", value: "v", index: 5)) == #"{"index":5,"key":"k","value":"v"}"#)
        #expect(
            try json(DeleteResponse(key: "k", index: 6, deleted: false)) == #"{"deleted":false,"index":6,"key":"k"}"#)
        #expect(try json(CasResponse(succeeded: true, index: 7)) == #"{"index":7,"succeeded":true}"#)
        let scan = ScanResponse(entries: [KeyValue(key: "a", value: "1"), KeyValue(key: "b", value: "2")], index: 9)
        #expect(try json(scan) == #"{"entries":[{"key":"a","value":"1"},{"key":"b","value":"2"}],"index":9}"#)
    }

    @Test func responsesRoundTrip() throws {
        let put = PutResponse(key: "k", index: 5)
        #expect(try roundTrip(put) == put)
        let get = GetResponse(key: "k", value: "é ✓", index: 5)
        #expect(try roundTrip(get) == get)
        let delete = DeleteResponse(key: "k", index: 6, deleted: true)
        #expect(try roundTrip(delete) == delete)
        let cas = CasResponse(succeeded: false, index: 7)
        #expect(try roundTrip(cas) == cas)
        let scan = ScanResponse(entries: [KeyValue(key: "a", value: "1")], index: 9)
        #expect(try roundTrip(scan) == scan)
        let change = MembershipChangeResponse(nodeID: 4, index: 12)
        #expect(try roundTrip(change) == change)
        #expect(try json(change) == #"{"index":12,"node_id":4}"#)
    }

    @Test func clusterWritesNullLeader() throws {
        let members = [
            ClusterMember(id: 1, address: "0.0.0.0:9081", role: .follower, status: .active),
            ClusterMember(id: 4, address: "127.0.0.1:9084", role: .learner, status: .promotable),
        ]
        let leaderless = ClusterResponse(leaderID: nil, term: 3, members: members)
        let text = try json(leaderless)
        #expect(text.hasPrefix(#"{"leader_id":null,"members":[{"address":"0.0.0.0:9081","id":1,"role":"follower""#))
        #expect(try roundTrip(leaderless) == leaderless)
        let led = ClusterResponse(leaderID: 1, term: 3, members: members)
        #expect(try roundTrip(led) == led)
    }

    @Test func decodesClusterExample() throws {
        let body = #"""
            {"leader_id":1,"term":7,"members":[{"id":1,"address":"0.0.0.0:9081","role":"leader","status":"active"},
            {"id":4,"address":"127.0.0.1:9084","role":"learner","status":"promotable"}]}
            """#
        let cluster = try decode(ClusterResponse.self, body)
        #expect(cluster.leaderID == 1)
        #expect(cluster.term == 7)
        #expect(cluster.members.map(\.id) == [1, 4])
        #expect(cluster.members[1].role == .learner)
        #expect(cluster.members[1].status == .promotable)
        #expect(try decode(ClusterResponse.self, #"{"term":1,"members":[]}"#).leaderID == nil)
    }

    @Test func watchEventsOmitValueOnDelete() throws {
        let put = WatchEvent(type: .put, key: "k", value: "v", index: 3)
        #expect(try json(put) == #"{"index":3,"key":"k","type":"put","value":"v"}"#)
        let delete = WatchEvent(type: .delete, key: "k", index: 4)
        #expect(try json(delete) == #"{"index":4,"key":"k","type":"delete"}"#)
        #expect(try roundTrip(delete) == delete)
    }
}

// MARK: - Errors

@Suite struct ErrorEnvelopeTests {
    @Test(arguments: [
        (APIErrorCode.invalidRequest, 400), (.unauthenticated, 401), (.forbidden, 403), (.keyNotFound, 404),
        (.notFound, 404), (.notCaughtUp, 409), (.membershipChangeInProgress, 409), (.conflict, 409), (.tooLarge, 413),
        (.idempotencyKeyReused, 422), (.overloaded, 429),
        (.noLeader, 503), (.unavailable, 503), (.timeout, 504), (.noSpace, 507), (.compacted, 410),
    ])
    func statusMapping(code: APIErrorCode, status: Int) {
        #expect(code.httpStatus == status)
        #expect(APIError(code: code, message: "x").httpStatus == status)
    }

    @Test func everyCodeHasItsSpecName() {
        let names = APIErrorCode.allCases.map(\.rawValue)
        #expect(
            names == [
                "invalid_request", "unauthenticated", "forbidden", "key_not_found", "not_found", "not_caught_up",
                "membership_change_in_progress", "conflict", "too_large", "idempotency_key_reused", "overloaded",
                "no_leader", "unavailable", "timeout", "no_space", "compacted",
            ])
    }

    @Test func onlyUnproposedFailuresAreSafeToRetry() {
        let safe = APIErrorCode.allCases.filter(\.isSafeToRetry)
        #expect(safe == [.overloaded, .noLeader, .unavailable])
    }

    @Test func envelopeShapeWithLeaderHint() throws {
        let envelope = APIErrorEnvelope(
            error: APIError(code: .noLeader, message: "election in progress", leaderID: 1, leaderAddress: "h:9081"))
        #expect(
            try json(envelope)
                == #"{"error":{"code":"no_leader","leader_address":"h:9081","leader_id":1,"#
                + #""message":"election in progress"}}"#
        )
        #expect(try roundTrip(envelope) == envelope)
    }

    @Test func envelopeOmitsAbsentHints() throws {
        let envelope = APIErrorEnvelope(error: APIError(code: .keyNotFound, message: "no such key"))
        #expect(try json(envelope) == #"{"error":{"code":"key_not_found","message":"no such key"}}"#)
    }

    @Test func decodesSpecEnvelopeExample() throws {
        let body = #"{"error":{"code":"no_leader","message":"...","leader_id":1,"leader_address":"..."}}"#
        let envelope = try decode(APIErrorEnvelope.self, body)
        #expect(envelope.error.code == .noLeader)
        #expect(envelope.error.leaderID == 1)
        #expect(envelope.error.leaderAddress == "...")
        #expect(envelope.error.progress == nil)
    }

    @Test func notCaughtUpCarriesProgress() throws {
        let error = APIError(
            code: .notCaughtUp, message: "learner 4 is 90 entries behind",
            progress: CatchUpProgress(matchIndex: 10, leaderLastIndex: 100))
        #expect(error.progress?.lagEntries == 90)
        let text = try json(APIErrorEnvelope(error: error))
        #expect(text.contains(#""progress":{"lag_entries":90,"leader_last_index":100,"match_index":10}"#))
        #expect(try roundTrip(APIErrorEnvelope(error: error)).error == error)
    }

    @Test func unknownCodeFailsToDecode() {
        #expect(throws: DecodingError.self) {
            try decode(APIErrorEnvelope.self, #"{"error":{"code":"teapot","message":"x"}}"#)
        }
    }

    @Test func descriptionMentionsLeader() {
        let error = APIError(code: .noLeader, message: "m", leaderID: 2, leaderAddress: "a:1")
        #expect(error.description == "no_leader: m (leader 2 at a:1)")
        #expect(APIError(code: .timeout, message: "m").description == "timeout: m")
    }
}

// MARK: - Status

@Suite struct NodeStatusTests {
    @Test func roundTrips() throws {
        #expect(try roundTrip(sampleStatus) == sampleStatus)
        var withMembers = sampleStatus
        withMembers.members = [MemberAddress(id: 1, address: "0.0.0.0:9081"), MemberAddress(id: 4, address: "h:9084")]
        withMembers.stateHash = "00000000deadbeef"
        #expect(try roundTrip(withMembers) == withMembers)
        #expect(try json(withMembers).contains(#""members":[{"address":"0.0.0.0:9081","id":1},"#))
        #expect(!(try json(sampleStatus)).contains("members"), "absent when not reported")
    }

    @Test func writesEveryFieldAndNulls() throws {
        var follower = sampleStatus
        follower.role = .follower
        follower.leaderID = nil
        follower.peers = []
        let text = try json(follower)
        for key in [
            "schema_version", "node_id", "address", "role", "term", "leader_id", "commit_index", "applied_index",
            "last_log_index", "snapshot_index", "voters", "learners", "lease_remaining_ms", "uptime_ms", "peers",
            "stats", "writes_total", "reads_total", "write_p99_ms",
        ] {
            #expect(text.contains("\"\(key)\":"), "missing \(key)")
        }
        #expect(text.contains(#""leader_id":null"#))
        #expect(text.contains(#""peers":[]"#))
        #expect(text.hasPrefix(#"{"address":"0.0.0.0:9081","applied_index":41,"commit_index":42"#))
    }

    @Test func peerWritesNullLastAck() throws {
        let peer = sampleStatus.peers[1]
        #expect(
            try json(peer)
                == #"{"address":"127.0.0.1:9084","id":4,"lag_entries":43,"last_ack_ms_ago":null,"match_index":0,"#
                + #""state":"probe"}"#
        )
    }

    @Test func decodesSpecExampleShape() throws {
        let body = #"""
            {"schema_version":1,"node_id":1,"address":"0.0.0.0:9081","role":"leader","term":7,
            "leader_id":1,"commit_index":12,"applied_index":12,"last_log_index":13,"snapshot_index":0,
            "voters":[1,2,3],"learners":[4],"lease_remaining_ms":420,"uptime_ms":5000,
            "peers":[{"id":2,"address":"0.0.0.0:9082","match_index":13,"lag_entries":0,"last_ack_ms_ago":15,
            "state":"replicate"},
            {"id":4,"address":"0.0.0.0:9084","match_index":2,"lag_entries":11,"last_ack_ms_ago":900,
            "state":"snapshot"}],
            "stats":{"writes_total":10,"reads_total":3,"write_p99_ms":1.25}}
            """#
        let status = try decode(NodeStatus.self, body)
        #expect(status.schemaVersion == NodeStatus.currentSchemaVersion)
        #expect(status.role == .leader)
        #expect(status.voters == [1, 2, 3])
        #expect(status.learners == [4])
        #expect(status.peers.map(\.state) == [.replicate, .snapshot])
        #expect(status.peers[1].lagEntries == 11)
        #expect(status.stats.writeP99Ms == 1.25)
    }

    @Test(arguments: ["leader", "follower", "candidate", "learner"])
    func everyRoleDecodes(role: String) throws {
        var text = try json(sampleStatus)
        text = text.replacingOccurrences(of: #""role":"leader""#, with: "\"role\":\"\(role)\"")
        #expect(try decode(NodeStatus.self, text).role.rawValue == role)
    }

    @Test func missingRequiredFieldFails() throws {
        let text = try json(sampleStatus).replacingOccurrences(of: #""term":7,"#, with: "")
        #expect(throws: DecodingError.self) { try decode(NodeStatus.self, text) }
    }
}

// MARK: - Forward compatibility

@Suite struct ForwardCompatibilityTests {
    @Test func statusIgnoresAddedFields() throws {
        var text = try json(sampleStatus)
        text.removeLast()
        text += #","region":"eu","raft":{"pre_vote":true},"tags":[1,2]}"#
        text = text.replacingOccurrences(of: #""state":"probe""#, with: #""state":"probe","paused":true"#)
        text = text.replacingOccurrences(of: #""writes_total":100"#, with: #""writes_total":100,"bytes_total":9"#)
        #expect(try decode(NodeStatus.self, text) == sampleStatus)
    }

    @Test func requestsAndResponsesIgnoreAddedFields() throws {
        #expect(
            try decode(PutRequest.self, #"{"key":"k","value":"v","lease_id":5}"#) == PutRequest(key: "k", value: "v"))
        #expect(
            try decode(CasRequest.self, #"{"key":"k","expected":null,"value":"v","x":{}}"#)
                == CasRequest(key: "k", expected: nil, value: "v"))
        #expect(try decode(JoinRequest.self, #"{"node_id":4,"address":"a:1","zone":"z"}"#).nodeID == 4)
        #expect(try decode(GetResponse.self, #"{"key":"k","value":"v","index":1,"rev":2}"#).value == "v")
        #expect(
            try decode(ScanResponse.self, #"{"entries":[{"key":"a","value":"1","ttl":3}],"index":2,"more":true}"#)
                .entries == [KeyValue(key: "a", value: "1")])
        let cluster = try decode(
            ClusterResponse.self,
            #"{"leader_id":2,"term":1,"config_index":9,"#
                + #""members":[{"id":2,"address":"a:1","role":"leader","status":"active","up":true}]}"#
        )
        #expect(cluster.members.first?.role == .leader)
        let envelope = try decode(
            APIErrorEnvelope.self, #"{"error":{"code":"timeout","message":"m","retry_after_ms":10},"request_id":"r"}"#)
        #expect(envelope.error.code == .timeout)
    }
}

// MARK: - Read consistency

@Suite struct ReadConsistencyTests {
    @Test(arguments: [
        ("linearizable", ReadConsistency.linearizable), ("lease", .lease), ("eventual", .eventual),
        ("LEASE", .lease),
    ])
    func parsesQueryNames(name: String, expected: ReadConsistency) {
        #expect(ReadConsistency(queryName: name) == expected)
        #expect(ReadConsistency(parsing: name) == expected)
    }

    @Test(arguments: [
        ("LinearizableRead", ReadConsistency.linearizable), ("LeaseRead", .lease),
        ("EventualConsistency", .eventual), ("leaseread", .lease),
    ])
    func parsesConfigNames(name: String, expected: ReadConsistency) {
        #expect(ReadConsistency(configName: name) == expected)
        #expect(ReadConsistency(parsing: name) == expected)
        #expect(ReadConsistency(configName: expected.configName) == expected)
    }

    @Test(arguments: ["", "strong", "Lease Read", "linearizableread2"])
    func rejectsOtherNames(name: String) {
        #expect(ReadConsistency(parsing: name) == nil)
    }

    @Test func queryAndConfigNamesDoNotCrossParse() {
        #expect(ReadConsistency(queryName: "LeaseRead") == nil)
        #expect(ReadConsistency(configName: "lease") == nil)
    }

    @Test func codableUsesQueryName() throws {
        #expect(try json([ReadConsistency.lease]) == #"["lease"]"#)
        #expect(try decode([ReadConsistency].self, #"["eventual"]"#) == [.eventual])
    }
}

// MARK: - Issue #18 fields

@Suite struct ConsoleWireTests {
    @Test func newPeerAndStorageFieldsRoundTripAndOldDocumentsStillDecode() throws {
        var status = sampleStatus
        status.peers[0].nextIndex = 43
        status.peers[0].inflight = 2
        status.storage = StorageStatus(
            fsyncP50Ms: 1, fsyncP99Ms: 5, fsyncs: 9, snapshotIndex: 40, snapshotBytes: 1024, firstLogIndex: 30,
            backendBytes: 4096, quotaBytes: 8192)
        let text = try json(status)
        #expect(text.contains(#""next_index":43"#) && text.contains(#""inflight":2"#))
        #expect(text.contains(#""storage":{"backend_bytes":4096"#))
        #expect(try decode(NodeStatus.self, text) == status)
        // A document from a node before these fields: they decode as absent.
        let old = try decode(NodeStatus.self, try json(sampleStatus))
        #expect(old.storage == nil && old.peers.allSatisfy { $0.nextIndex == nil && $0.inflight == nil })
    }

    @Test func eventsRoundTripAndAnUnknownKindIsKept() throws {
        let event = NodeEvent(
            seq: 7, nodeID: 2, atMs: 1000, kind: .electionWon, term: 3, message: "won",
            votes: VoteCount(granted: 2, refused: 1, voters: 3))
        let text = try json(event)
        #expect(text.contains(#""kind":"election_won""#) && !text.contains("peer"))
        #expect(try decode(NodeEvent.self, text) == event)
        let future = text.replacingOccurrences(of: "election_won", with: "quorum_lost")
        #expect(try decode(NodeEvent.self, future).kind.rawValue == "quorum_lost")
    }
}
