import Chaos
import Foundation
import NIOCore
import PeerTransport
import RaftCore
import Testing

@testable import ClusterTestSupport

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Seeded, time-bounded fuzzing of a real node's one port: random and mutated HTTP requests, and mutated peer frames
/// after the peer preamble, over many concurrent connections. The node must stay up, answer `/health` and a put/get
/// afterwards, and hold no more file descriptors than before once the fuzz connections are closed.
///
/// The decoder unit itself is fuzzed in `PeerTransportTests` (`fuzzRandom`, `fuzzMutated`).
/// `FUZZ_SECONDS` (default 6 per target) and `FUZZ_SEED` tune it.
@Suite("Fuzz: HTTP layer and peer protocol over sockets", .serialized)
struct FuzzTests {
    static let seconds = Double(ProcessInfo.processInfo.environment["FUZZ_SECONDS"] ?? "") ?? 6
    static let seed = UInt64(ProcessInfo.processInfo.environment["FUZZ_SEED"] ?? "") ?? 20_260_127

    @Test("random and mutated HTTP requests: no crash, no hang, no leaked connection")
    func http() async throws {
        try await withFuzzedNode { cluster in
            let port = cluster.node(1).clientPort
            try await Self.fuzz(ports: [port], seconds: Self.seconds, workers: 4) { random, _ in Self.httpInput(&random) }
        }
    }

    @Test("mutated peer frames after the preamble: no crash, no hang, no leaked connection")
    func peer() async throws {
        try await withFuzzedNode { cluster in
            let port = cluster.node(1).clientPort
            try await Self.fuzz(ports: [port], seconds: Self.seconds, workers: 4) { random, _ in Self.peerInput(&random) }
        }
    }

