import Glibc
import NIOCore
import NIOPosix
import RaftCore
import Testing

@testable import PeerTransport

/// Real sockets on 127.0.0.1 with ephemeral ports.
@Suite("PeerTransport over sockets")
struct PeerTransportSocketTests {
    /// One node under test: its transport, what it received, and its shared-port server.
    struct Node {
        var id: NodeID
        var transport: PeerTransport
        var handler: RecordingHandler
        var server: Channel
        var port: Int

        var address: (host: String, port: Int) { ("0.0.0.0", port) }
    }

    static let fast: PeerTransport.Configuration = {
        var configuration = PeerTransport.Configuration()
        configuration.minimumBackoff = .milliseconds(20)
        configuration.maximumBackoff = .milliseconds(200)
        configuration.connectTimeout = .milliseconds(500)
        return configuration
    }()

    private func makeNode(
        _ id: NodeID, group: EventLoopGroup, port: Int = 0,
        configuration: PeerTransport.Configuration = fast,
        respond: (@Sendable (TunnelledRequest, EventLoop) -> EventLoopFuture<TunnelledResponse>)? = nil
    ) async throws -> Node {
        let handler =
            respond.map { RecordingHandler(loop: group.next(), respond: $0) } ?? RecordingHandler(loop: group.next())
        let transport = PeerTransport(
            selfID: id, group: group, peers: [:], handler: handler, configuration: configuration
        )
        // As a node would publish it: nodes 1-3 are the members (peers are added later, one side at a time).
        transport.admit(members: [1, 2, 3], leader: nil)
        let server = try await startSharedPortServer(group: group, transport: transport, port: port)
        return Node(id: id, transport: transport, handler: handler, server: server, port: try server.boundPort)
    }

