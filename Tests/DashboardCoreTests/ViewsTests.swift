import ClusterAPI
import Foundation
import Testing

@testable import DashboardCore

/// The views beside the table: a node's detail, the perspective grid, the election timeline, the actions' what-if,
/// the events pane fed by the nodes, and the flight recording.
@Suite struct ViewsTests {
    static func event(
        _ node: UInt64, _ seq: UInt64, at: UInt64, _ kind: NodeEventKind, term: UInt64, peer: UInt64? = nil,
        role: String? = nil, votes: VoteCount? = nil
    ) -> NodeEvent {
        NodeEvent(
            seq: seq, nodeID: node, atMs: Fixture.t0 + at, kind: kind, term: term, message: "\(kind) \(seq)",
            peer: peer, votes: votes, role: role)
    }

    static func withEvents(_ round: [PollResult], _ events: [UInt64: [NodeEvent]]) -> [PollResult] {
        round.map { result in
            var result = result
            guard case .status(let status) = result.outcome, let list = events[status.nodeID] else { return result }
            result.events = NodeEventsResponse(nodeID: status.nodeID, events: list)
            return result
        }
    }

    @Test func theDetailShowsTheNodesPeersStorageAlarmsAndOwnEvents() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        var round = Fixture.healthyRound(leader: 1, term: 7, commit: 100)
        if case .status(var leader) = round[0].outcome {
            leader.peers = [
                PeerStatus(
                    id: 2, address: "127.0.0.1:9082", matchIndex: 100, lagEntries: 0, lastAckMsAgo: 20,
                    state: .replicate, nextIndex: 101, inflight: 1),
                PeerStatus(
                    id: 3, address: "127.0.0.1:9083", matchIndex: 40, lagEntries: 60, lastAckMsAgo: 1500, state: .probe,
                    nextIndex: 41, inflight: 0),
            ]
            leader.storage = StorageStatus(
                fsyncP50Ms: 1, fsyncP99Ms: 7, fsyncs: 321, snapshotIndex: 90, snapshotBytes: 4096, firstLogIndex: 80,
                backendBytes: 900 << 20, quotaBytes: 1 << 30)
            leader.alarms = [NodeAlarm(type: NodeAlarm.noSpace, reason: "over quota", raisedAtMs: Fixture.t0)]
            round[0] = Fixture.up(leader)
        }
        let events: [UInt64: [NodeEvent]] = [
            1: [Self.event(1, 1, at: 0, .electionWon, term: 7, votes: VoteCount(granted: 2, refused: 0, voters: 3))],
            2: [Self.event(2, 1, at: 0, .leaderChanged, term: 7, peer: 1)],
        ]
        model.apply(Self.withEvents(round, events), nowMs: Fixture.t0 + 500)
        var options = Fixture.options(at: Fixture.t0 + 500)
        options.view = .detail(1)
        let text = FrameRenderer.plainText(model, options)
        #expect(text.contains("NODE 1  127.0.0.1:9081"))
        #expect(text.contains("** ALARM NOSPACE on node 1: over quota **"))
        #expect(text.contains("WAL fsync p50 1.0ms  p99 7.0ms (321 fsyncs)"))
        #expect(text.contains("snapshot at 90 (4.0 KiB)  log from 80"))
        #expect(text.contains("data dir 900.0 MiB of quota 1.0 GiB (88%)"))
        #expect(text.contains("alarms: NOSPACE (over quota)"))
        let lines = text.split(separator: "\n").map(String.init)
        #expect(lines.contains { $0.hasPrefix("  2    127.0.0.1:9082") && $0.contains("replicate") && $0.contains("101") })
        #expect(lines.contains { $0.hasPrefix("  3    127.0.0.1:9083") && $0.contains("probe") && $0.contains("1.5s ago") })
        #expect(text.contains("EVENTS OF NODE 1"))
        #expect(text.contains("election_won"))
        #expect(!text.contains("leader_changed"), "node 2's events are not node 1's")

