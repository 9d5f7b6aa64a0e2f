import ClusterAPI
import Foundation
import Testing

/// `dctl events` on real nodes: every node's own events merged into one timeline; an unreachable node is named and
/// the exit is 2.
@Suite(.serialized) struct EventsTests {
    @Test(.enabled(if: ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"] == nil))
    func oneTimelineFromEveryNode() throws {
        let cluster = try ClusterDirectory()
        defer { cluster.cleanup() }
        #expect(try cluster.dctl(["cluster", "start", "--timeout", "30s"]).code == 0)

        let json = try cluster.dctl(["events", "-o", "json"])
        #expect(json.code == 0, "\(json)")
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let result = try #require(document["result"] as? [String: Any])
        let raw = try JSONSerialization.data(withJSONObject: result["events"] ?? [])
        let events = try WireJSON.decode([NodeEvent].self, from: raw)
        #expect(Set(events.filter { $0.kind == .started }.map(\.nodeID)) == [1, 2, 3])
        #expect(events.contains { $0.kind == .electionWon && $0.votes.map { $0.granted >= 2 && $0.voters == 3 } == true })
        #expect(zip(events, events.dropFirst()).allSatisfy { !NodeEvent.timelineOrder($1, $0) }, "merged in time order")
        #expect((result["unreachable"] as? [Any])?.isEmpty == true)

        let table = try cluster.dctl(["events"])
        #expect(table.code == 0, "\(table)")
        #expect(table.stdout.contains("election_won") && table.stdout.contains("won the election for term"))

        #expect(try cluster.dctl(["node", "stop", "3", "--force"]).code == 0)
        let degraded = try cluster.dctl(["events"])
        #expect(degraded.code == 2, "\(degraded)")
        #expect(degraded.stderr.contains("node 3") && degraded.stderr.contains("unreachable"), "\(degraded)")
        #expect(degraded.stdout.contains("node 1") && degraded.stdout.contains("node 2"))

        // The leader reports the stopped node lost once it has been silent for an election timeout.
        let deadline = ContinuousClock.now + .seconds(10)
        var lost = false
        while !lost && ContinuousClock.now < deadline {
            let run = try cluster.dctl(["events"])
            lost = run.stdout.split(separator: "\n").contains { $0.contains("peer_lost") && $0.contains("lost node 3") }
        }
        #expect(lost, "a peer_lost event for node 3 within 10 s")
    }
}
