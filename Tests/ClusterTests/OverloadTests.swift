import ClusterAPI
import Foundation
import HTTPClient
import NIOConcurrencyHelpers
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Resource bounds of a real `dnode` under hostile or heavy clients: connections that idle or trickle, a cap on
/// connections, scans of many keys while writes go on (issue: "Bounded under overload and exhaustion").
@Suite("dnode under overload (processes)", .serialized, .tags(.cluster))
struct OverloadTests {
    // MARK: Connections

    @Test("2000 idle and 200 trickling connections: writes keep succeeding, deadlines close them, memory stays bounded")
    func idleAndTricklingConnections() async throws {
        raiseOwnDescriptorLimit()
        // It asserts that the leader keeps its term while 2200 connections load it.
        var options = LocalCluster.Options.steady
        options.environment = [
            "RAFT__CLUSTER__CLIENT_IDLE_TIMEOUT_MS": "4000", "RAFT__CLUSTER__CLIENT_HEADER_TIMEOUT_MS": "2000",
        ]
        try await withLocalCluster(options: options) { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            let id = Int(leader.nodeID)
            let node = cluster.node(id)
            let pid = try #require(cluster.pid(id))
            let client = cluster.client(id)
            _ = try await client.putOK("warm", "up")
            let rssBefore = try #require(residentBytes(pid))
            let descriptorsBefore = openDescriptors(pid)

            let writer = Writer(client: client)
            let writing = Task { await writer.run() }

            // 2000 keep-alive clients that each made one request and went quiet.
            let idle = try await offloaded { () throws -> [BlockingSocket] in
                var sockets: [BlockingSocket] = []
                for n in 0..<2000 {
                    let socket = try connect(port: node.clientPort)
                    sockets.append(socket)
                    _ = socket.send(keepAliveGet("/get?key=idle\(n)"), deadline: .now + .seconds(5))
                    guard case .response(let response) = socket.receive(deadline: .now + .seconds(5)),
                        response.status == 404
                    else { throw OverloadTestError("idle connection \(n) got no 404") }
                }
                return sockets
            }
            // 200 clients that send a request's head one byte every 250 ms: done only after ~7 s.
            let head = Data("GET /get?key=trickle HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            let trickling = try await offloaded {
                try (0..<200).map { _ in try connect(port: node.clientPort) }
            }
            let rssLoaded = try #require(residentBytes(pid))
            let trickle = Task {
                try await offloaded { () -> (answered: Int, closed: Int) in
                    var open = Set(trickling.indices)
                    var answered = 0
                    for byte in 0..<head.count where !open.isEmpty {
                        for index in open {
                            let sent = trickling[index].send(head.subdata(in: byte..<byte + 1), deadline: .now + .seconds(1))
                            if !sent.complete || isClosedByPeer(trickling[index].fd) { open.remove(index) }
                        }
                        usleep(250_000)
                    }
                    // Whoever is still open got the whole head in: it is answered.
                    for index in open {
                        if case .response = trickling[index].receive(deadline: .now + .seconds(3)) { answered += 1 }
                    }
                    return (answered, trickling.count - open.count)
                }
            }
            let (answered, closedEarly) = try await trickle.value
            #expect(answered == 0, "a trickled head must not outlive client_header_timeout_ms")
            #expect(closedEarly == 200)

            // The idle ones are closed by the idle timeout.
            try await waitFor("the 2000 idle connections to be closed by the node", timeout: .seconds(30)) {
                idle.allSatisfy { isClosedByPeer($0.fd) }
            }
            for socket in idle + trickling { socket.close() }
            writer.stop()
            let written = await writing.value
            #expect(written.failures == 0, "writes failed while connections idled: \(written.lastFailure ?? "")")
            #expect(written.successes >= 10)
            // Each connection costs memory; the bound per connection is stated here: 64 KiB.
            let grown = rssLoaded - rssBefore
            #expect(grown < 2200 * 64 * 1024, "RSS grew by \(grown / 1024) KiB for 2200 connections")
            try await waitFor("the node's descriptors to be released", timeout: .seconds(10)) {
                openDescriptors(pid) <= descriptorsBefore + 16
            }
            #expect(try await cluster.status(id).term == leader.term, "the connections cost the leader its term")
        }
    }

