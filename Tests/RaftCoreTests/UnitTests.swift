import RaftCore
import RaftTestKit
import Testing

/// Raft §5.2/§5.4: majority arithmetic, table-driven (etcd's quorum/testdata/majority_commit.txt in spirit).
@Suite struct QuorumTests {
    @Test(arguments: [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)])
    func majority(voters: Int, needed: Int) {
        #expect(Quorum.majority(voters) == needed)
    }

    @Test(arguments: [
        ([1: 5], 5 as UInt64),
        ([1: 5, 2: 3], 3),
        ([1: 5, 2: 3, 3: 4], 4),
        ([1: 9, 2: 2, 3: 2], 2),
        ([1: 7, 2: 7, 3: 1, 4: 1, 5: 6], 6),
        ([1: 1, 2: 2, 3: 3, 4: 4], 2),
    ] as [([NodeID: UInt64], UInt64)])
    func committedIndex(acked: [NodeID: UInt64], expected: UInt64) {
        #expect(Quorum.committedIndex(voters: Set(acked.keys), acked: { acked[$0]! }) == expected)
    }

    @Test func missingVotersCountAsZero() {
        #expect(Quorum.committedIndex(voters: [1, 2, 3], acked: { $0 == 1 ? 10 : 0 }) == 0)
        #expect(Quorum.committedIndex(voters: [], acked: { _ in 1 }) == nil)
    }

    @Test func voteResults() {
        #expect(Quorum.voteResult(voters: [1, 2, 3], votes: [1: true]) == .pending)
        #expect(Quorum.voteResult(voters: [1, 2, 3], votes: [1: true, 2: true]) == .won)
        #expect(Quorum.voteResult(voters: [1, 2, 3], votes: [1: true, 2: false, 3: false]) == .lost)
        #expect(Quorum.voteResult(voters: [1, 2, 3, 4], votes: [1: true, 2: true, 3: false]) == .pending)
        // Votes from non-voters (learners) never count.
        #expect(Quorum.voteResult(voters: [1, 2, 3], votes: [1: true, 4: true, 5: true]) == .pending)
    }
}

@Suite struct ProgressTests {
    @Test func probeSendsOneThenWaits() {
        var pr = Progress(next: 5, now: 0)
        #expect(!pr.isPaused(maxInflight: 4))
        pr.sentEntries(lastIndex: 6, count: 2)
        #expect(pr.isPaused(maxInflight: 4))
        pr.resumeProbe()
        #expect(!pr.isPaused(maxInflight: 4))
    }

    @Test func replicateWindowBoundsInflight() {
        var pr = Progress(next: 1, now: 0)
        _ = pr.acknowledge(0)
        pr.becomeReplicate()
        for i in 1...3 { pr.sentEntries(lastIndex: LogIndex(i), count: 1) }
        #expect(pr.isPaused(maxInflight: 3))
        #expect(pr.next == 4)
        let moved = pr.acknowledge(2)
        #expect(moved)
        #expect(pr.inflightCount == 1)
        #expect(!pr.isPaused(maxInflight: 3))
    }

    @Test func staleRejectionsAreIgnored() {
        var pr = Progress(next: 1, now: 0)
        _ = pr.acknowledge(10)
        pr.becomeReplicate()
        pr.sentEntries(lastIndex: 20, count: 10)
        let stale = pr.reject(rejectedIndex: 9, nextGuess: 5)
        #expect(!stale, "a rejection below match is a reordered old reply")
        let current = pr.reject(rejectedIndex: 15, nextGuess: 12)
        #expect(current)
        #expect(pr.state == .probe)
        #expect(pr.next == 12)
        // Backtracking never goes below match + 1.
        let again = pr.reject(rejectedIndex: 11, nextGuess: 3)
        #expect(again)
        #expect(pr.next == 11)
    }

    @Test func snapshotStateWaitsForTheSnapshot() {
        var pr = Progress(next: 1, now: 0)
        pr.becomeSnapshot(index: 50)
        #expect(pr.isPaused(maxInflight: 100))
        pr.becomeProbe()
        #expect(pr.next == 51)
    }
}

@Suite struct CoreUnitTests {
    func node(_ id: NodeID, voters: Set<NodeID> = [1], configure: (inout RaftConfig) -> Void = { _ in }) throws
        -> RaftNode
    {
        var config = RaftConfig(id: id, initialMembership: Membership(voters: voters))
        configure(&config)
        return try RaftNode(config: config, storage: MemoryStorage(), now: 0)
    }

    @Test func implausibleTermsFromTheNetworkAreIgnored() throws {
        var n = try node(2, voters: [1, 2, 3])
        n.step(Message(from: 7, to: 2, term: RaftNode.maxTerm, body: .heartbeat(commit: 0, round: 1)))
        n.step(Message(from: 7, to: 2, term: .max, body: .requestVote(lastIndex: .max, lastTerm: .max, preVote: false, transfer: true)))
        #expect(n.term == 0)
        n.step(Message(from: 1, to: 2, term: 5, body: .heartbeat(commit: 0, round: 1)))
        #expect(n.term == 5 && n.leader == 1)
        n.tick(now: 100_000)  // campaigns from a sane term
        #expect(n.term >= 5 && n.term < 10)
    }

