import RaftCore
import Testing

/// Well-formed but hostile messages (issue #14): the attacks found against a running cluster, replayed on the core.
/// None may trap, move the term out of reach of the next election, or move leadership past the vote shield.
@Suite struct HostileInputTests {
    func node(_ id: NodeID, voters: Set<NodeID> = [1, 2, 3]) throws -> RaftNode {
        var config = RaftConfig(id: id, initialMembership: Membership(voters: voters))
        config.randomSeed = id
        return try RaftNode(config: config, storage: MemoryStorage(), now: 0)
    }

    /// Node 1 of {1, 2, 3} elected in term 1 with its no-op (index 1) committed.
    func leader() throws -> RaftNode {
        var n = try node(1)
        n.winFirstElection()
        n.advance(n.ready())
        n.step(Message(from: 2, to: 1, term: 1, body: .appendResponse(.success(matchIndex: 1), round: 0)))
        _ = n.ready()
        return n
    }

    /// Node 2 following leader 1 in term 1, holding entries 1...3.
    func follower() throws -> RaftNode {
        var n = try node(2)
        let entries = (1...3).map { Entry(term: 1, index: LogIndex($0)) }
        n.step(
            Message(
                from: 1, to: 2, term: 1,
                body: .appendEntries(prevIndex: 0, prevTerm: 0, entries: entries, commit: 1, round: 1)))
        n.advance(n.ready())
        return n
    }

    @Test("a heartbeat response at term 2^62-1 from a member leaves the leader in its term")
    func forgedHugeTermResponse() throws {
        var n = try leader()
        #expect(n.role == .leader && n.term == 1)
        n.step(Message(from: 2, to: 1, term: RaftNode.maxTerm - 1, body: .heartbeatResponse(round: 0)))
        #expect(n.role == .leader)
        #expect(n.term == 1)
        // Just inside the horizon the leader steps down as Raft requires; far beyond it nothing happens.
        n.step(Message(from: 2, to: 1, term: 1 + RaftNode.termHorizon + 1, body: .heartbeatResponse(round: 0)))
        #expect(n.role == .leader && n.term == 1)
        n.step(Message(from: 2, to: 1, term: 5, body: .heartbeatResponse(round: 0)))
        #expect(n.role == .follower && n.term == 5)
    }

    @Test("nodes pushed to the term horizon still accept each other's elections (term + 1)")
    func horizonLeavesElectionsPossible() throws {
        var n = try node(2)
        let top = RaftNode.termHorizon  // lastTerm 0 + horizon
        n.step(Message(from: 3, to: 2, term: top, body: .heartbeatResponse(round: 0)))
        #expect(n.term == top)
        #expect(!n.acceptsTerm(top + 2))
        #expect(n.acceptsTerm(top + 1))
        n.tick(now: 1000)  // past the boot-time vote shield
        n.step(
            Message(
                from: 3, to: 2, term: top + 1, body: .requestVote(lastIndex: 0, lastTerm: 0, preVote: false, transfer: false)))
        #expect(n.term == top + 1)
        #expect(n.acceptsTerm(RaftNode.maxTerm) == false)
    }

    @Test("AppendEntries with non-contiguous indexes is dropped, not trapped on")
    func nonContiguousAppend() throws {
        var n = try follower()
        #expect(n.lastIndex == 3)
        let gaps = [Entry(term: 1, index: 4), Entry(term: 1, index: 9)]
        n.step(Message(from: 1, to: 2, term: 1, body: .appendEntries(prevIndex: 3, prevTerm: 1, entries: gaps, commit: 9, round: 2)))
        let offByOne = [Entry(term: 1, index: 6)]
        n.step(Message(from: 1, to: 2, term: 1, body: .appendEntries(prevIndex: 3, prevTerm: 1, entries: offByOne, commit: 0, round: 2)))
        let newerTerm = [Entry(term: 7, index: 4)]
        n.step(Message(from: 1, to: 2, term: 1, body: .appendEntries(prevIndex: 3, prevTerm: 1, entries: newerTerm, commit: 0, round: 2)))
        let overflow = [Entry(term: 1, index: .max)]
        n.step(
            Message(from: 1, to: 2, term: 1, body: .appendEntries(prevIndex: .max - 1, prevTerm: 1, entries: overflow, commit: .max, round: 2)))
        #expect(n.lastIndex == 3)
        #expect(n.commitIndex == 1)
        // The same follower still takes a correct append.
        n.step(
            Message(
                from: 1, to: 2, term: 1,
                body: .appendEntries(prevIndex: 3, prevTerm: 1, entries: [Entry(term: 1, index: 4)], commit: 4, round: 3)))
        #expect(n.lastIndex == 4 && n.commitIndex == 4)
        #expect(RaftNode.isWellFormedAppend(prevIndex: 3, prevTerm: 1, entries: gaps, commit: 0, term: 1) == false)
    }

