import ClusterAPI
import Foundation
import Testing

@testable import ClusterClient

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A status as a node would report it.
func makeStatus(
    _ id: UInt64, role: NodeRole, term: UInt64 = 3, leader: UInt64? = 1, applied: UInt64 = 10, peers: [PeerStatus] = []
) -> NodeStatus {
    NodeStatus(
        nodeID: id, address: "127.0.0.1:908\(id)", role: role, term: term, leaderID: leader, commitIndex: applied,
        appliedIndex: applied, lastLogIndex: applied, snapshotIndex: 0, voters: [1, 2, 3], learners: [],
        leaseRemainingMs: role == .leader ? 120 : 0, uptimeMs: 5000, peers: peers, stats: NodeStats())
}

func target(_ id: UInt64) -> NodeTarget {
    NodeTarget(id: id, client: Endpoint(host: "127.0.0.1", port: 9080 + Int(id)), metrics: Endpoint(host: "127.0.0.1", port: 8080 + Int(id)))
}

let leaderPeers = [
    PeerStatus(id: 2, address: "127.0.0.1:9082", matchIndex: 10, lagEntries: 0, lastAckMsAgo: 12, state: .replicate),
    PeerStatus(id: 3, address: "127.0.0.1:9083", matchIndex: 7, lagEntries: 3, lastAckMsAgo: 4200, state: .probe),
]

@Suite struct ClusterViewTests {
    @Test func allUpIsHealthy() {
        let view = ClusterView(probes: [
            NodeProbe(target: target(1), status: makeStatus(1, role: .leader, peers: leaderPeers), error: nil),
            NodeProbe(target: target(2), status: makeStatus(2, role: .follower), error: nil),
            NodeProbe(target: target(3), status: makeStatus(3, role: .follower, applied: 7), error: nil),
        ])
        #expect(view.health == .healthy)
        #expect(view.leaderID == 1)
        #expect(view.votersUp == 3 && view.tolerates == 1)
        #expect(view.rows.map(\.lagEntries) == [0, 0, 3])
    }

    @Test func oneDownIsDegradedAndListed() {
        let view = ClusterView(probes: [
            NodeProbe(target: target(1), status: makeStatus(1, role: .leader, peers: leaderPeers), error: nil),
            NodeProbe(target: target(2), status: makeStatus(2, role: .follower), error: nil),
            NodeProbe(target: target(3), status: nil, error: "connection refused"),
        ])
        #expect(view.health == .degraded)
        #expect(view.health.exitStatus == .degraded)
        #expect(view.rows.count == 3)
        #expect(view.rows[2].health == "unreachable: connection refused")
        #expect(view.rows[2].lastSeenMsAgo == 4200)
        #expect(view.reasons == ["node 3: unreachable: connection refused"])
    }

    @Test func removedAndDepartedNodesAreListedButNotAProblem() {
        var leader = makeStatus(1, role: .leader, peers: [leaderPeers[0]])
        leader.voters = [1, 2]
        var follower = makeStatus(2, role: .follower)
        follower.voters = [1, 2]
        var removed = makeStatus(3, role: .removed, leader: nil)
        removed.voters = [1, 2]
        let stillUp = ClusterView(probes: [
            NodeProbe(target: target(1), status: leader, error: nil),
            NodeProbe(target: target(2), status: follower, error: nil),
            NodeProbe(target: target(3), status: removed, error: nil),
        ])
        #expect(stillUp.health == .healthy, "\(stillUp.reasons)")
        #expect(stillUp.rows[2].health == ClusterView.removed)
        #expect(stillUp.votersUp == 2 && stillUp.voterCount == 2)
        let stopped = ClusterView(probes: [
            NodeProbe(target: target(1), status: leader, error: nil),
            NodeProbe(target: target(2), status: follower, error: nil),
            NodeProbe(target: target(3), status: nil, error: "connection refused"),
        ])
        #expect(stopped.health == .healthy, "\(stopped.reasons)")
        #expect(stopped.rows[2].health == ClusterView.notAMember)
        // A voter that is down is still a problem.
        let voterDown = ClusterView(probes: [
            NodeProbe(target: target(1), status: leader, error: nil),
            NodeProbe(target: target(2), status: nil, error: "connection refused"),
        ])
        #expect(voterDown.health == .unavailable)
    }

    @Test func noQuorumOrNobodyIsUnavailable() {
        let twoDown = ClusterView(probes: [
            NodeProbe(target: target(1), status: makeStatus(1, role: .leader), error: nil),
            NodeProbe(target: target(2), status: nil, error: "connection refused"),
            NodeProbe(target: target(3), status: nil, error: "no answer within 1s"),
        ])
        #expect(twoDown.health == .unavailable)
        let none = ClusterView(probes: (1...3).map { NodeProbe(target: target($0), status: nil, error: "connection refused") })
        #expect(none.health == .unavailable && none.rows.count == 3 && none.leaderID == nil)
        let noLeader = ClusterView(probes: [NodeProbe(target: target(1), status: makeStatus(1, role: .candidate, leader: nil), error: nil)])
        #expect(noLeader.health == .unavailable)
    }

    @Test func lagAndStaleFollowersAreDegraded() {
        var peers = leaderPeers
        peers[1].lagEntries = 5000
        let view = ClusterView(
            probes: [
                NodeProbe(target: target(1), status: makeStatus(1, role: .leader, peers: peers), error: nil),
                NodeProbe(target: target(2), status: makeStatus(2, role: .follower, term: 2, leader: nil), error: nil),
                NodeProbe(target: target(3), status: makeStatus(3, role: .follower), error: nil),
            ], maxLag: 1000)
        #expect(view.health == .degraded)
        #expect(view.rows[1].health.hasPrefix("no leader known at term 2"))
        #expect(view.rows[2].health == "lagging 5000 entries")
    }

