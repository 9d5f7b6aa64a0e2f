import ClusterAPI
import Foundation
import HTTPAPI
import NIOPosix
import Synchronization
import Testing

/// `GET /events` on the metrics port: the history as one JSON document (`follow=false`), or a `text/event-stream`
/// that sends the history, then each new event as it is recorded.
@Suite("Metrics port: /events")
struct EventStreamTests {
    /// Events the test appends and the server reads, as a node's ring would be.
    private final class Events: Sendable {
        private let list = Mutex<[NodeEvent]>([])
        func append(_ kind: NodeEventKind, _ message: String) {
            list.withLock { events in
                let seq = UInt64(events.count + 1)
                events.append(
                    NodeEvent(seq: seq, nodeID: 2, atMs: 1_000 + seq, kind: kind, term: 7, message: message))
            }
        }
        func after(_ id: UInt64) -> NodeEventsResponse {
            NodeEventsResponse(nodeID: 2, events: list.withLock { $0.filter { $0.seq > id } })
        }
    }

    private func withServer(_ body: (Int, Events) async throws -> Void) async throws {
        let events = Events()
        let status = NodeStatus(
            nodeID: 2, address: "127.0.0.1:9082", role: .follower, term: 7, leaderID: 1, commitIndex: 1,
            appliedIndex: 1, lastLogIndex: 1, snapshotIndex: 0, voters: [1, 2, 3], learners: [], leaseRemainingMs: 0,
            uptimeMs: 1, peers: [], stats: NodeStats())
        let endpoints = MetricsEndpoints(
            metrics: { "" }, status: { status },
            health: { HealthReport(healthy: true, nodeID: 2, role: .follower, leaderID: 1) },
            events: { events.after($0) })
        let channel = try await MetricsHTTPServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, endpoints: endpoints)
        do {
            try await body(channel.localAddress!.port!, events)
            try await channel.close()
        } catch {
            try? await channel.close()
            throw error
        }
    }

    @Test("follow=false: the events after the given id, oldest first, as JSON; a bad id is 400")
    func history() async throws {
        try await withServer { port, events in
            events.append(.started, "started")
            events.append(.electionWon, "won the election for term 7 with 2 of 3 votes")
            events.append(.leaderChanged, "leader is node 2 at term 7")
            let responses = try await blocking {
                let client = try RawHTTPClient(port: port)
                return [
                    try client.exchange("GET", "/events?follow=false"),
                    try client.exchange("GET", "/events?follow=false&after=1"),
                    try client.exchange("GET", "/events?after=x"),
                ]
            }
            #expect(responses[0].status == 200)
            let all = try WireJSON.decode(NodeEventsResponse.self, from: Data(responses[0].body))
            #expect(all.nodeID == 2)
            #expect(all.events.map(\.kind) == [.started, .electionWon, .leaderChanged])
            let later = try WireJSON.decode(NodeEventsResponse.self, from: Data(responses[1].body))
            #expect(later.events.map(\.seq) == [2, 3])
            #expect(responses[2].status == 400 && responses[2].errorCode == "invalid_request")
        }
    }

    @Test("the stream: history first, then new events as they happen; Last-Event-ID resumes")
    func stream() async throws {
        try await withServer { port, events in
            events.append(.started, "started")
            events.append(.electionStarted, "started an election for term 7")
            let client = try RawHTTPClient(port: port)
            let head = try await blocking {
                client.sendRequest("GET", "/events")
                return try client.readUntil { $0.contains("event: election_started") }
            }
            #expect(head.hasPrefix("HTTP/1.1 200 OK"))
            #expect(head.lowercased().contains("content-type: text/event-stream"))
            #expect(head.contains("id: 1\nevent: started\ndata: {"))
            events.append(.electionWon, "won the election for term 7 with 2 of 3 votes")
            let more = try await blocking { try client.readUntil { $0.contains("event: election_won") } }
            #expect(more.contains("id: 3\nevent: election_won\ndata: "))
            #expect(more.contains(#""message":"won the election for term 7 with 2 of 3 votes""#))

            // A reconnecting subscriber with Last-Event-ID gets only what it missed.
            let resumed = try RawHTTPClient(port: port)
            let text = try await blocking {
                resumed.sendRequest("GET", "/events", headers: ["Last-Event-ID: 2"])
                return try resumed.readUntil { $0.contains("event: election_won") }
            }
            #expect(!text.contains("event: started"))
            #expect(!text.contains("event: election_started"))
        }
    }
}