    @Test("TimeoutNow is honoured only from the leader of our term")
    func timeoutNowOnlyFromTheLeader() throws {
        var n = try follower()
        n.step(Message(from: 77, to: 2, term: 1, body: .timeoutNow))
        #expect(n.role == .follower && n.term == 1 && n.leader == 1)
        n.step(Message(from: 3, to: 2, term: 1, body: .timeoutNow))
        #expect(n.role == .follower && n.term == 1)
        n.step(Message(from: 77, to: 2, term: 2, body: .timeoutNow))
        #expect(n.role == .follower && n.term == 1 && n.leader == 1)
        n.step(Message(from: 1, to: 2, term: 1, body: .timeoutNow))
        #expect(n.role == .candidate && n.term == 2)
    }

    @Test("a snapshot with impossible metadata is ignored")
    func absurdSnapshot() throws {
        var n = try follower()
        let bad: [SnapshotMetadata] = [
            SnapshotMetadata(index: .max, term: 1, membership: Membership(voters: [1])),
            SnapshotMetadata(index: 50, term: 9, membership: Membership(voters: [1])),
            SnapshotMetadata(index: 50, term: 1, membership: Membership()),
            SnapshotMetadata(index: 50, term: 1, membership: Membership(voters: [1, 2], learners: [2])),
            SnapshotMetadata(index: 0, term: 0, membership: Membership(voters: [1])),
        ]
        for meta in bad { n.step(Message(from: 1, to: 2, term: 1, body: .installSnapshot(meta))) }
        #expect(n.snapshotMetadata == nil)
        #expect(n.lastIndex == 3)
        let good = SnapshotMetadata(index: 50, term: 1, membership: Membership(voters: [1, 2, 3]))
        n.step(Message(from: 1, to: 2, term: 1, body: .installSnapshot(good)))
        #expect(n.snapshotMetadata == good)
    }

    @Test("an acknowledgement of a round not started yet does not confirm later rounds (lease)")
    func forgedFutureRound() throws {
        var n = try leader()
        n.step(Message(from: 3, to: 1, term: 1, body: .heartbeatResponse(round: .max)))
        // Nobody answers any more; heartbeats keep starting rounds until check-quorum (at 2000) would step down.
        for t in stride(from: UInt64(1100), through: 1900, by: 100) {
            n.tick(now: t)
            _ = n.ready()
        }
        #expect(n.role == .leader)
        #expect(n.leaseRead(now: 1900).failureValue == .noLease, "a lease confirmed by no one since time 1000")
    }

    @Test("append responses beyond the leader's log do not move progress or commit")
    func forgedAppendResponses() throws {
        var n = try leader()
        let commit = n.commitIndex
        n.step(Message(from: 3, to: 1, term: 1, body: .appendResponse(.success(matchIndex: .max), round: .max)))
        n.step(Message(from: 3, to: 1, term: 1, body: .appendResponse(.success(matchIndex: 1 << 40), round: 0)))
        n.step(
            Message(
                from: 3, to: 1, term: 1,
                body: .appendResponse(.reject(rejectedIndex: .max, conflictTerm: .max, conflictIndex: .max), round: 0)))
        #expect(n.progress[3]?.match == 0)
        #expect(n.commitIndex == commit)
        #expect(n.role == .leader)
        _ = n.ready()
        n.checkInvariants()
    }
}

extension RaftNode {
    /// Node 1 of {1, 2, 3}, fresh: campaigns at time 1000 and wins term 1 with the pre-votes and the vote of node 2.
    mutating func winFirstElection() {
        tick(now: 1000)
        campaign()
        _ = ready()
        for peer: NodeID in [2, 3] {
            step(Message(from: peer, to: 1, term: 1, body: .voteResponse(granted: true, preVote: true)))
        }
        _ = ready()
        step(Message(from: 2, to: 1, term: 1, body: .voteResponse(granted: true, preVote: false)))
    }
}
