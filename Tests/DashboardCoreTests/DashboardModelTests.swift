import ClusterAPI
import DashboardCore
import Testing

@Suite("dtop view model: (previous model, polled statuses) -> rows, events, health")
struct DashboardModelTests {
    @Test("endpoints parse host:port, :port, bare ports and http:// URLs; garbage is rejected")
    func endpointParsing() throws {
        #expect(Endpoint(parsing: "10.0.0.5:8081") == Endpoint(host: "10.0.0.5", port: 8081))
        #expect(Endpoint(parsing: ":8082", defaultHost: "127.0.0.1") == Endpoint(host: "127.0.0.1", port: 8082))
        #expect(Endpoint(parsing: "8083", defaultHost: "127.0.0.1") == Endpoint(host: "127.0.0.1", port: 8083))
        #expect(Endpoint(parsing: "http://node1:8081/status", defaultHost: "127.0.0.1") == Endpoint(host: "node1", port: 8081))
        #expect(Endpoint(parsing: "node1", defaultHost: "127.0.0.1") == nil)
        #expect(Endpoint(parsing: "node1:99999") == nil)
        #expect(try Endpoint.parseList("a:1, b:2,a:1").map(\.description) == ["a:1", "b:2"])
        #expect(throws: EndpointListError.self) { try Endpoint.parseList("a:1,nope") }
    }