    @Test func configValidationNamesTheProblem() {
        var config = RaftConfig(id: 1, initialMembership: Membership(voters: [1]))
        config.leaseDuration = 950
        #expect(throws: ConfigurationError.self) { try config.validate() }
        config.leaseDuration = 500
        config.electionTimeoutMax = 1000
        #expect(throws: ConfigurationError.self) { try config.validate() }
        config.electionTimeoutMax = 2000
        config.id = 0
        #expect(throws: ConfigurationError.self) { try config.validate() }
    }

    @Test func configRecordRoundTripsAndRejectsGarbage() {
        let record = ConfigChangeRecord(change: .promote(4), result: Membership(voters: [1, 2, 4], learners: [5]))
        #expect(ConfigChangeRecord(encoded: record.encoded) == record)
        #expect(ConfigChangeRecord(encoded: Array(record.encoded.dropLast())) == nil)
        #expect(ConfigChangeRecord(encoded: [9, 0, 0, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 8)) == nil)
        // With the replicated address table; a record without one (written before it existed) still decodes.
        let addressed = ConfigChangeRecord(
            change: .addLearner(5),
            result: Membership(voters: [1, 2, 4], learners: [5], addresses: [1: "10.0.0.1:9081", 5: "[::1]:9085"]))
        #expect(ConfigChangeRecord(encoded: addressed.encoded) == addressed)
        #expect(ConfigChangeRecord(encoded: Array(addressed.encoded.dropLast())) == nil)
        #expect(ConfigChangeRecord(encoded: addressed.encoded + [0]) == nil)
        var rng = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let bytes = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            _ = ConfigChangeRecord(encoded: bytes)  // never crashes
        }
    }

    @Test func singleVoterCommitsOnlyAfterPersisting() throws {
        var n = try node(1)
        n.campaign()
        #expect(n.role == .leader)
        var rd = n.ready()
        #expect(rd.entries.count == 1, "the no-op")
        #expect(rd.committedEntries.isEmpty, "not committed before it is persisted")
        n.advance(rd)
        rd = n.ready()
        #expect(rd.committedEntries.map(\.index) == [1])
        n.advance(rd)
        _ = n.propose([RaftNode.Proposal(data: Array("k=v".utf8), clientID: 9, sequence: 1)])
        rd = n.ready()
        #expect(rd.entries.last?.clientID == 9)
        #expect(rd.entries.last?.sequence == 1)
        n.advance(rd)
        let last = n.ready()
        #expect(last.committedEntries.map(\.index) == [2])
    }

    @Test func followersRefuseProposalsAndReadsWithALeaderHint() throws {
        var n = try node(2, voters: [1, 2, 3]) { $0.followerReads = false }
        n.step(Message(from: 1, to: 2, term: 3, body: .heartbeat(commit: 0, round: 1)))
        let proposed = n.propose([RaftNode.Proposal(data: [1])])
        #expect(proposed.failureValue == .notLeader(leader: 1))
        let read = n.readIndex(id: 1)
        #expect(read.failureValue == .notLeader(leader: 1))
        #expect(n.leaseRead(now: 0).failureValue == .notLeader(leader: 1))
    }

    @Test func readIndexWaitsForTheNoopThenAQuorumRound() throws {
        var n = try node(1, voters: [1, 2, 3])
        n.winFirstElection()
        #expect(n.role == .leader)
        n.advance(n.ready())
        let queued = n.readIndex(id: 77)
        #expect(queued.failureValue == nil)
        let early = n.ready()
        #expect(early.readStates.isEmpty, "the no-op has not committed")
        n.step(Message(from: 2, to: 1, term: 1, body: .appendResponse(.success(matchIndex: 1), round: 0)))
        #expect(n.hasCommittedInTerm)
        let rd = n.ready()
        #expect(rd.readStates.isEmpty, "confirmation round still pending")
        let round = (rd.earlyMessages + rd.messages).compactMap { m -> UInt64? in
            if case .heartbeat(_, let r) = m.body { return r } else { return nil }
        }.max()
        #expect(round != nil, "a heartbeat round confirms the read")
        n.step(Message(from: 3, to: 1, term: 1, body: .heartbeatResponse(round: round!)))
        let confirmed = n.ready()
        #expect(confirmed.readStates == [ReadState(id: 77, index: 1)])
    }

    @Test func learnersNeverCampaign() throws {
        var config = RaftConfig(id: 4, initialMembership: Membership(voters: [1, 2, 3], learners: [4]))
        config.randomSeed = 1
        var n = try RaftNode(config: config, storage: MemoryStorage(), now: 0)
        for t in stride(from: UInt64(100), through: 20_000, by: 100) { n.tick(now: t) }
        n.campaign()
        #expect(n.role == .follower)
        #expect(n.term == 0)
        let rd = n.ready()
        #expect(rd.messages.isEmpty)
    }
}

@Suite struct SimStateMachineTests {
    @Test func retriedCommandsApplyOnce() {
        var sm = SimStateMachine()
        let put = SimStateMachine.command(key: "a", value: "1")
        sm.apply(Entry(term: 1, index: 1, clientID: 5, sequence: 1, data: put))
        sm.apply(Entry(term: 1, index: 2, clientID: 5, sequence: 2, data: SimStateMachine.command(key: "a", value: "2")))
        sm.apply(Entry(term: 2, index: 3, clientID: 5, sequence: 1, data: put))  // a late retry of #1
        #expect(sm.values["a"] == "2")
        #expect(sm.duplicatesSkipped == 1)
        #expect(sm.appliedIndex == 3)
    }
}

extension Result {
    var failureValue: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
