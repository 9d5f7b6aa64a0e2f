import Chaos
import Foundation
import PeerTransport
import RaftCore

/// Inputs for fuzzing a three-node cluster's peer protocol (issue #14): every frame kind and all eight Raft message
/// bodies with boundary values (indexes and terms at 0, small, 2^62 - 1, 2^62, 2^64 - 1), sent by a stranger (a
/// hello naming a non-member) or by a spoofed member (a hello naming another member), sometimes with a `from` that
/// does not match the hello, sometimes lightly mutated. ``PeerFuzzCounts`` records what was sent, by kind and sender.
enum PeerFuzzInputs {
    static let members: [NodeID] = [1, 2, 3]

    /// One connection's bytes to node `target`.
    ///
    /// With `authenticatedAs`, the link is a TLS one presenting that member's certificate: the hello names it (the
    /// frames then pass authentication and meet admission and validation), counted as `authenticated.KIND`.
    static func input(
        _ random: inout SeededRandom, target: NodeID, counts: PeerFuzzCounts, authenticatedAs member: NodeID? = nil
    ) -> [UInt8] {
        let spoofed = Bool.random(using: &random)
        let others = members.filter { $0 != target }
        var hello: NodeID = spoofed ? others.randomElement(using: &random) ?? 1 : UInt64.random(in: 4...200, using: &random)
        var sender = spoofed ? "member" : "stranger"
        if let member {
            hello = member
            sender = "authenticated"
        }
        var frames: [PeerFrame] = [.hello(PeerHello(nodeID: hello))]
        var kinds = ["\(sender).hello"]
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let from = Int.random(in: 0..<8, using: &random) == 0 ? UInt64.random(in: 1...9, using: &random) : hello
            let (frame, kind) = frameInput(&random, from: from, to: target)
            frames.append(frame)
            kinds.append("\(sender).\(kind)")
        }
        counts.add(kinds)
        var bytes = PeerWire.preamble
        for frame in frames { bytes += Array(PeerWire.encode(frame).readableBytesView) }
        if Int.random(in: 0..<4, using: &random) == 0 {
            var tail = Array(bytes[PeerWire.preamble.count...])
            FuzzTests.mutate(&tail, &random, rounds: Int.random(in: 1...3, using: &random))
            bytes = PeerWire.preamble + tail
        }
        return bytes
    }

    static func frameInput(_ random: inout SeededRandom, from: NodeID, to: NodeID) -> (PeerFrame, String) {
        switch Int.random(in: 0..<14, using: &random) {
        case 0..<8:
            let message = Message(from: from, to: to, term: term(&random), body: body(&random))
            let data: [UInt8]? = {
                guard case .installSnapshot = message.body else { return nil }
                return Bool.random(using: &random) ? bytes(&random, upTo: 2000) : nil
            }()
            return (.raft(message, snapshotData: data), message.body.kindName)
        case 8, 9:
            let data = bytes(&random, upTo: 1500)
            let total: UInt64 = [UInt64(data.count), UInt64(data.count) * 3, 1 << 40, .max].randomElement(using: &random) ?? 0
            let offset: UInt64 = [0, UInt64(data.count), index(&random)].randomElement(using: &random) ?? 0
            let install = Message(from: from, to: to, term: term(&random), body: .installSnapshot(metadata(&random)))
            let chunk = SnapshotChunk(
                transfer: random.next() % 4, offset: offset, total: total, data: data,
                message: Bool.random(using: &random) ? install : nil)
            return (.snapshotChunk(chunk), "snapshotChunk")
        case 10, 11:
            let requests = [
                TunnelledRequest(method: "POST", uri: "/join", body: Array(#"{"node_id":9,"address":"127.0.0.1:1"}"#.utf8)),
                TunnelledRequest(method: "POST", uri: "/join?x", body: bytes(&random, upTo: 100)),
                TunnelledRequest(method: "POST", uri: "/put", body: Array(#"{"key":"fz","value":"v"}"#.utf8)),
                TunnelledRequest(method: "GET", uri: "/get?key=fz&consistency=linearizable"),
                TunnelledRequest(method: "GET", uri: "/cluster"),
            ]
            return (.forwardRequest(id: random.next() % 8, requests.randomElement(using: &random) ?? requests[0]), "forwardRequest")
        case 12:
            return (.forwardResponse(id: random.next() % 8, TunnelledResponse(status: 200, body: [1])), "forwardResponse")
        default:
            return (.hello(PeerHello(nodeID: from)), "secondHello")
        }
    }

    static func body(_ random: inout SeededRandom) -> Message.Body {
        switch Int.random(in: 0..<10, using: &random) {
        case 0:
            return .requestVote(
                lastIndex: index(&random), lastTerm: term(&random), preVote: Bool.random(using: &random),
                transfer: Bool.random(using: &random))
        case 1:
            return .voteResponse(granted: Bool.random(using: &random), preVote: Bool.random(using: &random))
        case 2:
            let prev = index(&random)
            let count = Int.random(in: 0...3, using: &random)
            let gap: UInt64 = Int.random(in: 0..<3, using: &random) == 0 ? 2 : 1
            let entryTerm = term(&random)
            let entries = (0..<count).map { i in
                // Noops and garbage payloads only: a spoofed member could otherwise write real keys (no TLS yet).
                Entry(term: entryTerm, index: prev &+ 1 &+ UInt64(i) &* gap, kind: Bool.random(using: &random) ? .noop : .normal,
                    data: bytes(&random, upTo: 20))
            }
            return .appendEntries(prevIndex: prev, prevTerm: term(&random), entries: entries, commit: index(&random), round: random.next())
        case 3:
            let result: Message.AppendResult =
                Bool.random(using: &random)
                ? .success(matchIndex: index(&random))
                : .reject(rejectedIndex: index(&random), conflictTerm: Bool.random(using: &random) ? term(&random) : nil, conflictIndex: index(&random))
            return .appendResponse(result, round: random.next())
        case 4:
            return .heartbeat(commit: index(&random), round: random.next())
        case 5:
            return .heartbeatResponse(round: random.next())
        case 6:
            return .installSnapshot(metadata(&random))
        case 7:
            return .readIndex(batch: random.next() % 8, lease: Bool.random(using: &random))
        case 8:
            return .readIndexResponse(batch: random.next() % 8, index: Bool.random(using: &random) ? index(&random) : nil)
        default:
            return .timeoutNow
        }
    }

    static func metadata(_ random: inout SeededRandom) -> SnapshotMetadata {
        let voters: Set<NodeID> = [[], [1, 2, 3], [55], [1, 2, 3, 99]].randomElement(using: &random) ?? []
        return SnapshotMetadata(
            index: index(&random), term: term(&random),
            membership: Membership(voters: voters, learners: Bool.random(using: &random) ? [3] : []))
    }

    static func term(_ random: inout SeededRandom) -> Term {
        [UInt64.random(in: 0...6, using: &random), RaftNode.maxTerm - 1, RaftNode.maxTerm, .max, 1 << 40]
            .randomElement(using: &random) ?? 0
    }

    static func index(_ random: inout SeededRandom) -> LogIndex {
        [UInt64.random(in: 0...40, using: &random), RaftNode.maxIndex - 1, RaftNode.maxIndex, .max, .max - 1]
            .randomElement(using: &random) ?? 0
    }

    static func bytes(_ random: inout SeededRandom, upTo limit: Int) -> [UInt8] {
        (0..<Int.random(in: 0...limit, using: &random)).map { _ in UInt8.random(in: 0...255, using: &random) }
    }
}

/// What a fuzz run sent, by `sender.kind` (thread-safe: the workers share it).
final class PeerFuzzCounts: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]

    func add(_ kinds: [String]) {
        lock.withLock { for kind in kinds { counts[kind, default: 0] += 1 } }
    }

    var snapshot: [String: Int] { lock.withLock { counts } }

    /// The sum of `dengine_peer_frames_refused_total` samples in a Prometheus text page.
    static func refusalTotal(_ metrics: String) -> Int {
        metrics.split(separator: "\n")
            .filter { $0.hasPrefix("dengine_peer_frames_refused_total{") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
            .reduce(0) { $0 + Int($1) }
    }
}
