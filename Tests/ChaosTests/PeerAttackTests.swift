import ClusterAPI
import Foundation
import KVStore
import PeerTransport
import RaftCore
import Testing

@testable import ClusterTestSupport

/// The attacks of issue #14, replayed against a real three-node cluster over plain TCP: a script sends the peer
/// preamble, a hello claiming some node id, and one crafted Raft frame to every node. Before the fix the first left
/// the cluster leaderless at term 2^62-1, the second killed the follower with a precondition failure, the third
/// moved leadership past the vote shield, the fourth replaced the whole state.
///
/// Afterwards the leader and its term are unchanged for an election timeout, every node answers, the write made
/// before the attack reads back on every node, and a new write succeeds.
@Suite("Peer attacks on a running cluster (issue #14)", .serialized)
struct PeerAttackTests {
    enum Attack: String, CaseIterable, Sendable {
        /// A heartbeat response at term 2^62-1 claiming to come from a member.
        case hugeTermFromMember
        /// AppendEntries with non-contiguous indexes from node 99 (not a member), then from the leader's id.
        case nonContiguousAppend
        /// TimeoutNow from node 77 (not a member), then from a member that is not the leader.
        case timeoutNowFromStranger
        /// InstallSnapshot from node 55 (not a member), in one frame and in chunks.
        case snapshotFromStranger
    }

    /// Longer timeouts than the cluster suite's: the test asserts that nothing moves, on a loaded machine.
    static var options: LocalCluster.Options { .steady }

    @Test("the attack leaves the leader, its term and the data alone", arguments: Attack.allCases)
    func attack(_ attack: Attack) async throws {
        try await withLocalCluster("attack-\(attack.rawValue)", options: Self.options) { cluster in
            let before = try await cluster.waitForLeader(requireMajority: true)
            let leader = Int(before.nodeID)
            let written = try await cluster.client(leader).putOK("before-\(attack.rawValue)", "1")
            let refusedBefore = try await Self.refusals(cluster)
            for target in cluster.ids {
                let frames = Self.frames(
                    attack, target: NodeID(target), leader: before.nodeID, term: before.term, commit: written.index)
                try await offloaded { RawSocket.send(port: cluster.node(target).clientPort, frames: frames) }
            }
            if attack != .hugeTermFromMember {
                // The strangers' frames are refused by the transport: wait until every node has counted them (and go
                // on to the checks below either way, which show what the frames did if they were not refused).
                let refused = try? await waitFor("every node refused the stranger's frames", timeout: .seconds(5)) {
                    let now = try await Self.refusals(cluster)
                    return cluster.ids.allSatisfy { (now[$0] ?? 0) > (refusedBefore[$0] ?? 0) } ? true : nil
                }
                #expect(refused == true, "some node did not count a refused peer frame")
            }
            // One election timeout: the attacks took effect within one heartbeat.
            let window = ContinuousClock.now + cluster.options.electionTimeoutMax
            while ContinuousClock.now < window {
                for id in cluster.ids { #expect(cluster.isRunning(id), "node \(id) died:\n\(cluster.diagnostics())") }
                let statuses = await cluster.statuses()
                for status in statuses.values {
                    #expect(status.term == before.term, "node \(status.nodeID) at term \(status.term), was \(before.term)")
                    #expect(status.leaderID == before.nodeID, "node \(status.nodeID) follows \(status.leaderID.map(String.init) ?? "nobody")")
                }
                try await Task.sleep(for: .milliseconds(200))  // sampling interval of the observation window
            }
            let after = try await cluster.waitForLeader(requireMajority: true)
            #expect(after.nodeID == before.nodeID && after.term == before.term)
            for id in cluster.ids {
                #expect(try await cluster.client(id).value(of: "before-\(attack.rawValue)", consistency: .eventual) == "1")
            }
            _ = try await cluster.client(leader).putOK("after-\(attack.rawValue)", "2")
            #expect(try await cluster.client(leader).value(of: "after-\(attack.rawValue)", consistency: .linearizable) == "2")
        }
    }

    /// What the attacker sends to `target`: one connection's bytes per element.
    static func frames(_ attack: Attack, target: NodeID, leader: NodeID, term: Term, commit: LogIndex) -> [[PeerFrame]] {
        let member: NodeID = target == 1 ? 2 : 1  // some member other than the target
        switch attack {
        case .hugeTermFromMember:
            return [[.hello(PeerHello(nodeID: member)),
                .raft(Message(from: member, to: target, term: RaftNode.maxTerm - 1, body: .heartbeatResponse(round: 0)), snapshotData: nil)]]
        case .nonContiguousAppend:
            let entries = [Entry(term: term, index: commit + 1, kind: .noop), Entry(term: term, index: commit + 3, kind: .noop)]
            let append = { (from: NodeID) in
                Message(from: from, to: target, term: term, body: .appendEntries(prevIndex: commit, prevTerm: term, entries: entries, commit: commit + 3, round: 1))
            }
            var connections: [[PeerFrame]] = [[.hello(PeerHello(nodeID: 99)), .raft(append(99), snapshotData: nil)]]
            if target != leader {
                connections.append([.hello(PeerHello(nodeID: leader)), .raft(append(leader), snapshotData: nil)])
            }
            return connections
        case .timeoutNowFromStranger:
            var connections: [[PeerFrame]] = [[.hello(PeerHello(nodeID: 77)), .raft(Message(from: 77, to: target, term: term, body: .timeoutNow), snapshotData: nil)]]
            let other = [1, 2, 3].first { $0 != target && $0 != leader } ?? member
            if target != leader {
                connections.append([.hello(PeerHello(nodeID: other)), .raft(Message(from: other, to: target, term: term, body: .timeoutNow), snapshotData: nil)])
            }
            return connections
        case .snapshotFromStranger:
            // A well-formed image of an empty store a few entries ahead, whose only voter is the attacker.
            let index = commit + 10
            var store = KVStateMachine()
            for i in 1...index { _ = store.apply(Entry(term: 1, index: i, kind: .noop)) }
            let membership = Membership(voters: [55], addresses: [55: "127.0.0.1:1"])
            let image = store.snapshot(membership: membership)
            let meta = SnapshotMetadata(index: index, term: term + 1, membership: membership)
            let install = Message(from: 55, to: target, term: term + 1, body: .installSnapshot(meta))
            let chunks = SnapshotChunk.split(image, message: install, transfer: 1, size: max(1, image.count / 3))
                .map(PeerFrame.snapshotChunk)
            return [[.hello(PeerHello(nodeID: 55)), .raft(install, snapshotData: image)], [.hello(PeerHello(nodeID: 55))] + chunks]
        }
    }

    /// `dengine_peer_frames_refused_total` summed over reasons, per node.
    static func refusals(_ cluster: LocalCluster) async throws -> [Int: Int] {
        var result: [Int: Int] = [:]
        for id in cluster.ids {
            let client = cluster.client(id)
            let text = try await offloaded { try client.metrics.request("GET", "/metrics") }
            result[id] = PeerFuzzCounts.refusalTotal(String(decoding: text.body, as: UTF8.self))
        }
        return result
    }
}

extension RawSocket {
    /// Sends each element as its own connection: preamble, then the frames; reads briefly so the node acts on them.
    static func send(port: Int, frames connections: [[PeerFrame]]) {
        for frames in connections {
            var bytes = PeerWire.preamble
            for frame in frames { bytes += Array(PeerWire.encode(frame).readableBytesView) }
            send(port: port, bytes: bytes, halfClose: false, readFor: 150)
        }
    }
}
