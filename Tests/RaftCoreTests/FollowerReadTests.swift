import RaftCore
import RaftTestKit
import Testing

/// Follower reads (thesis §6.4): a follower asks its leader for a read index, one message per batch of reads, and
/// serves the batch once applied; the leader answers under its lease or after a heartbeat round.
@Suite struct FollowerReadTests {
    func node(_ id: NodeID, configure: (inout RaftConfig) -> Void = { _ in }) throws -> RaftNode {
        var config = RaftConfig(id: id, initialMembership: Membership(voters: [1, 2, 3]))
        configure(&config)
        return try RaftNode(config: config, storage: MemoryStorage(), now: 0)
    }

    /// Node 2 following node 1 in term 3.
    func follower() throws -> RaftNode {
        var n = try node(2)
        n.step(Message(from: 1, to: 2, term: 3, body: .heartbeat(commit: 0, round: 1)))
        _ = n.ready()
        return n
    }

    /// Node 1, leader of term 1 with its no-op committed (index 1).
    func leader() throws -> RaftNode {
        var n = try node(1)
        n.winFirstElection()
        n.advance(n.ready())
        n.step(Message(from: 2, to: 1, term: 1, body: .appendResponse(.success(matchIndex: 1), round: 0)))
        #expect(n.hasCommittedInTerm)
        n.advance(n.ready())
        return n
    }

    func sent(_ rd: Ready) -> [Message] { rd.earlyMessages + rd.messages }

    @Test func aFollowerBatchesItsReadsIntoOneRequestPerKindAndServesTheAnswer() throws {
        var n = try follower()
        #expect(n.readIndex(id: 7).failureValue == nil)
        #expect(n.readIndex(id: 8).failureValue == nil)
        #expect(n.readIndex(id: 9, lease: true).failureValue == nil)
        let rd = n.ready()
        // Sent before any persistence: a read-index request depends on nothing being on disk.
        let requests = rd.earlyMessages.filter { $0.to == 1 }.map(\.body)
        #expect(requests == [.readIndex(batch: 1, lease: false), .readIndex(batch: 2, lease: true)])
        #expect(rd.readStates.isEmpty)
        // An answer from another node, or for a batch never sent, is ignored.
        n.step(Message(from: 3, to: 2, term: 3, body: .readIndexResponse(batch: 1, index: 40)))
        n.step(Message(from: 1, to: 2, term: 3, body: .readIndexResponse(batch: 99, index: 40)))
        #expect(n.ready().readStates.isEmpty)
        n.step(Message(from: 1, to: 2, term: 3, body: .readIndexResponse(batch: 1, index: 12)))
        #expect(n.ready().readStates == [ReadState(id: 7, index: 12), ReadState(id: 8, index: 12)])
        // A duplicate answer confirms nothing twice.
        n.step(Message(from: 1, to: 2, term: 3, body: .readIndexResponse(batch: 1, index: 12)))
        #expect(n.ready().readStates.isEmpty)
        n.step(Message(from: 1, to: 2, term: 3, body: .readIndexResponse(batch: 2, index: nil)))
        let refused = n.ready()
        #expect(refused.droppedReads.map(\.id) == [9])
        #expect(refused.droppedReads.map(\.reason) == [.refusedByLeader])
    }

    @Test func aFollowerWithoutALeaderRefusesAndALeaderChangeDropsTheBatch() throws {
        var lone = try node(2)
        #expect(lone.readIndex(id: 1).failureValue == .notLeader(leader: nil))

        var n = try follower()
        _ = n.readIndex(id: 5)
        _ = n.ready()
        _ = n.readIndex(id: 6)
        // Node 3 leads term 4 before the answer: both the batch in flight and the queued read fail (safe to retry).
        n.step(Message(from: 3, to: 2, term: 4, body: .heartbeat(commit: 0, round: 1)))
        let rd = n.ready()
        #expect(Set(rd.droppedReads.map(\.id)) == [5, 6])
        #expect(rd.droppedReads.allSatisfy { $0.reason == .leaderChanged })
        // The old leader's late answer is ignored.
        n.step(Message(from: 1, to: 2, term: 3, body: .readIndexResponse(batch: 1, index: 3)))
        #expect(n.ready().readStates.isEmpty)
    }

    @Test func anUnansweredBatchFailsAfterAnElectionTimeout() throws {
        var n = try follower()
        _ = n.readIndex(id: 5)
        _ = n.ready()
        // The leader keeps heartbeating (so no election), but the request was lost.
        for t in stride(from: UInt64(100), through: 900, by: 100) {
            n.tick(now: t)
            n.step(Message(from: 1, to: 2, term: 3, body: .heartbeat(commit: 0, round: t)))
        }
        #expect(n.ready().droppedReads.isEmpty)
        n.tick(now: 1000)
        n.step(Message(from: 1, to: 2, term: 3, body: .heartbeat(commit: 0, round: 1000)))
        let rd = n.ready()
        #expect(rd.droppedReads.map(\.id) == [5])
        #expect(rd.droppedReads.map(\.reason) == [.noAnswer])
    }