        // A follower has no peer view and says who has it.
        options.view = .detail(2)
        let follower = FrameRenderer.plainText(model, options)
        #expect(follower.contains("none: only the leader tracks its peers; the leader is node 1"))
    }

    @Test func aStoppedLeaderThatStillBelievesItLeadsDisagreesInTheGrid() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(leader: 1, term: 7), nowMs: Fixture.t0)
        #expect(model.perspectives(nowMs: Fixture.t0).allSatisfy { $0.agrees })
        // Node 1 stops answering (SIGSTOP); 2 and 3 elect 2 at term 8.
        let two = Fixture.status(2, role: .leader, term: 8, leader: 2, peers: [Fixture.peer(3)])
        let three = Fixture.status(3, role: .follower, term: 8, leader: 2)
        model.apply([Fixture.down(1, "timed out"), Fixture.up(two), Fixture.up(three)], nowMs: Fixture.t0 + 3000)
        let grid = model.perspectives(nowMs: Fixture.t0 + 3000)
        let one = grid[0]
        #expect(one.nodeID == 1 && !one.reachable && !one.agrees)
        #expect(one.disagreements.contains("stuck at term 7 (cluster at 8)"))
        #expect(one.disagreements.contains("thinks it leads term 7"))
        #expect(grid[1].agrees && grid[2].agrees)
        var options = Fixture.options(at: Fixture.t0 + 3000)
        options.view = .grid
        let text = FrameRenderer.plainText(model, options)
        #expect(text.contains("PERSPECTIVES: each node's belief (cluster: term 8, leader node 2)"))
        #expect(text.contains("n1    DOWN   7      leader      n1      100        DISAGREES: down (last belief)"))
        #expect(text.contains("n2    up     8      leader      n2      100        agrees"))
    }

    @Test func aPartitionedNodeAtAnOldTermFollowingNoLeaderDisagreesWhileReachable() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        let one = Fixture.status(1, role: .leader, term: 8, leader: 1, peers: [Fixture.peer(2), Fixture.peer(3)])
        let two = Fixture.status(2, role: .follower, term: 8, leader: 1)
        let three = Fixture.status(3, role: .candidate, term: 5, leader: nil)
        model.apply([Fixture.up(one), Fixture.up(two), Fixture.up(three)], nowMs: Fixture.t0)
        let three3 = model.perspectives(nowMs: Fixture.t0)[2]
        #expect(three3.reachable)
        #expect(three3.disagreements == ["stuck at term 5 (cluster at 8)", "knows no leader"])
    }

    @Test func theTimelineMeasuresLeadershipsAndLeaderlessGapsFromTheNodesEvents() {
        let events = [
            Self.event(1, 1, at: 0, .electionWon, term: 2, votes: VoteCount(granted: 2, refused: 0, voters: 3)),
            // Node 1 is stopped at 10 s; node 2 notices at 11.2 s, node 3 at 11.5 s; node 2 wins at 12.0 s.
            Self.event(2, 1, at: 11_200, .leaderChanged, term: 2),
            Self.event(3, 1, at: 11_500, .leaderChanged, term: 2),
            Self.event(2, 2, at: 11_600, .electionStarted, term: 3),
            Self.event(2, 3, at: 12_000, .electionWon, term: 3, votes: VoteCount(granted: 2, refused: 0, voters: 3)),
            // A transfer: node 2 steps down at 20.0 s, node 3 wins at 20.1 s.
            Self.event(2, 4, at: 20_000, .roleChanged, term: 4, role: "follower"),
            Self.event(3, 2, at: 20_100, .electionWon, term: 4, votes: VoteCount(granted: 3, refused: 0, voters: 3)),
        ]
        let timeline = DashboardModel.electionTimeline(events)
        #expect(timeline.map(\.term) == [2, 3, 4])
        #expect(timeline.map(\.leader) == [1, 2, 3])
        #expect(timeline[0].untilMs == Fixture.t0 + 12_000)
        #expect(timeline[1].gapBeforeMs == 800)
        #expect(timeline[1].untilMs == Fixture.t0 + 20_000)
        #expect(timeline[2].gapBeforeMs == 100)
        #expect(timeline[2].untilMs == nil)

        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(
            Self.withEvents(Fixture.healthyRound(leader: 3, term: 4), [1: events]), nowMs: Fixture.t0 + 30_000)
        var options = Fixture.options(at: Fixture.t0 + 30_000)
        options.view = .timeline
        let text = FrameRenderer.plainText(model, options)
        #expect(text.contains("  4      n3      12:00:20  now       9.9s      3/3    100ms"))
        #expect(text.contains("  3      n2      12:00:12  12:00:20  8.0s      2/3    800ms"))
        #expect(text.contains("leader |1"))
    }

    @Test func theWhatIfStatesTheQuorumAfterwardsAndRefusesWhatTheClusterWould() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(leader: 1, term: 7), nowMs: Fixture.t0)
        let remove = model.plan(.remove, node: 3)
        #expect(remove.allowed)
        #expect(remove.text == "Remove voter 3? Afterwards: 2 voters left, tolerates 0 failures.")
        #expect(remove.address == "127.0.0.1:9081")
        #expect(remove.body == #"{"node_id":3}"#)
        let transfer = model.plan(.transfer, node: 2)
        #expect(transfer.text == "Transfer leadership from node 1 to node 2? Afterwards: 3 voters (3 up), tolerates 1 failure")
        #expect(model.plan(.transfer, node: 1).refusal == "it already leads")
        #expect(model.plan(.promote, node: 2).refusal == "it is already a voter")

        // With node 3 down, removing node 2 would leave 1 of 2 voters up: refused.
        let two = Fixture.status(2, role: .follower, term: 7, leader: 1)
        let one = Fixture.status(1, role: .leader, term: 7, leader: 1, peers: [Fixture.peer(2), Fixture.peer(3, ack: 9000)])
        model.apply([Fixture.up(one), Fixture.up(two), Fixture.down(3)], nowMs: Fixture.t0 + 1000)
        #expect(
            model.plan(.remove, node: 2).refusal
                == "the cluster would lose its quorum (1 of 2 voters up afterwards)")
        #expect(model.plan(.remove, node: 3).text == "Remove voter 3? Afterwards: 2 voters left, tolerates 0 failures.")
        #expect(model.plan(.transfer, node: 3).refusal == "it does not answer")

        // A lagging learner cannot be promoted; a caught-up one can, and the text counts it.
        let learnerLeader = Fixture.status(
            1, role: .leader, term: 7, leader: 1, voters: [1, 2, 3], learners: [4],
            peers: [Fixture.peer(2), Fixture.peer(3), Fixture.peer(4, lag: 500, match: 10)])
        var withLearner = DashboardModel(endpoints: Fixture.endpoints + [Fixture.endpoint(4)])
        let others = [2, 3].map { Fixture.up(Fixture.status($0, role: .follower, term: 7, leader: 1, learners: [4])) }
        let learner = Fixture.up(Fixture.status(4, role: .learner, term: 7, leader: 1, commit: 10, learners: [4]))
        withLearner.apply([Fixture.up(learnerLeader)] + others + [learner], nowMs: Fixture.t0)
        #expect(withLearner.plan(.promote, node: 4).refusal == "not caught up (500 entries behind)")
        #expect(withLearner.plan(.transfer, node: 4).refusal == "it is a learner; promote it first")

        var leaderless = DashboardModel(endpoints: Fixture.endpoints)
        leaderless.apply([Fixture.down(1), Fixture.down(2), Fixture.down(3)], nowMs: Fixture.t0)
        #expect(leaderless.plan(.transfer, node: 2).refusal == "no leader, so the cluster would refuse any change")
    }

    @Test func theEventsPaneShowsWhatTheNodesSawAndDtopsOwnActions() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(), nowMs: Fixture.t0)
        #expect(!model.nodesReportEvents)
        #expect(model.paneEvents.contains { $0.source == "dtop" && $0.kind == "leader-change" })
        let events: [UInt64: [NodeEvent]] = [1: [Self.event(1, 10, at: 100, .electionWon, term: 7)]]
        model.apply(Self.withEvents(Fixture.healthyRound(), events), nowMs: Fixture.t0 + 500)
        // The same answer again (a repeated poll) adds nothing; the cursor moved.
        model.apply(Self.withEvents(Fixture.healthyRound(), events), nowMs: Fixture.t0 + 1000)
        #expect(model.nodesReportEvents)
        #expect(model.eventCursor(for: Fixture.endpoint(1)) == 10)
        #expect(model.nodeEvents.count == 1)
        model.recordAction("transfer node 2: done", atMs: Fixture.t0 + 2000)
        let pane = model.paneEvents
        #expect(pane.first?.source == "you" && pane.first?.message == "transfer node 2: done")
        #expect(pane.contains { $0.source == "n1" && $0.kind == "election_won" })
        #expect(!pane.contains { $0.source == "dtop" && $0.kind == "leader-change" }, "inferred elections give way")
    }

    @Test func aRecordingReplaysToTheSameModelsAndFrames() throws {
        var live = DashboardModel(endpoints: Fixture.endpoints)
        var file = try String(
            decoding: WireJSON.encode(RecordingHeader(endpoints: Fixture.endpoints, intervalMs: 500)), as: UTF8.self)
            + "\n"
        let rounds: [(UInt64, [PollResult])] = [
            (0, Self.withEvents(Fixture.healthyRound(), [1: [Self.event(1, 1, at: 0, .electionWon, term: 7)]])),
            (500, [Fixture.down(1), Fixture.up(Fixture.status(2, role: .candidate, term: 8, leader: nil)), Fixture.down(3)]),
            (1000, Fixture.healthyRound(leader: 2, term: 8, commit: 120)),
        ]
        var frames: [String] = []
        for (at, round) in rounds {
            live.apply(round, nowMs: Fixture.t0 + at)
            file += try RecordedLine(round: round, atMs: Fixture.t0 + at).encodedLine() + "\n"
            frames.append(FrameRenderer.plainText(live, Fixture.options(at: Fixture.t0 + at)))
        }
        live.recordAction("remove node 3: refused", atMs: Fixture.t0 + 1200)
        file += try RecordedLine(action: "remove node 3: refused", atMs: Fixture.t0 + 1200).encodedLine() + "\n"

        let recording = try Recording.parse(file)
        #expect(recording.lines.count == 4)
        #expect(recording.model(after: 4) == live)
        for (index, (at, _)) in rounds.enumerated() {
            let replayed = FrameRenderer.plainText(recording.model(after: index + 1), Fixture.options(at: Fixture.t0 + at))
            #expect(replayed == frames[index])
        }
        #expect(recording.linesDue(at: Fixture.t0 + 600) == 2)
        #expect(throws: RecordingError.self) { try Recording.parse("not json\n") }
    }

    @Test func theReplayClockPlaysPausesSeeksAndChangesSpeedWithinTheRecording() {
        var clock = ReplayClock(startMs: 1000, endMs: 61_000, speed: 1, realMs: 0)
        #expect(clock.recordedMs(realMs: 500) == 1500)
        clock.setSpeed(4, realMs: 500)
        #expect(clock.recordedMs(realMs: 1500) == 5500)
        clock.togglePause(realMs: 1500)
        #expect(clock.recordedMs(realMs: 9000) == 5500)
        clock.seek(by: 10_000, realMs: 9000)
        #expect(clock.recordedMs(realMs: 9999) == 15_500)
        clock.seek(by: -60_000, realMs: 9999)
        #expect(clock.recordedMs(realMs: 10_000) == 1000)
        clock.togglePause(realMs: 10_000)
        #expect(clock.recordedMs(realMs: 1_000_000) == 61_000, "never past the end")
    }
}