    @Test("a healthy cluster: leader marked, 3/3 voters tolerating 1, the leader observed once")
    func healthy() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(), nowMs: Fixture.t0)
        let summary = model.summary
        #expect(summary.health == .healthy)
        #expect(summary.leaderID == 1)
        #expect(summary.term == 7)
        #expect(summary.votersUp == 3)
        #expect(summary.tolerates == 1)
        let rows = model.rows(nowMs: Fixture.t0)
        #expect(rows.map(\.nodeID) == [1, 2, 3])
        #expect(rows.map(\.isLeader) == [true, false, false])
        #expect(model.events.map(\.kind) == [.leaderChange])
        #expect(model.events.first?.message == "leader is node 1 (term 7)")
    }

    @Test("kill the leader: its row goes down with the reason, then an election event names term, winner, time")
    func failover() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(), nowMs: Fixture.t0)
        // Node 1 is gone; 2 and 3 still name it as leader until their election timeout.
        model.apply(
            [
                Fixture.down(1),
                Fixture.up(Fixture.status(2, role: .follower, term: 7, leader: 1)),
                Fixture.up(Fixture.status(3, role: .follower, term: 7, leader: 1)),
            ], nowMs: Fixture.t0 + 500)
        #expect(model.summary.health == .unavailable)
        #expect(model.summary.leaderID == nil)
        #expect(model.events.prefix(2).map(\.kind) == [.leaderLost, .nodeDown])
        #expect(model.events[1].message == "node 1 down: connection refused")
        let down = model.rows(nowMs: Fixture.t0 + 500)[0]
        #expect(down.state == .down("connection refused"))
        #expect(down.lastSeenMsAgo == 500)

        model.apply(
            [
                Fixture.down(1),
                Fixture.up(
                    Fixture.status(
                        2, role: .leader, term: 8, leader: 2,
                        peers: [Fixture.peer(1, lag: 3, ack: nil), Fixture.peer(3)])),
                Fixture.up(Fixture.status(3, role: .follower, term: 8, leader: 2)),
            ], nowMs: Fixture.t0 + 1300)
        let summary = model.summary
        #expect(summary.leaderID == 2)
        #expect(summary.term == 8)
        #expect(summary.health == .degraded)
        #expect(summary.votersUp == 2)
        #expect(summary.tolerates == 0)
        #expect(model.events[0].kind == .leaderChange)
        #expect(model.events[0].message == "leader changed: node 1 -> node 2")
        #expect(model.events[1].kind == .election)
        // Measured from the last round the old leader was seen leading.
        #expect(model.events[1].message == "election: term 8, node 2 won in 1.3s")
        // Only one "down" event for a node that stays down.
        #expect(model.events.filter { $0.kind == .nodeDown }.count == 1)

        model.apply(Fixture.healthyRound(leader: 2, term: 8), nowMs: Fixture.t0 + 5300)
        #expect(model.events[0].kind == .nodeUp)
        #expect(model.events[0].message == "node 1 up after 4.8s")
        #expect(model.summary.health == .healthy)
    }

    @Test("a deposed leader that has not heard of the new term does not count as leader")
    func deposedLeader() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(
            [
                Fixture.up(Fixture.status(1, role: .leader, term: 7, leader: 1)),
                Fixture.up(Fixture.status(2, role: .leader, term: 8, leader: 2)),
                Fixture.up(Fixture.status(3, role: .follower, term: 8, leader: 2)),
            ], nowMs: Fixture.t0)
        #expect(model.summary.leaderID == 2)
        #expect(model.rows(nowMs: Fixture.t0).filter(\.isLeader).map(\.nodeID) == [2])
    }

    @Test("ops/s comes from successive polls of writes_total + reads_total; a counter reset shows no rate")
    func opsRate() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(writes: 1000), nowMs: Fixture.t0)
        #expect(model.tracks[0].opsPerSecond == nil)
        model.apply(Fixture.healthyRound(commit: 150, writes: 1100), nowMs: Fixture.t0 + 500)
        #expect(model.tracks[0].opsPerSecond == 200)
        #expect(model.tracks[0].commitsPerSecond == 100)
        #expect(model.tracks[0].opsHistory == [200])
        model.apply(Fixture.healthyRound(commit: 150, writes: 10), nowMs: Fixture.t0 + 1000)
        #expect(model.tracks[0].opsPerSecond == nil)
    }

    @Test("lag in ms: 0 when caught up, else the larger of last ack and entries at the leader's commit rate")
    func lagEstimate() {
        #expect(DashboardModel.estimateLagMs(lagEntries: 0, lastAckMsAgo: 900, leaderCommitsPerSecond: 10) == 0)
        #expect(DashboardModel.estimateLagMs(lagEntries: 500, lastAckMsAgo: 40, leaderCommitsPerSecond: 1000) == 500)
        #expect(DashboardModel.estimateLagMs(lagEntries: 5, lastAckMsAgo: 2500, leaderCommitsPerSecond: 1000) == 2500)
        #expect(DashboardModel.estimateLagMs(lagEntries: 5, lastAckMsAgo: 30, leaderCommitsPerSecond: nil) == 30)
        #expect(DashboardModel.estimateLagMs(lagEntries: 5, lastAckMsAgo: nil, leaderCommitsPerSecond: 0) == nil)
        #expect(LagClass.classify(lagEntries: 99, lastAckMsAgo: 999) == .inSync)
        #expect(LagClass.classify(lagEntries: 100, lastAckMsAgo: 10) == .lagging)
        #expect(LagClass.classify(lagEntries: 0, lastAckMsAgo: 3000) == .stalled)
    }

    @Test("lag class changes are events; a term change resets lag history without an event")
    func lagClasses() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(lags: [3: 0]), nowMs: Fixture.t0)
        model.apply(Fixture.healthyRound(lags: [3: 250]), nowMs: Fixture.t0 + 500)
        #expect(model.events[0].kind == .lagChange)
        #expect(model.events[0].message == "node 3 in-sync -> lagging (250 entries behind)")
        #expect(model.summary.health == .degraded)
        let three = model.tracks.first { $0.nodeID == 3 }
        #expect(three?.lagHistory == [0, 250])
        #expect(three?.replication?.lagClass == .lagging)

        let before = model.events.count
        model.apply(Fixture.healthyRound(leader: 2, term: 8, lags: [3: 0]), nowMs: Fixture.t0 + 1000)
        #expect(!model.events[..<(model.events.count - before)].contains { $0.kind == .lagChange })
        #expect(model.tracks.first { $0.nodeID == 3 }?.lagHistory == [0])
    }

    @Test("membership: a learner promoted to voter and a member joining are events")
    func membership() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        let round = { (voters: [UInt64], learners: [UInt64]) -> [PollResult] in
            [
                Fixture.up(Fixture.status(1, role: .leader, term: 7, leader: 1, voters: voters, learners: learners)),
                Fixture.up(Fixture.status(2, role: .follower, term: 7, leader: 1, voters: voters, learners: learners)),
                Fixture.up(Fixture.status(3, role: .follower, term: 7, leader: 1, voters: voters, learners: learners)),
            ]
        }
        model.apply(round([1, 2, 3], []), nowMs: Fixture.t0)
        model.apply(round([1, 2, 3], [4]), nowMs: Fixture.t0 + 500)
        #expect(model.events[0].message == "node 4 joined as learner")
        model.apply(round([1, 2, 3, 4], []), nowMs: Fixture.t0 + 1000)
        #expect(model.events[0].kind == .learnerPromoted)
        #expect(model.events[0].message == "node 4 promoted: learner -> voter")
    }

    @Test("discovered members are polled at the metrics port offset the configured nodes share")
    func discoveryByOffset() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        let peers = [Fixture.peer(2), Fixture.peer(3), PeerStatus(
            id: 4, address: "0.0.0.0:9084", matchIndex: 90, lagEntries: 10, lastAckMsAgo: 30, state: .replicate)]
        model.apply(
            [
                Fixture.up(Fixture.status(1, role: .leader, term: 7, leader: 1, learners: [4], peers: peers)),
                Fixture.up(Fixture.status(2, role: .follower, term: 7, leader: 1, learners: [4])),
                Fixture.up(Fixture.status(3, role: .follower, term: 7, leader: 1, learners: [4])),
            ], nowMs: Fixture.t0)
        #expect(model.pollTargets.map(\.description).last == "127.0.0.1:8084")
        #expect(model.rows(nowMs: Fixture.t0).last?.state == .pending)
    }

    @Test("a member that leads and is in no endpoint list is found through a follower's member list")
    func discoveryThroughMembers() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        var round: [PollResult] = []
        for id in UInt64(1)...3 {
            var status = Fixture.status(id, role: .follower, term: 4, leader: 4, voters: [1, 2, 3, 4])
            status.members = (UInt64(1)...4).map { MemberAddress(id: $0, address: "127.0.0.1:\(9080 + $0)") }
            round.append(Fixture.up(status))
        }
        model.apply(round, nowMs: Fixture.t0)
        #expect(model.pollTargets.map(\.description).last == "127.0.0.1:8084", "\(model.pollTargets)")
        let leader = Fixture.status(4, role: .leader, term: 4, leader: 4, voters: [1, 2, 3, 4])
        model.apply(
            round + [PollResult(endpoint: Endpoint(host: "127.0.0.1", port: 8084), outcome: .status(leader))],
            nowMs: Fixture.t0 + 500)
        #expect(model.summary.leaderID == 4)
        #expect(model.summary.health == .healthy, "\(model.summary)")
    }

    @Test("without a common port offset a discovered member keeps a row from the leader's view")
    func discoveryWithoutOffset() {
        let endpoints = [Endpoint(host: "127.0.0.1", port: 20001), Endpoint(host: "127.0.0.1", port: 20777)]
        var model = DashboardModel(endpoints: endpoints)
        var leader = Fixture.status(1, role: .leader, term: 3, leader: 1, peers: [Fixture.peer(2), Fixture.peer(3)])
        leader.address = "127.0.0.1:21001"
        var follower = Fixture.status(2, role: .follower, term: 3, leader: 1)
        follower.address = "127.0.0.1:21002"
        model.apply(
            [
                PollResult(endpoint: endpoints[0], outcome: .status(leader)),
                PollResult(endpoint: endpoints[1], outcome: .status(follower)),
            ], nowMs: Fixture.t0)
        #expect(model.pollTargets == endpoints)
        let rows = model.rows(nowMs: Fixture.t0)
        #expect(rows.map(\.nodeID) == [1, 2, 3])
        #expect(rows[2].state == .unpolled)
        #expect(rows[2].address == "127.0.0.1:9083")
        #expect(rows[2].replication?.lagEntries == 0)
    }

    @Test("every node down from the start: unavailable, one down event each, rows keep their endpoints")
    func allDown() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        for round in 0..<3 {
            model.apply((UInt64(1)...3).map { Fixture.down($0) }, nowMs: Fixture.t0 + UInt64(round) * 500)
        }
        #expect(model.summary.health == .unavailable)
        #expect(model.events.count == 3)
        #expect(model.events.allSatisfy { $0.kind == .nodeDown })
        #expect(model.rows(nowMs: Fixture.t0).map(\.address) == ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"])
        #expect(model.pollTargets == Fixture.endpoints)
    }

    @Test("sorting by role puts the leader first; by lag puts down rows and the furthest behind first")
    func sorting() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(leader: 3, lags: [1: 5, 2: 40]), nowMs: Fixture.t0)
        #expect(model.rows(nowMs: Fixture.t0, order: .role).map(\.nodeID) == [3, 1, 2])
        #expect(model.rows(nowMs: Fixture.t0, order: .lag).map(\.nodeID) == [2, 1, 3])
        #expect(SortKey.id.next == .role && SortKey.lag.next == .id)
    }
}