    @Test func membersMissingFromEndpointsStillAppear() {
        var status = makeStatus(1, role: .leader, peers: leaderPeers)
        status.learners = [4]
        let view = ClusterView(probes: [NodeProbe(target: target(1), status: status, error: nil)])
        #expect(view.rows.map(\.id) == [1, 2, 3, 4])
        #expect(view.rows[3].health.hasPrefix("not probed"))
    }
}

@Suite struct ExitCodeMappingTests {
    @Test func apiCodesMapToTheTable() {
        #expect(ExitStatus(APIErrorCode.keyNotFound) == .notFound)
        #expect(ExitStatus(APIErrorCode.noLeader) == .unavailable)
        #expect(ExitStatus(APIErrorCode.unavailable) == .unavailable)
        #expect(ExitStatus(APIErrorCode.overloaded) == .unavailable)
        #expect(ExitStatus(APIErrorCode.timeout) == .timeout)
        for code in [APIErrorCode.invalidRequest, .conflict, .tooLarge, .notCaughtUp, .membershipChangeInProgress] {
            #expect(ExitStatus(code) == .failed)
        }
        #expect(ExitStatus.allCases.map(\.rawValue) == [0, 1, 2, 3, 4, 5, 64, 130])
    }
}

@Suite struct EndpointTests {
    @Test func parsingAndDefaults() throws {
        #expect(Endpoint(parsing: "http://localhost:9081/")?.description == "localhost:9081")
        #expect(Endpoint(parsing: "0.0.0.0:9081")?.description == "127.0.0.1:9081")
        #expect(Endpoint(parsing: "nope") == nil)
        let defaults = try Discovery.resolve(endpoints: nil, metricsEndpoints: nil, localNodes: [])
        #expect(defaults.map { "\($0.client)/\($0.metrics!)" } == [
            "127.0.0.1:9081/127.0.0.1:8081", "127.0.0.1:9082/127.0.0.1:8082", "127.0.0.1:9083/127.0.0.1:8083",
        ])
        let paired = try Discovery.resolve(endpoints: ["a:1,b:2"], metricsEndpoints: ["a:11,b:12"], localNodes: [])
        #expect(paired.map { $0.metrics?.port } == [11, 12])
        #expect(throws: EndpointError.self) {
            try Discovery.resolve(endpoints: ["a:1,b:2"], metricsEndpoints: ["a:11"], localNodes: [])
        }
    }

    @Test func repositoryConfigDirectoryGivesTheThreeVoters() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let (nodes, problems) = Discovery.localNodes(in: root.appendingPathComponent("config").path)
        #expect(problems.isEmpty)
        #expect(nodes.map(\.id) == [1, 2, 3, 4, 5])
        let targets = try Discovery.resolve(endpoints: nil, metricsEndpoints: nil, localNodes: nodes)
        #expect(targets.map { "\($0.id!) \($0.client) \($0.metrics!)" } == [
            "1 127.0.0.1:9081 127.0.0.1:8081", "2 127.0.0.1:9082 127.0.0.1:8082", "3 127.0.0.1:9083 127.0.0.1:8083",
        ])
    }
}

@Suite struct TransportTests {
    /// A socket that listens but never accepts: connect succeeds, nothing ever answers (a paused node).
    static func hungListener() -> (fd: Int32, port: Int) {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        _ = inet_pton(AF_INET, "127.0.0.1", &address.sin_addr)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        _ = listen(fd, 16)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    @Test func aHungNodeCostsOneProbeDeadlineAndWritesAreUnknown() async throws {
        let (fd, port) = Self.hungListener()
        defer { close(fd) }
        let hung = NodeTarget(id: 1, client: Endpoint(host: "127.0.0.1", port: port), metrics: Endpoint(host: "127.0.0.1", port: port))
        let client = ClusterClient(
            targets: [hung, hung, hung, hung], timeout: .milliseconds(400), probeTimeout: .milliseconds(500))
        _ = await ClusterClient.probe([hung], timeout: .milliseconds(50))  // warm-up: threads, the loopback path
        let clock = ContinuousClock()
        let start = clock.now
        let probes = await client.probeAll()
        let elapsed = start.duration(to: clock.now)
        #expect(probes.count == 4 && probes.allSatisfy { $0.error == "no answer within 500ms" })
        #expect(elapsed >= .milliseconds(500))
        #expect(elapsed < .milliseconds(1900), "four 500 ms probes in parallel, not one after another (2 s)")
        await #expect(throws: CommandFailure.self) { try await client.put(key: "k", value: "v") }
        do {
            _ = try await client.put(key: "k", value: "v")
        } catch {
            #expect(error.exit == .timeout)
            #expect(error.message.contains("may or may not have been applied"))
        }
    }

    @Test func parserHandlesLengthChunkedAndPartial() throws {
        let plain = Data("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Leader-Id: 3\r\n\r\nhi".utf8)
        let response = try #require(try parseResponse(plain, atEOF: false))
        #expect(response.status == 200 && response.body == Data("hi".utf8) && response.leaderIDHeader == 3)
        #expect(try parseResponse(plain.dropLast(), atEOF: false) == nil)
        let chunked = Data("HTTP/1.1 404 NF\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n".utf8)
        #expect(try parseResponse(chunked, atEOF: false)?.body == Data("ab".utf8))
        #expect(throws: TransportError.self) { try parseResponse(Data("garbage\r\n\r\n".utf8), atEOF: true) }
    }
}