    @Test("over max_client_connections: 429 overloaded with Retry-After, served again once connections close")
    func connectionCap() async throws {
        var options = LocalCluster.Options()
        options.environment = ["RAFT__CLUSTER__MAX_CLIENT_CONNECTIONS": "40"]
        try await withLocalCluster(nodes: 1, options: options) { cluster in
            _ = try await cluster.waitForLeader()
            let port = cluster.node(1).clientPort
            let request = keepAliveGet("/get?key=k")
            let held = try await offloaded { () throws -> [BlockingSocket] in
                try (0..<40).map { n in
                    let socket = try connect(port: port)
                    _ = socket.send(request, deadline: .now + .seconds(3))
                    guard case .response(let response) = socket.receive(deadline: .now + .seconds(3)),
                        response.status == 404
                    else { throw OverloadTestError("connection \(n) under the cap was not served") }
                    return socket
                }
            }
            let refused = try await offloaded { () throws -> HTTPResponse in
                let socket = try connect(port: port)
                defer { socket.close() }
                _ = socket.send(request, deadline: .now + .seconds(3))
                guard case .response(let response) = socket.receive(deadline: .now + .seconds(3)) else {
                    throw OverloadTestError("the 41st connection got no answer")
                }
                return response
            }
            #expect(refused.status == 429)
            #expect(refused.header("retry-after") == "1")
            #expect(try refused.decode(LooseErrorEnvelope.self).error.code == "overloaded")
            for socket in held.prefix(10) { socket.close() }
            try await waitFor("a new connection to be served once ten closed", timeout: .seconds(5)) {
                (try? await cluster.client(1).get("k"))?.status == 404
            }
            for socket in held.dropFirst(10) { socket.close() }
        }
    }

    // MARK: Scans

    @Test("scanning every key page by page under write load: each key once, in order, no election")
    func scanUnderWriteLoad() async throws {
        let keys = Int(ProcessInfo.processInfo.environment["SCAN_TEST_KEYS"] ?? "") ?? 20_000
        // It asserts that the leader keeps its term through 20 000 writes and the scans.
        try await withLocalCluster(options: .steady) { cluster in
            let leader = try await cluster.waitForLeader(requireMajority: true)
            let leaderClient = cluster.client(Int(leader.nodeID))
            let names = (0..<keys).map { String(format: "scan/%06d", $0) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<16 {
                    group.addTask {
                        for index in stride(from: worker, to: keys, by: 16) {
                            _ = try await leaderClient.putOK(names[index], "v\(index)")
                        }
                    }
                }
                try await group.waitForAll()
            }
            let writer = Writer(client: leaderClient)
            let writing = Task { await writer.run() }
            let follower = cluster.ids.first { $0 != Int(leader.nodeID) }!
            for consistency in ["lease", "eventual", "linearizable"] {
                var seen: [String] = []
                var after: String?
                var pages = 0
                repeat {
                    var target = "/scan?prefix=scan%2F&limit=1000&consistency=\(consistency)"
                    if let after { target += "&after=\(NodeClient.percentEncoded(after))" }
                    let page = try NodeClient.require200(
                        try await cluster.client(follower).send("GET", target), "scan page \(pages)"
                    ).decode(ScanResponse.self)
                    #expect(page.entries.count <= 1000)
                    seen += page.entries.map(\.key)
                    after = page.next
                    pages += 1
                } while after != nil
                #expect(seen == names, "\(consistency): \(seen.count) keys seen of \(keys)")
                #expect(pages == (keys + 999) / 1000)
            }
            writer.stop()
            let written = await writing.value
            #expect(written.failures == 0, "writes failed during the scans: \(written.lastFailure ?? "")")
            let after = try await cluster.status(Int(leader.nodeID))
            #expect(after.term == leader.term && after.role == .leader, "the scans cost the leader its term")
        }
    }
}

// MARK: - Helpers

struct OverloadTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes one key after another until stopped, counting what succeeded and what failed.
final class Writer: Sendable {
    let client: NodeClient
    private let stopped = NIOLockedValueBox(false)

    init(client: NodeClient) { self.client = client }

    func stop() { stopped.withLockedValue { $0 = true } }

    func run() async -> (successes: Int, failures: Int, lastFailure: String?) {
        var successes = 0
        var failures = 0
        var lastFailure: String?
        var n = 0
        while !stopped.withLockedValue({ $0 }) {
            n += 1
            do {
                _ = try await client.putOK("writer/\(n)", "\(n)")
                successes += 1
            } catch {
                failures += 1
                lastFailure = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return (successes, failures, lastFailure)
    }
}

/// A GET that keeps the connection open.
func keepAliveGet(_ target: String) -> Data {
    Data("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".utf8)
}

func connect(port: Int) throws -> BlockingSocket {
    try BlockingSocket.connect(
        Endpoint(host: "127.0.0.1", port: port), deadline: .now + .seconds(5), timeout: .seconds(5))
}

/// `true` when the peer closed the connection (end of stream or reset), without blocking.
func isClosedByPeer(_ fd: Int32) -> Bool {
    var byte: UInt8 = 0
    let count = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
    if count == 0 { return true }
    if count < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
    return false
}

/// The resident set size of `pid`, from /proc.
func residentBytes(_ pid: Int32) -> Int? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kib = line.split(separator: " ").dropFirst().first.flatMap({ Int($0) })
    else { return nil }
    return kib * 1024
}

func openDescriptors(_ pid: Int32) -> Int {
    (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
}

/// The test opens thousands of sockets: its soft descriptor limit goes up to the hard one.
func raiseOwnDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
}
