import RaftCore
import Testing

@testable import PeerTransport

/// Issue #14, hardened peer input: who may speak on an accepted connection, and what a correct node never says.
@Suite("Peer admission and message validation")
struct PeerAdmissionTests {
    static let members = PeerAdmission(members: [2, 3], leader: 2)

    func established(_ remote: NodeID, authenticated: NodeID? = nil) -> PeerConnectionStateMachine {
        var machine = PeerConnectionStateMachine(role: .acceptor, authenticatedNodeID: authenticated)
        _ = machine.received(.hello(PeerHello(nodeID: remote)), admission: Self.members)
        return machine
    }

    @Test("a stranger may say hello and ask to join, nothing else")
    func strangers() {
        var machine = established(99)
        #expect(machine.state == .established(remote: 99))
        let append = Message(
            from: 99, to: 1, term: 1,
            body: .appendEntries(prevIndex: 0, prevTerm: 0, entries: [Entry(term: 1, index: 1)], commit: 0, round: 0))
        #expect(machine.received(.raft(append, snapshotData: nil), admission: Self.members) == .refuse(.notMember(99)))
        let join = TunnelledRequest(
            method: "POST", uri: "/join", body: Array(#"{"node_id":99,"address":"127.0.0.1:9099"}"#.utf8))
        #expect(machine.received(.forwardRequest(id: 1, join), admission: Self.members) == .serveForward(id: 1, join))
        // Only for itself: not for another id, and not without a readable body.
        for body in [#"{"node_id":98,"address":"127.0.0.1:9099"}"#, #"{"node_id":99.5}"#, "not json", ""] {
            let other = TunnelledRequest(method: "POST", uri: "/join", body: Array(body.utf8))
            #expect(
                machine.received(.forwardRequest(id: 4, other), admission: Self.members)
                    == .refuseForward(id: 4, .forwardNotAllowed(99)), "\(body)")
        }
        let put = TunnelledRequest(method: "POST", uri: "/put")
        #expect(
            machine.received(.forwardRequest(id: 2, put), admission: Self.members)
                == .refuseForward(id: 2, .forwardNotAllowed(99)))
        let sneaky = TunnelledRequest(method: "POST", uri: "/join/../remove")
        #expect(
            machine.received(.forwardRequest(id: 3, sneaky), admission: Self.members)
                == .refuseForward(id: 3, .forwardNotAllowed(99)))
        let chunk = SnapshotChunk(transfer: 1, offset: 0, total: 3, data: [1, 2, 3])
        #expect(machine.received(.snapshotChunk(chunk), admission: Self.members) == .refuse(.notMember(99)))
        // The connection stays: the stranger may become a member (a joiner's connection carries its Raft traffic).
        let learner = PeerAdmission(members: [2, 3, 99], leader: 2)
        let response = Message(from: 99, to: 1, term: 1, body: .appendResponse(.success(matchIndex: 0), round: 0))
        #expect(machine.received(.raft(response, snapshotData: nil), admission: learner) == .deliver(response, snapshotData: nil))
        // And stop being one.
        #expect(machine.received(.raft(response, snapshotData: nil), admission: Self.members) == .refuse(.notMember(99)))
    }

    @Test("a member's frame must name the member its hello named; a spoof closes the connection")
    func spoofedSender() {
        var machine = established(3)
        let vote = Message(from: 2, to: 1, term: 5, body: .voteResponse(granted: true, preVote: false))
        #expect(
            machine.received(.raft(vote, snapshotData: nil), admission: Self.members)
                == .refuse(.spoofedSender(claimed: 2, hello: 3)))
        #expect(machine.state == .closed)
    }

    @Test("with an authenticated node id the hello must name it")
    func authenticatedHello() {
        var wrong = PeerConnectionStateMachine(role: .acceptor, authenticatedNodeID: 3)
        guard case .close = wrong.received(.hello(PeerHello(nodeID: 2)), admission: Self.members) else {
            Issue.record("a hello naming another node than the certificate must close")
            return
        }
        var right = PeerConnectionStateMachine(role: .acceptor, authenticatedNodeID: 3)
        #expect(right.received(.hello(PeerHello(nodeID: 3)), admission: Self.members) == .replyHello(remote: 3))
    }

    @Test("a restored cluster's nodes and the old cluster's refuse each other (issue #17)")
    func clusterIDsMustAgree() {
        for (mine, theirs) in [(UInt64(0), UInt64(7)), (7, 0), (7, 8)] {
            var machine = PeerConnectionStateMachine(role: .acceptor, clusterID: mine)
            guard case .close = machine.received(.hello(PeerHello(nodeID: 2, clusterID: theirs)), admission: Self.members)
            else {
                Issue.record("cluster \(theirs) was let into cluster \(mine)")
                continue
            }
            var dialer = PeerConnectionStateMachine(role: .dialer(expected: 2), clusterID: mine)
            guard case .close = dialer.received(.hello(PeerHello(nodeID: 2, clusterID: theirs)), admission: Self.members)
            else {
                Issue.record("a dialer of cluster \(mine) accepted cluster \(theirs)'s answer")
                continue
            }
        }
        var same = PeerConnectionStateMachine(role: .acceptor, clusterID: 7)
        #expect(same.received(.hello(PeerHello(nodeID: 2, clusterID: 7)), admission: Self.members) == .replyHello(remote: 2))
    }

    @Test("snapshot chunks only from the leader this node follows")
    func chunksFromTheLeaderOnly() {
        let meta = SnapshotMetadata(index: 9, term: 1, membership: Membership(voters: [1, 2, 3]))
        let chunk = SnapshotChunk(
            transfer: 1, offset: 0, total: 3, data: [1, 2, 3],
            message: Message(from: 3, to: 1, term: 1, body: .installSnapshot(meta)))
        var follower = established(3)
        #expect(follower.received(.snapshotChunk(chunk), admission: Self.members) == .refuse(.chunkNotFromLeader(3)))
        #expect(follower.state == .established(remote: 3))
        let leaderThree = PeerAdmission(members: [2, 3], leader: 3)
        #expect(follower.received(.snapshotChunk(chunk), admission: leaderThree) == .stageChunk(chunk, sender: 3))
        // The last chunk's message is checked before anything is staged.
        var spoofed = chunk
        spoofed.message?.from = 2
        #expect(
            follower.received(.snapshotChunk(spoofed), admission: leaderThree)
                == .refuse(.spoofedSender(claimed: 2, hello: 3)))
    }

    @Test("a member's malformed messages are refused and close the connection")
    func invalidFromAMember() {
        var machine = established(2)
        let gaps = Message(
            from: 2, to: 1, term: 1,
            body: .appendEntries(
                prevIndex: 0, prevTerm: 0, entries: [Entry(term: 1, index: 1), Entry(term: 1, index: 3)], commit: 0,
                round: 0))
        guard case .refuse(.invalidMessage) = machine.received(.raft(gaps, snapshotData: nil), admission: Self.members) else {
            Issue.record("non-contiguous entries must be refused")
            return
        }
        #expect(machine.state == .closed)
    }

    static let meta = SnapshotMetadata(index: 9, term: 2, membership: Membership(voters: [1, 2]))

    /// One acceptable and at least one unacceptable example of every message kind.
    static let cases: [(Message.Body, [UInt8]?, Bool)] = [
        (.requestVote(lastIndex: 4, lastTerm: 3, preVote: false, transfer: false), nil, true),
        (.requestVote(lastIndex: 4, lastTerm: 4, preVote: true, transfer: false), nil, false),
        (.requestVote(lastIndex: .max, lastTerm: 1, preVote: false, transfer: false), nil, false),
        (.voteResponse(granted: true, preVote: false), nil, true),
        (.voteResponse(granted: true, preVote: false), [1], false),
        (.appendEntries(prevIndex: 2, prevTerm: 2, entries: [Entry(term: 3, index: 3)], commit: 2, round: 1), nil, true),
        (.appendEntries(prevIndex: 2, prevTerm: 2, entries: [Entry(term: 3, index: 4)], commit: 2, round: 1), nil, false),
        (.appendEntries(prevIndex: 2, prevTerm: 3, entries: [Entry(term: 2, index: 3)], commit: 2, round: 1), nil, false),
        (.appendEntries(prevIndex: 2, prevTerm: 2, entries: [Entry(term: 4, index: 3)], commit: 2, round: 1), nil, false),
        (.appendEntries(prevIndex: .max, prevTerm: 2, entries: [], commit: 2, round: 1), nil, false),
        (.appendEntries(prevIndex: 2, prevTerm: 2, entries: [], commit: .max, round: 1), nil, false),
        (.appendResponse(.success(matchIndex: 7), round: 1), nil, true),
        (.appendResponse(.success(matchIndex: .max), round: 1), nil, false),
        (.appendResponse(.reject(rejectedIndex: 5, conflictTerm: 2, conflictIndex: 3), round: 1), nil, true),
        (.appendResponse(.reject(rejectedIndex: 5, conflictTerm: 9, conflictIndex: 3), round: 1), nil, false),
        (.appendResponse(.reject(rejectedIndex: .max, conflictTerm: nil, conflictIndex: 3), round: 1), nil, false),
        (.heartbeat(commit: 3, round: 1), nil, true),
        (.heartbeat(commit: .max, round: 1), nil, false),
        (.heartbeatResponse(round: .max), nil, true),
        (.installSnapshot(meta), [1, 2], true),
        (.installSnapshot(meta), nil, false),
        (.installSnapshot(SnapshotMetadata(index: 9, term: 4, membership: meta.membership)), [1], false),
        (.installSnapshot(SnapshotMetadata(index: .max, term: 2, membership: meta.membership)), [1], false),
        (.installSnapshot(SnapshotMetadata(index: 9, term: 2, membership: Membership())), [1], false),
        (.timeoutNow, nil, true),
    ]

    @Test("validation of every message kind", arguments: cases.indices)
    func validation(index: Int) {
        let (body, data, valid) = Self.cases[index]
        let message = Message(from: 2, to: 1, term: 3, body: body)
        let problem = PeerMessageValidation.problem(with: message, snapshotData: data)
        #expect((problem == nil) == valid, "\(message): \(problem ?? "accepted")")
    }

    @Test("terms and self-addressed messages")
    func termsAndSelf() {
        let hb = Message.Body.heartbeatResponse(round: 0)
        #expect(PeerMessageValidation.problem(with: Message(from: 2, to: 1, term: RaftNode.maxTerm, body: hb), snapshotData: nil) != nil)
        #expect(PeerMessageValidation.problem(with: Message(from: 1, to: 1, term: 1, body: hb), snapshotData: nil) != nil)
        #expect(PeerMessageValidation.problem(with: Message(from: 2, to: 1, term: RaftNode.maxTerm - 1, body: hb), snapshotData: nil) == nil)
    }
}
