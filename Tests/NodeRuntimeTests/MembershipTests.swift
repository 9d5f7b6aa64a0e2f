import ClusterAPI
import RaftCore
import Testing

@testable import NodeRuntime

@Suite struct MembershipGuardTests {
    let guardrail = MembershipGuard(selfID: 1, reachableWithinMs: 1000, promotionMaxLag: 100)

    @Test func aLearnerIsPromotedOnlyOnceCaughtUpAndAnswering() {
        let never = guardrail.catchUpRefusal(4, peer: nil, leaderLastIndex: 500)
        #expect(never?.code == .notCaughtUp && never?.message.contains("not been heard from") == true)
        #expect(never?.progress == CatchUpProgress(matchIndex: 0, leaderLastIndex: 500))

        let silent = MembershipGuard.Peer(match: 500, receivingSnapshot: false, lastAckMsAgo: 1000)
        #expect(guardrail.catchUpRefusal(4, peer: silent, leaderLastIndex: 500)?.message.contains("not answered") == true)

        let snapshotting = MembershipGuard.Peer(match: 0, receivingSnapshot: true, lastAckMsAgo: 10)
        #expect(
            guardrail.catchUpRefusal(4, peer: snapshotting, leaderLastIndex: 500)?.message.contains("snapshot") == true)

        let behind = MembershipGuard.Peer(match: 399, receivingSnapshot: false, lastAckMsAgo: 10)
        let lagging = guardrail.catchUpRefusal(4, peer: behind, leaderLastIndex: 500)
        #expect(lagging?.message.contains("101 entries behind") == true)
        #expect(lagging?.progress == CatchUpProgress(matchIndex: 399, leaderLastIndex: 500))

        let close = MembershipGuard.Peer(match: 400, receivingSnapshot: false, lastAckMsAgo: 999)
        #expect(guardrail.catchUpRefusal(4, peer: close, leaderLastIndex: 500) == nil)
    }

    @Test func aRemovalThatLeavesTooFewReachableVotersIsRefused() {
        let fresh = MembershipGuard.Peer(match: 10, receivingSnapshot: false, lastAckMsAgo: 5)
        let gone = MembershipGuard.Peer(match: 10, receivingSnapshot: false, lastAckMsAgo: 5000)
        // Three voters, 3 unreachable: removing 2 leaves {1, 3}, quorum 2, one reachable.
        let refused = guardrail.quorumLossRefusal(removing: 2, voters: [1, 2, 3], peers: [2: fresh, 3: gone])
        #expect(refused?.code == .conflict && refused?.message.contains("1 of 2 voters reachable") == true)
        // Removing the unreachable one leaves {1, 2}, both reachable.
        #expect(guardrail.quorumLossRefusal(removing: 3, voters: [1, 2, 3], peers: [2: fresh, 3: gone]) == nil)
        // A peer that never answered is not reachable.
        #expect(guardrail.quorumLossRefusal(removing: 2, voters: [1, 2, 3], peers: [2: fresh]) != nil)
        // Five voters, one away: removing another still leaves 3 of 4 reachable, above the quorum of 3.
        let five: [NodeID: MembershipGuard.Peer] = [2: fresh, 3: fresh, 4: fresh, 5: gone]
        #expect(guardrail.quorumLossRefusal(removing: 4, voters: [1, 2, 3, 4, 5], peers: five) == nil)
        // The last voter: nothing to check here (the core refuses it).
        #expect(guardrail.quorumLossRefusal(removing: 1, voters: [1], peers: [:]) == nil)
    }
}

@Suite struct MembershipTrackerTests {
    private func core(voters: Set<NodeID>, learners: Set<NodeID> = []) throws -> RaftNode {
        var config = RaftConfig(id: 1, initialMembership: Membership(voters: voters, learners: learners))
        config.randomSeed = 7
        return try RaftNode(config: config, storage: MemoryStorage(), now: 0)
    }

    @Test func reportsAConfigurationOnceAndAdmissionOnlyWhenItChanges() throws {
        var tracker = MembershipTracker(selfID: 1)
        var node = try core(voters: [1, 2, 3])
        let update = tracker.update(node)
        let first = try #require(update)
        #expect(first.membership.voters == [1, 2, 3])
        #expect(first.changedLine == nil, "the first configuration seen is not a change")
        #expect(!first.removedChanged && first.removalLine == nil && !tracker.removed)
        #expect(tracker.update(node) == nil)

        let published = tracker.admission(node)
        let admission = try #require(published)
        #expect(admission.members == [1, 2, 3] && admission.leader == nil)
        #expect(tracker.admission(node) == nil)
        // Following a leader adds it to the admission, even before a configuration names it.
        node.step(Message(from: 9, to: 1, term: 1, body: .heartbeat(commit: 0, round: 1)))
        let republished = tracker.admission(node)
        let following = try #require(republished)
        #expect(following.leader == 9 && following.members.contains(9))
    }

    @Test func dialablePeersExcludeThisNodeAndUnparsableAddresses() {
        let peers = MembershipTracker.dialable(
            [1: "127.0.0.1:9081", 2: "0.0.0.0:9082", 3: "not an address", 4: "[::1]:9084"], selfID: 1)
        #expect(peers.keys.sorted() == [2, 4])
        #expect(peers[2]?.host == "127.0.0.1" && peers[2]?.port == 9082)
        #expect(peers[4]?.host == "::1" && peers[4]?.port == 9084)
    }
}

@Suite struct StatusReportTests {
    @Test func aSoleVoterReportsItselfAsLeaderWithDialableAddresses() throws {
        var config = RaftConfig(id: 1, initialMembership: Membership(voters: [1], learners: [2]))
        config.randomSeed = 3
        var core = try RaftNode(config: config, storage: MemoryStorage(), now: 0)
        for t in stride(from: UInt64(100), through: 10_000, by: 100) where core.role != .leader { core.tick(now: t) }
        let report = StatusReport(
            core: core, selfID: 1, selfAddress: "127.0.0.1:9081", address: { $0 == 2 ? "127.0.0.1:9082" : nil },
            now: 20_000)
        let status = report.status(appliedIndex: 0, stateHash: StatusReport.hashText(0xAB), uptimeMs: 5, metrics: NodeMetrics())
        #expect(status.role == .leader && status.leaderID == 1 && status.voters == [1] && status.learners == [2])
        #expect(status.address == "127.0.0.1:9081")
        #expect(status.members?.map(\.address) == ["127.0.0.1:9081", "127.0.0.1:9082"])
        #expect(status.peers.map(\.id) == [2], "a leader lists its learner's progress")
        #expect(status.stateHash == "00000000000000ab")
        let cluster = report.cluster()
        #expect(cluster.leaderID == 1 && cluster.members.map(\.role) == [.leader, .learner])
        #expect(cluster.members.map(\.status) == [.active, .promotable])
    }
}