    private func withGroup(_ body: (EventLoopGroup) async throws -> Void) async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
        do {
            try await body(group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try await group.shutdownGracefully()
    }

    private func stop(_ nodes: Node...) async throws {
        for node in nodes {
            try await node.transport.shutdown().get()
            try await node.server.close()
        }
    }

    private func heartbeat(from: NodeID, to: NodeID, round: UInt64) -> Message {
        Message(from: from, to: to, term: 1, body: .heartbeat(commit: round, round: round))
    }

    // MARK: Tests

    @Test("two transports exchange messages both ways, in order, with snapshot data")
    func exchangeBothWays() async throws {
        try await withGroup { group in
            let a = try await makeNode(1, group: group)
            let b = try await makeNode(2, group: group)
            a.transport.updatePeers([2: b.address])
            b.transport.updatePeers([1: a.address])
            let count: UInt64 = 500
            for round in 0..<count {
                a.transport.send(heartbeat(from: 1, to: 2, round: round))
                b.transport.send(heartbeat(from: 2, to: 1, round: round))
            }
            let meta = SnapshotMetadata(
                index: 10, term: 2, membership: Membership(voters: [1, 2], addresses: [1: "127.0.0.1:1", 2: "h:2"]))
            let snapshot = Message(from: 1, to: 2, term: 2, body: .installSnapshot(meta))
            let data = (0..<300_000).map { UInt8(truncatingIfNeeded: $0) }
            a.transport.send(snapshot, snapshotData: data)

            try await waitUntil("both sides received everything") {
                let atB = try await b.handler.snapshot().messages.count
                let atA = try await a.handler.snapshot().messages.count
                return atB == Int(count) + 1 && atA == Int(count)
            }
            let atB = try await b.handler.snapshot()
            let atA = try await a.handler.snapshot()
            #expect(atB.messages.prefix(Int(count)) == (0..<count).map { heartbeat(from: 1, to: 2, round: $0) }[...])
            #expect(atA.messages == (0..<count).map { heartbeat(from: 2, to: 1, round: $0) })
            #expect(atB.messages.last == snapshot)
            #expect(atB.snapshotData.last == .some(data))
            try await stop(a, b)
        }
    }

    /// Node 1 sending snapshots in chunks of 64 KiB to node 2, which follows it.
    private func withChunkingPair(_ body: (EventLoopGroup, Node, Node) async throws -> Void) async throws {
        var configuration = Self.fast
        configuration.snapshotChunkBytes = 64 * 1024
        let chunked = configuration
        try await withGroup { group in
            let a = try await makeNode(1, group: group, configuration: chunked)
            let b = try await makeNode(2, group: group, configuration: chunked)
            b.transport.admit(members: [1], leader: 1)  // chunks are taken from the leader only
            try await body(group, a, b)
            try await stop(a, b)
        }
    }

    @Test("a chunked snapshot cut off by a broken connection resumes where the receiver stopped (issue #14)")
    func chunkedSnapshotResumes() async throws {
        try await withChunkingPair { group, a, b in
            let image = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 10) }
            let proxy = try await CuttingProxy.start(group: group, target: b.port, cutFirstAfter: 3 << 20)
            a.transport.updatePeers([2: ("127.0.0.1", try proxy.server.boundPort)])
            let meta = SnapshotMetadata(index: 50, term: 3, membership: Membership(voters: [1, 2]))
            let snapshot = Message(from: 1, to: 2, term: 3, body: .installSnapshot(meta))
            a.transport.send(snapshot, snapshotData: image)
            // The first connection carried 3 MiB: 47 whole chunks of 64 KiB plus a part of the 48th. Once they are
            // staged, the second connection may start.
            try await waitUntil("the receiver staged what the first connection carried", timeout: .seconds(20)) {
                b.transport.staging.heldBytes(from: 1) == 47 * 65536
            }
            proxy.release()

            try await waitUntil("the snapshot arrived through the second connection", timeout: .seconds(20)) {
                try await b.handler.snapshot().messages.count == 1
            }
            let log = try await b.handler.snapshot()
            #expect(log.messages == [snapshot])
            let intact = log.snapshotData.first == .some(image)
            #expect(intact, "the image arrived damaged or not at all")
            #expect(b.transport.staging.resumes == 1, "proxy \(proxy.bytesPerConnection), refusals \(b.transport.refusals())")
            let perConnection = proxy.bytesPerConnection
            #expect(perConnection.count == 2 && perConnection[0] == 3 << 20)
            // Without the resume the second connection would carry the whole 4 MiB again.
            // Without the resume the second connection would carry the whole 4 MiB again; with it, the first chunk
            // (answered with the offset held) and the 17 chunks the receiver lacked.
            #expect(perConnection.count == 2 && perConnection[1] < 18 * 65536 + 4096, "bytes per connection: \(perConnection)")
            try await proxy.server.close()
        }
    }

    @Test("a large snapshot travels in chunks with heartbeats in between, and arrives whole")
    func chunkedSnapshot() async throws {
        try await withChunkingPair { _, a, b in
            a.transport.updatePeers([2: b.address])
            b.transport.updatePeers([1: a.address])
            let meta = SnapshotMetadata(index: 50, term: 3, membership: Membership(voters: [1, 2]))
            let snapshot = Message(from: 1, to: 2, term: 3, body: .installSnapshot(meta))
            let data = (0..<(6 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 12) }
            a.transport.send(snapshot, snapshotData: data)
            // Heartbeats sent after the snapshot started do not wait for all of it.
            for round in 0..<20 as Range<UInt64> { a.transport.send(heartbeat(from: 1, to: 2, round: round)) }

            try await waitUntil("the snapshot and the heartbeats arrived", timeout: .seconds(20)) {
                try await b.handler.snapshot().messages.count == 21
            }
            let log = try await b.handler.snapshot()
            let position = try #require(log.messages.firstIndex(of: snapshot))
            #expect(position > 0, "every heartbeat waited behind the whole snapshot")
            #expect(log.snapshotData[position] == .some(data))
            #expect(log.messages.filter { $0 != snapshot } == (0..<20).map { heartbeat(from: 1, to: 2, round: $0) })
        }
    }

    @Test("forwarded requests are answered on the requester's connection; failures are typed")
    func forwarding() async throws {
        try await withGroup { group in
            let b = try await makeNode(2, group: group) { request, loop in
                let echo = TunnelledResponse(status: 200, headers: [("x-uri", request.uri)], body: request.body)
                switch request.uri {
                case "/slow", "/hang":
                    return loop.scheduleTask(in: .seconds(1)) { echo }.futureResult
                default:
                    return loop.makeSucceededFuture(echo)
                }
            }
            let a = try await makeNode(1, group: group)
            a.transport.updatePeers([2: b.address])

            let requests = (0..<20).map { i in
                TunnelledRequest(
                    method: "POST", uri: "/put/\(i)", headers: [("content-type", "application/json")],
                    body: Array("{\"key\":\"k\(i)\"}".utf8)
                )
            }
            let futures = requests.map { a.transport.forward($0, to: 2, timeout: .seconds(5)) }
            for (request, future) in zip(requests, futures) {
                let response = try await future.get()
                #expect(
                    response == TunnelledResponse(status: 200, headers: [("x-uri", request.uri)], body: request.body))
            }

            await #expect(throws: ForwardError.unreachable) {
                try await a.transport.forward(requests[0], to: 99, timeout: .seconds(1)).get()
            }
            await #expect(throws: ForwardError.timeout) {
                try await a.transport.forward(
                    TunnelledRequest(method: "GET", uri: "/slow"), to: 2, timeout: .milliseconds(200)
                )
                .get()
            }

            let hanging = a.transport.forward(
                TunnelledRequest(method: "GET", uri: "/hang"), to: 2, timeout: .seconds(5))
            try await waitUntil("the leader saw the request") {
                try await b.handler.snapshot().forwarded.contains { $0.uri == "/hang" }
            }
            try await b.transport.shutdown().get()
            await #expect(throws: ForwardError.connectionLost) { try await hanging.get() }
            try await stop(a, b)
        }
    }

    @Test("a peer that is down gets its messages once it comes up; forwards to it fail as unreachable")
    func reconnectAfterPeerComesUp() async throws {
        try await withGroup { group in
            // Hold a port bound but not listening: connecting is refused, and nothing else can take the port. Node 2
            // binds it while it is still held (both sockets set SO_REUSEADDR), so there is no window to race in.
            let (placeholder, port) = try Self.boundNotListening()

            let a = try await makeNode(1, group: group)
            a.transport.updatePeers([2: ("127.0.0.1", port)])
            for round in 0..<5 as Range<UInt64> { a.transport.send(heartbeat(from: 1, to: 2, round: round)) }
            try await waitUntil("node 2 reported unreachable") {
                try await a.handler.snapshot().unreachable.contains(2)
            }
            await #expect(throws: ForwardError.unreachable) {
                try await a.transport.forward(TunnelledRequest(method: "GET", uri: "/x"), to: 2, timeout: .seconds(5))
                    .get()
            }

            let b = try await makeNode(2, group: group, port: port)
            close(placeholder)
            try await waitUntil("node 2 received the queued messages") {
                try await b.handler.snapshot().messages.count == 5
            }
            #expect(try await b.handler.snapshot().messages == (0..<5).map { heartbeat(from: 1, to: 2, round: $0) })
            try await stop(a, b)
        }
    }

    /// A TCP socket bound to a free loopback port without `listen`: connections to the port are refused.
    static func boundNotListening() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw POSIXFailure("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            close(fd)
            throw POSIXFailure("bind")
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    struct POSIXFailure: Error, CustomStringConvertible {
        var call: String
        init(_ call: String) { self.call = call }
        var description: String { "\(call) failed: errno \(errno)" }
    }

    @Test("a peer that accepts but never reads does not delay messages to a live peer")
    func deadPeerDoesNotDelayLive() async throws {
        try await withGroup { group in
            var configuration = Self.fast
            configuration.maxQueuedBytes = 4 * 1024 * 1024
            let a = try await makeNode(1, group: group, configuration: configuration)
            let b = try await makeNode(2, group: group)
            let blackHole = try await ServerBootstrap(group: group)
                .childChannelOption(.autoRead, value: false)
                .bind(host: "127.0.0.1", port: 0).get()
            a.transport.updatePeers([2: b.address, 3: ("127.0.0.1", try blackHole.boundPort)])

            let payload = [UInt8](repeating: 0xAB, count: 256 * 1024)
            let big = Message(
                from: 1, to: 3, term: 1,
                body: .appendEntries(
                    prevIndex: 0, prevTerm: 0, entries: [Entry(term: 1, index: 1, data: payload)],
                    commit: 0, round: 0)
            )
            let clock = ContinuousClock()
            let start = clock.now
            for round in 0..<120 as Range<UInt64> {
                a.transport.send(big)
                a.transport.send(heartbeat(from: 1, to: 2, round: round))
            }
            try await waitUntil("the live peer received all its messages", timeout: .seconds(3)) {
                try await b.handler.snapshot().messages.count == 120
            }
            #expect(clock.now - start < .seconds(3))
            #expect(try await b.handler.snapshot().messages == (0..<120).map { heartbeat(from: 1, to: 2, round: $0) })
            try await waitUntil("the black hole is reported unreachable") {
                try await a.handler.snapshot().unreachable.contains(3)
            }
            try await stop(a, b)
            try await blackHole.close()
        }
    }

    @Test("garbage and broken preambles close only their connection; HTTP and peers keep working")
    func garbageIsolated() async throws {
        try await withGroup { group in
            let a = try await makeNode(1, group: group)
            let b = try await makeNode(2, group: group)
            a.transport.updatePeers([2: b.address])

            let (garbage, _) = try await rawClient(group: group, port: b.port, sending: [0x16, 0x03, 0x01, 0x00, 0x05])
            try await waitUntil("the garbage connection is closed") { !garbage.isActive }

            var badFrame = PeerWire.preamble
            badFrame += [0, 0, 0, 1, 0xEE]
            let (broken, _) = try await rawClient(group: group, port: b.port, sending: badFrame)
            try await waitUntil("the bad-frame connection is closed") { !broken.isActive }

            let (half, _) = try await rawClient(group: group, port: b.port, sending: Array(PeerWire.preamble.prefix(4)))
            try await half.close()

            let (http, received) = try await rawClient(
                group: group, port: b.port, sending: Array("GET /health HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
            )
            try await waitUntil("the HTTP client got an answer and was closed") { !http.isActive }
            let answer = try await http.eventLoop.submit { received.value }.get()
            #expect(String(decoding: answer, as: UTF8.self).hasPrefix("HTTP/1.1 200 OK"))

            a.transport.send(heartbeat(from: 1, to: 2, round: 1))
            try await waitUntil("the server still serves peers") {
                try await b.handler.snapshot().messages == [heartbeat(from: 1, to: 2, round: 1)]
            }
            try await stop(a, b)
        }
    }
}
