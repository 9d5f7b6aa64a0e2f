import ClusterAPI
import DashboardCore
import Foundation
import Testing

@Suite("dtop frame layout: golden --once text, narrow windows, alerts, JSON")
struct FrameRendererTests {
    /// The frame after a failover with fixed input. Regenerate with `UPDATE_GOLDEN=1` and review the diff.
    @Test("golden --once text frame after a failover")
    func goldenFrame() throws {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(writes: 1000), nowMs: Fixture.t0)
        model.apply(Fixture.healthyRound(commit: 150, writes: 1100, lags: [3: 120]), nowMs: Fixture.t0 + 500)
        model.apply(
            [
                Fixture.down(1),
                Fixture.up(
                    Fixture.status(
                        2, role: .leader, term: 8, leader: 2, commit: 152, lastLog: 153,
                        peers: [Fixture.peer(1, lag: 3, ack: 1800, match: 150), Fixture.peer(3, match: 152)],
                        writes: 40, lease: 140, p99: 2.25)),
                Fixture.up(Fixture.status(3, role: .follower, term: 8, leader: 2, commit: 152)),
            ], nowMs: Fixture.t0 + 1500)
        let text = FrameRenderer.plainText(model, Fixture.options(at: Fixture.t0 + 1700))
        try Golden.check(text, file: "failover.txt")
    }

    @Test("a learner shows how much of the leader's log it holds, in the frame and in the JSON")
    func learnerCatchUp() throws {
        let endpoints = (1...4).map { Endpoint(host: "127.0.0.1", port: 8080 + $0) }
        var model = DashboardModel(endpoints: endpoints)
        let peers = [
            Fixture.peer(2, match: 400), Fixture.peer(3, match: 400),
            PeerStatus(id: 4, address: "127.0.0.1:9084", matchIndex: 348, lagEntries: 52, lastAckMsAgo: 20, state: .replicate),
        ]
        model.apply(
            [
                Fixture.up(Fixture.status(1, role: .leader, term: 3, leader: 1, commit: 400, lastLog: 400, learners: [4], peers: peers)),
                Fixture.up(Fixture.status(2, role: .follower, term: 3, leader: 1, commit: 400, learners: [4])),
                Fixture.up(Fixture.status(3, role: .follower, term: 3, leader: 1, commit: 400, learners: [4])),
                Fixture.up(Fixture.status(4, role: .learner, term: 3, leader: 1, commit: 348, learners: [4])),
            ], nowMs: Fixture.t0)
        let text = FrameRenderer.plainText(model, Fixture.options(at: Fixture.t0 + 100))
        let row = try #require(text.split(separator: "\n").first { $0.contains("127.0.0.1:9084") })
        #expect(row.contains("learner 87%"), "\(row)")
        let json = try JSONFrame(model, nowMs: Fixture.t0 + 100).encoded()
        #expect(json.contains("\"catch_up_percent\":87"), "\(json)")
    }

    @Test("a narrow window drops the least important columns but keeps id, role, term, commit and lag")
    func narrow() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(), nowMs: Fixture.t0)
        let wide = FrameRenderer.render(model, Fixture.options(width: 120, at: Fixture.t0))
        let narrow = FrameRenderer.render(model, Fixture.options(width: 80, at: Fixture.t0))
        let wideHeading = wide[3].text
        let narrowHeading = narrow[3].text
        #expect(wideHeading.contains("TREND") && wideHeading.contains("LEASE"))
        #expect(!narrowHeading.contains("TREND") && !narrowHeading.contains("LEASE"))
        for column in ["ID", "ROLE", "TERM", "COMMIT", "LAG"] { #expect(narrowHeading.contains(column)) }
        #expect(narrow.allSatisfy { $0.text.count <= 80 })
        #expect(wide.allSatisfy { $0.text.count <= 120 })
    }

    @Test("a bounded height keeps the header and rows and cuts the events pane")
    func boundedHeight() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        for round in 0..<20 {
            let results = round % 2 == 0 ? Fixture.healthyRound() : [Fixture.down(3)] + Fixture.healthyRound().prefix(2)
            model.apply(results, nowMs: Fixture.t0 + UInt64(round) * 500)
        }
        let lines = FrameRenderer.render(model, Fixture.options(height: 12, at: Fixture.t0 + 10_000))
        #expect(lines.count == 12)
        #expect(lines[0].text.hasPrefix("dtop "))
        #expect(lines.contains { $0.text.contains("EVENTS") })
    }

    @Test("paused and stale data say so in the status line; no data yet says it is waiting")
    func alerts() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        let waiting = FrameRenderer.render(model, Fixture.options(at: Fixture.t0))[1]
        #expect(waiting.text.contains("waiting for the first poll"))
        model.apply(Fixture.healthyRound(), nowMs: Fixture.t0)
        #expect(!FrameRenderer.render(model, Fixture.options(at: Fixture.t0 + 500))[1].text.contains("**"))
        let stale = FrameRenderer.render(model, Fixture.options(at: Fixture.t0 + 5000))[1]
        #expect(stale.text.hasPrefix("** STALE: no poll has finished for 5.0s **"))
        #expect(stale.spans[0].style == .alert)
        var paused = Fixture.options(at: Fixture.t0 + 5000)
        paused.paused = true
        #expect(FrameRenderer.render(model, paused)[1].text.hasPrefix("** PAUSED: display frozen at 12:00:00"))
    }

    @Test("colour is never the only carrier: the leader, down rows and lag classes have marks and words")
    func meaningWithoutColour() {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply(Fixture.healthyRound(lags: [2: 500]), nowMs: Fixture.t0)
        model.apply([Fixture.down(3)] + Fixture.healthyRound(lags: [2: 500]).prefix(2), nowMs: Fixture.t0 + 500)
        let lines = FrameRenderer.render(model, Fixture.options(at: Fixture.t0 + 500)).map(\.text)
        #expect(lines[0].contains("[DEGRADED]"))
        #expect(lines.contains { $0.hasPrefix("*1 ") && $0.contains("LEADER") })
        #expect(lines.contains { $0.hasPrefix(" 2 ") && $0.contains("!500") })
        #expect(
            lines.contains { $0.hasPrefix("x3 ") && $0.contains("DOWN") && $0.contains("unreachable: connection refused") })
    }

    @Test("sparklines scale to the window's maximum, in blocks or ASCII")
    func sparklines() {
        #expect(FrameRenderer.sparkline([0, 1, 2, 4], width: 6, unicode: true) == "  ▁▃▅█")
        #expect(FrameRenderer.sparkline([0, 7], width: 2, unicode: false) == "_#")
        #expect(FrameRenderer.sparkline([], width: 3, unicode: false) == "   ")
        #expect(FrameRenderer.sparkline([1, 2, 3, 4], width: 2, unicode: false) == "+#")
    }

    @Test("the JSON frame carries each node's /status unchanged and round-trips")
    func jsonFrame() throws {
        var model = DashboardModel(endpoints: Fixture.endpoints)
        model.apply([Fixture.down(3)] + Fixture.healthyRound().prefix(2), nowMs: Fixture.t0)
        let text = try JSONFrame(model, nowMs: Fixture.t0).encoded()
        let frame = try WireJSON.decode(JSONFrame.self, from: Data(text.utf8))
        #expect(frame.health == .degraded)
        #expect(frame.leaderID == 1)
        #expect(frame.nodes.map(\.reachable) == [true, true, false])
        #expect(frame.nodes[2].error == "connection refused")
        #expect(frame.nodes[0].status == model.tracks[0].status)
        #expect(text.contains("\"status\":null"))
        #expect(text.contains("\"schema_version\":1"))
    }
}

/// Golden files under `Tests/DashboardCoreTests/testdata`; `UPDATE_GOLDEN=1` rewrites them.
enum Golden {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("testdata")

    static func check(_ actual: String, file: String) throws {
        let url = directory.appendingPathComponent(file)
        if ProcessInfo.processInfo.environment["UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            try Data(actual.utf8).write(to: url)
            return
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(actual == expected, "golden \(file) differs; UPDATE_GOLDEN=1 rewrites it")
    }
}