    @Test func theLeaderConfirmsAFollowerBatchWithAHeartbeatRound() throws {
        var n = try leader()
        n.step(Message(from: 2, to: 1, term: 1, body: .readIndex(batch: 41, lease: false)))
        let rd = n.ready()
        #expect(!sent(rd).contains { if case .readIndexResponse = $0.body { return true } else { return false } })
        let round = sent(rd).compactMap { m -> UInt64? in
            if case .heartbeat(_, let r) = m.body { return r } else { return nil }
        }.max()
        #expect(round != nil, "a heartbeat round confirms the read")
        n.step(Message(from: 3, to: 1, term: 1, body: .heartbeatResponse(round: round!)))
        let answered = n.ready()
        #expect(answered.readStates.isEmpty, "a follower's read is answered to the follower, not served here")
        #expect(
            sent(answered).contains(Message(from: 1, to: 2, term: 1, body: .readIndexResponse(batch: 41, index: 1))))
    }

    @Test func underAValidLeaseTheLeaderAnswersAtOnceAndWithoutOneItWaitsForARound() throws {
        var n = try leader()
        // A quorum acknowledges a heartbeat round: the lease runs for 500 ms from the round's start.
        n.tick(now: 1100)
        let rd = n.ready()
        let round = sent(rd).compactMap { m -> UInt64? in
            if case .heartbeat(_, let r) = m.body { return r } else { return nil }
        }.max()!
        n.step(Message(from: 2, to: 1, term: 1, body: .heartbeatResponse(round: round)))
        #expect(n.leaseRemaining > 0)
        n.step(Message(from: 3, to: 1, term: 1, body: .readIndex(batch: 7, lease: true)))
        #expect(
            sent(n.ready()).contains(Message(from: 1, to: 3, term: 1, body: .readIndexResponse(batch: 7, index: 1))))
        // Past the lease, the same request needs a round; a linearizable one always does.
        n.tick(now: 1100 + 600)
        #expect(n.leaseRemaining == 0)
        n.step(Message(from: 3, to: 1, term: 1, body: .readIndex(batch: 8, lease: true)))
        #expect(!sent(n.ready()).contains { $0.body == .readIndexResponse(batch: 8, index: 1) })
    }

    @Test func strangersAndNonLeadersGetARefusal() throws {
        var n = try leader()
        n.step(Message(from: 9, to: 1, term: 1, body: .readIndex(batch: 3, lease: false)))
        #expect(sent(n.ready()).contains(Message(from: 1, to: 9, term: 1, body: .readIndexResponse(batch: 3, index: nil))))
        var f = try follower()
        f.step(Message(from: 3, to: 2, term: 3, body: .readIndex(batch: 4, lease: true)))
        #expect(sent(f.ready()).contains(Message(from: 2, to: 3, term: 3, body: .readIndexResponse(batch: 4, index: nil))))
    }

    @Test func aFloodOfBatchesWithoutConfirmationIsRefusedBeyondTheCap() throws {
        var n = try leader()
        // No follower answers heartbeats: nothing confirms, so every batch stays queued.
        for batch in 1...UInt64(RaftNode.maxQueuedReads) {
            n.step(Message(from: 2, to: 1, term: 1, body: .readIndex(batch: batch, lease: false)))
        }
        let overflow = UInt64(RaftNode.maxQueuedReads) + 1
        n.step(Message(from: 2, to: 1, term: 1, body: .readIndex(batch: overflow, lease: false)))
        let refusals = sent(n.ready()).filter { if case .readIndexResponse(_, nil) = $0.body { true } else { false } }
        #expect(refusals.map(\.body) == [.readIndexResponse(batch: overflow, index: nil)])
    }

    @Test func aDeposedLeaderForgetsFollowerBatchesButFailsItsOwnReads() throws {
        var n = try leader()
        _ = n.readIndex(id: 70)
        n.step(Message(from: 2, to: 1, term: 1, body: .readIndex(batch: 5, lease: false)))
        _ = n.ready()
        n.step(Message(from: 3, to: 1, term: 2, body: .heartbeat(commit: 1, round: 1)))
        let rd = n.ready()
        #expect(rd.droppedReads.map(\.id) == [70])
        #expect(!sent(rd).contains { if case .readIndexResponse = $0.body { return true } else { return false } })
    }
}