    /// Issue #14: every frame kind and every Raft message body, as a stranger and as a spoofed member, against a
    /// three-node cluster. Afterwards it still has a leader at a sane term and every node serves.
    @Test("every peer frame and message kind, from strangers and spoofed members, against three nodes")
    func peerKindsAgainstACluster() async throws {
        let counts = PeerFuzzCounts()
        try await withFuzzedNode(nodes: 3) { cluster in
            let ports = cluster.ids.map { cluster.node($0).clientPort }
            try await Self.fuzz(ports: ports, seconds: Self.seconds, workers: 3) { random, target in
                PeerFuzzInputs.input(&random, target: NodeID(target + 1), counts: counts)
            }
        }
        let sent = counts.snapshot
        print("peer fuzz counts: " + sent.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
        let raftKinds = ["requestVote", "voteResponse", "appendEntries", "appendResponse", "heartbeat", "heartbeatResponse",
            "installSnapshot", "timeoutNow"]
        for sender in ["stranger", "member"] {
            for kind in raftKinds + ["hello", "snapshotChunk", "forwardRequest", "forwardResponse"] {
                #expect((sent["\(sender).\(kind)"] ?? 0) > 0, "no \(sender).\(kind) sent")
            }
        }
    }

    /// The regression the peer fuzzer found: peers that say hello and go away must not leave CLOSE_WAIT channels.
    @Test("peers that connect, say hello and hang up are let go")
    func peerHangUps() async throws {
        try await withFuzzedNode { cluster in
            let port = cluster.node(1).clientPort
            let hello = PeerWire.preamble + Array(PeerWire.encode(.hello(PeerHello(nodeID: 2))).readableBytesView)
            try await offloaded {
                for round in 0..<40 { RawSocket.send(port: port, bytes: hello, halfClose: round % 2 == 0, readFor: 20) }
            }
        }
    }

    // MARK: The harness

    /// A cluster of `nodes` (one by default); checks health, a write, a leader at a sane term and every node's fd
    /// count around `body`.
    func withFuzzedNode(nodes: Int = 1, _ body: (LocalCluster) async throws -> Void) async throws {
        try await withLocalCluster(nodes: nodes) { cluster in
            let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            _ = try await cluster.client(leader).putOK("before", "1")
            var baselines: [Int: (pid: Int32, fds: Int)] = [:]
            for id in cluster.ids {
                let pid = try #require(cluster.pid(id))
                baselines[id] = (pid, Self.openFiles(pid))
            }
            try await body(cluster)
            for id in cluster.ids {
                #expect(cluster.isRunning(id), "node \(id) died under fuzzing:\n\(cluster.diagnostics())")
                let health = try await waitFor("/health 200 on node \(id) after fuzzing", timeout: .seconds(15)) {
                    let response = try await cluster.client(id).health()
                    return response.status == 200 ? response : nil
                }
                #expect(health.status == 200)
            }
            let after = try await cluster.waitForLeader(timeout: .seconds(15), requireMajority: true)
            // Far below 2^62: what a spoofed member can do without TLS is bounded by the core's term horizon.
            #expect(after.term < RaftNode.termHorizon * 2, "leader \(after.nodeID) at term \(after.term)")
            for id in cluster.ids {
                try await waitFor("a put via node \(id) after fuzzing", timeout: .seconds(10)) {
                    try await cluster.client(id).putOK("after", "\(id)")
                }
                #expect(try await cluster.client(id).value(of: "after", consistency: .linearizable) == "\(id)")
            }
            // Every fuzz connection is closed: the nodes must let go of them.
            await Self.expectDescriptorsSettle(baselines)
        }
    }

    /// Waits (15 s at most) until each node holds at most 8 descriptors more than before the fuzz (its own peers and
    /// timers), and says what it holds otherwise. TLS connections close after a close_notify exchange, which NIOSSL
    /// lets take up to 5 s.
    static func expectDescriptorsSettle(_ baselines: [Int: (pid: Int32, fds: Int)]) async {
        for (id, baseline) in baselines.sorted(by: { $0.key < $1.key }) {
            var last = 0
            // The closure's type is spelled out: with an inferred `Int?` result the wait would take `.some(nil)` for
            // an answer and return at once.
            let settled = try? await waitFor(
                "fd count of node \(id) back near \(baseline.fds)", timeout: .seconds(15), interval: .milliseconds(100)
            ) { () -> Int? in
                last = openFiles(baseline.pid)
                return last <= baseline.fds + 8 ? last : nil
            }
            let held = "\(sockets(baseline.pid))\n\(fileDescriptors(baseline.pid))"
            #expect(settled != nil, "node \(id): fds before the fuzz \(baseline.fds), 15 s after it \(last):\n\(held)")
        }
    }

    /// What the node's descriptors point at, grouped (`socket` 40, a file 1), for the failure message.
    static func fileDescriptors(_ pid: Int32) -> String {
        let directory = "/proc/\(pid)/fd"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var kinds: [String: Int] = [:]
        for name in names {
            let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: "\(directory)/\(name)")) ?? "?"
            kinds[target.hasPrefix("socket:") ? "socket" : target, default: 0] += 1
        }
        return kinds.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: "\n")
    }

    /// The node's TCP sockets (`ss`), for the failure message.
    static func sockets(_ pid: Int32) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = [
            "-c",
            "ss -tanp 2>/dev/null | grep 'pid=\(pid),' | awk '{print $1, $4, $5}' | sort | uniq -c | sort -rn "
                + "| head -20",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try? process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func openFiles(_ pid: Int32) -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
    }

    /// Runs `workers` connections at a time until `seconds` pass, each sending one generated input, sometimes
    /// half-closing, reading for a short while, then closing.
    /// Worker `i` targets `ports[i % ports.count]`; `input` is told the index of its target.
    static func fuzz(
        ports: [Int], seconds: Double, workers: Int, input: @escaping @Sendable (inout SeededRandom, Int) -> [UInt8]
    ) async throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let sent = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<workers {
                group.addTask {
                    try await offloaded {
                        var random = SeededRandom(seed: seed &+ UInt64(worker) &* 7919)
                        let target = worker % ports.count
                        let port = ports[target]
                        var count = 0
                        while ContinuousClock.now < deadline {
                            let bytes = input(&random, target)
                            let mode = Int.random(in: 0..<4, using: &random)
                            RawSocket.send(port: port, bytes: bytes, halfClose: mode == 0, readFor: mode == 3 ? 0 : 150)
                            count += 1
                        }
                        return count
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(sent > 50, "only \(sent) fuzz inputs sent")
        print("fuzz: \(sent) inputs in \(seconds) s on ports \(ports)")
    }

    // MARK: Inputs

    static let httpCorpus: [String] = [
        "POST /put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 25\r\n\r\n"
            + "{\"key\":\"a\",\"value\":\"b\"}  ",
        "GET /get?key=a&consistency=linearizable HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /get?key=a&consistency=eventual HTTP/1.1\r\nHost: x\r\n\r\nGET /get?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
        "POST /cas HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"key\":\"a\",\"expected\":null,\"value\":\"c\"}",
        "POST /delete HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n b\r\n{\"key\":\"a\"}\r\n0\r\n\r\n",
        "GET /scan?prefix=&limit=5 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /watch?key=a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "POST /join HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"node_id\":9,\"address\":\"127.0.0.1:1\"}",
        "POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n{",
        "POST /put HTTP/1.0\r\nContent-Length: 22\r\n\r\n{\"key\":\"\\ud800\",\"v\":1}",
        "GET /get?key=%FF%FE HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n\r\n",
    ]

    static func httpInput(_ random: inout SeededRandom) -> [UInt8] {
        if Int.random(in: 0..<10, using: &random) == 0 {
            return (0..<Int.random(in: 0..<600, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
        }
        var bytes = Array(httpCorpus.randomElement(using: &random)!.utf8)
        mutate(&bytes, &random, rounds: Int.random(in: 0...4, using: &random))
        return bytes
    }

    static func peerInput(_ random: inout SeededRandom) -> [UInt8] {
        var frames: [PeerFrame] = [.hello(PeerHello(nodeID: UInt64.random(in: 2...9, using: &random)))]
        for _ in 0..<Int.random(in: 0...3, using: &random) {
            switch Int.random(in: 0..<4, using: &random) {
            case 0:
                frames.append(
                    .raft(
                        Message(
                            from: 7, to: 1, term: UInt64.random(in: 0...3, using: &random),
                            body: .heartbeatResponse(round: 1)), snapshotData: nil))
            case 1:
                frames.append(
                    .forwardRequest(id: random.next() % 100, TunnelledRequest(method: "GET", uri: "/get?key=a")))
            case 2:
                frames.append(
                    .forwardRequest(
                        id: 1,
                        TunnelledRequest(
                            method: "POST", uri: "/put", body: Array("{\"key\":\"f\",\"value\":\"g\"}".utf8))))
            default:
                frames.append(.forwardResponse(id: 3, TunnelledResponse(status: 200, body: [1, 2, 3])))
            }
        }
        var bytes = PeerWire.preamble
        for frame in frames { bytes += Array(PeerWire.encode(frame).readableBytesView) }
        // Keep the preamble intact most of the time, so the fuzz reaches the frame decoder.
        let keep = Int.random(in: 0..<5, using: &random) == 0 ? 0 : PeerWire.preamble.count
        var tail = Array(bytes[keep...])
        mutate(&tail, &random, rounds: Int.random(in: 1...4, using: &random))
        return Array(bytes[..<keep]) + tail
    }

    static func mutate(_ bytes: inout [UInt8], _ random: inout SeededRandom, rounds: Int) {
        for _ in 0..<rounds where !bytes.isEmpty {
            let index = Int.random(in: 0..<bytes.count, using: &random)
            switch Int.random(in: 0..<6, using: &random) {
            case 0: bytes[index] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes[index] ^= 1 << UInt8.random(in: 0..<8, using: &random)
            case 2: bytes.removeSubrange(index...)
            case 3: bytes.insert(UInt8.random(in: 0...255, using: &random), at: index)
            case 4:
                let end = min(bytes.count, index + Int.random(in: 1...40, using: &random))
                bytes.insert(contentsOf: bytes[index..<end], at: index)
            default: bytes.remove(at: index)
            }
        }
    }
}

/// A blocking one-shot socket: connect to 127.0.0.1:port, send, optionally half-close, read for a while, close.
enum RawSocket {
    static func send(port: Int, bytes: [UInt8], halfClose: Bool, readFor milliseconds: Int32) {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
            let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { return }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 0, tv_usec: 300_000)
        _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else { return }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
            }
            if written <= 0 { break }
            offset += written
        }
        if halfClose { _ = shutdown(fd, Int32(SHUT_WR)) }
        guard milliseconds > 0 else { return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .milliseconds(Int(milliseconds))
        while ContinuousClock.now < deadline {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, 20) >= 0 else { return }
            if poller.revents == 0 { continue }
            if recv(fd, &buffer, buffer.count, 0) <= 0 { return }
        }
    }
}
