import RaftCore

/// Protocol rules of one peer connection, as a pure value: frames in, actions out.
///
/// Both directions start with a hello. The dialer sends preamble + hello and may send frames at once; the acceptor
/// answers with its own hello. Afterwards Raft frames may travel either way, forwarded requests only from dialer to
/// acceptor and forwarded responses only back. Anything else is a protocol violation and closes the connection.
///
/// Admission (issue #14): on an accepted connection a Raft frame is delivered only when its `from` is the node the
/// hello named and that node is a member (``PeerAdmission``, read per frame: membership changes while a connection
/// lasts), and only if it passes ``PeerMessageValidation``; snapshot chunks only from the leader this node follows; a
/// non-member may only tunnel `POST /join`. The hello itself is trusted as far as `authenticatedNodeID` allows: with
/// TLS, the node id bound in the peer's certificate goes there and a hello naming another node closes the connection.
struct PeerConnectionStateMachine {
    enum Role: Equatable {
        /// We accepted the connection; the remote must introduce itself first.
        case acceptor
        /// We dialled `expected`; its hello must name that node.
        case dialer(expected: NodeID)
    }

    enum State: Equatable {
        case awaitingHello
        case established(remote: NodeID)
        case closed
    }

    enum Action: Equatable {
        /// Acceptor: the remote introduced itself; answer with our own hello.
        case replyHello(remote: NodeID)
        /// Dialer: the node we dialled answered; the link is healthy.
        case helloConfirmed
        /// Hand a Raft message to the node.
        case deliver(Message, snapshotData: [UInt8]?)
        /// Acceptor: serve a forwarded request and answer on this connection.
        case serveForward(id: UInt64, TunnelledRequest)
        /// Dialer: the answer to one of our forwarded requests.
        case completeForward(id: UInt64, TunnelledResponse)
        /// Acceptor: stage a snapshot chunk from `sender` (the leader), and deliver the image once it is whole.
        case stageChunk(SnapshotChunk, sender: NodeID)
        /// Dialer: the receiver of our snapshot transfer holds `0..<offset` of it; continue from there.
        case resumeTransfer(transfer: UInt64, offset: UInt64)
        /// Drop the frame (and close the connection if the refusal says so).
        case refuse(PeerRefusal)
        /// Acceptor: answer a refused forwarded request without serving it.
        case refuseForward(id: UInt64, PeerRefusal)
        /// Close the connection.
        case close(PeerWireError)
        /// Nothing to do (the connection is already closing).
        case none
    }

    let role: Role
    /// The node id the connection's transport authenticated (the TLS certificate's), if any: the hello must name it.
    let authenticatedNodeID: NodeID?
    private(set) var state: State = .awaitingHello
    /// This node's cluster id (0: none); a hello with another is refused (a restored cluster and the old one's nodes).
    let clusterID: UInt64

    init(role: Role, authenticatedNodeID: NodeID? = nil, clusterID: UInt64 = 0) {
        self.role = role
        self.authenticatedNodeID = authenticatedNodeID
        self.clusterID = clusterID
    }

    static func describe(_ clusterID: UInt64) -> String {
        clusterID == 0 ? "(none: bootstrapped from config files)" : String(clusterID, radix: 16)
    }

    /// - Parameter admission: who may speak right now (read afresh for every frame).
    mutating func received(_ frame: PeerFrame, admission: PeerAdmission) -> Action {
        switch (state, frame) {
        case (.closed, _):
            return .none
        case (.awaitingHello, .hello(let hello)):
            guard hello.version == PeerWire.protocolVersion else { return close(.unsupportedVersion(hello.version)) }
            guard hello.clusterID == clusterID else {
                return close(
                    .unexpectedFrame(
                        "hello from node \(hello.nodeID) of cluster \(Self.describe(hello.clusterID)), but this node "
                            + "belongs to cluster \(Self.describe(clusterID)) (a restored cluster does not mix with "
                            + "the nodes of the cluster it was backed up from)"))
            }
            if let authenticated = authenticatedNodeID, authenticated != hello.nodeID {
                return close(.unexpectedFrame("hello names node \(hello.nodeID) but the connection is node \(authenticated)'s"))
            }
            switch role {
            case .acceptor:
                state = .established(remote: hello.nodeID)
                return .replyHello(remote: hello.nodeID)
            case .dialer(let expected):
                guard hello.nodeID == expected else {
                    return close(.unexpectedFrame("dialled node \(expected) but node \(hello.nodeID) answered"))
                }
                state = .established(remote: hello.nodeID)
                return .helloConfirmed
            }
        case (.awaitingHello, _):
            return close(.unexpectedFrame("\(frame.kindName) before hello"))
        case (.established, .hello):
            return close(.unexpectedFrame("second hello"))
        case (.established(let remote), .raft(let message, let data)):
            if let refusal = refusal(of: message, snapshotData: data, remote: remote, admission: admission) {
                return refuse(refusal)
            }
            return .deliver(message, snapshotData: data)
        case (.established(let remote), .snapshotChunk(let chunk)):
            guard role == .acceptor else { return close(.unexpectedFrame("snapshotChunk on a dialled connection")) }
            guard admission.members.contains(remote) else { return refuse(.notMember(remote)) }
            guard admission.leader == remote else { return refuse(.chunkNotFromLeader(remote)) }
            // The last chunk's message is checked before its bytes are staged (its data is checked once whole).
            if let message = chunk.message,
                let refusal = refusal(of: message, snapshotData: [], remote: remote, admission: admission)
            {
                return refuse(refusal)
            }
            return .stageChunk(chunk, sender: remote)
        case (.established, .snapshotAck(let transfer, let offset)):
            guard role != .acceptor else { return close(.unexpectedFrame("snapshotAck on an accepted connection")) }
            return .resumeTransfer(transfer: transfer, offset: offset)
        case (.established(let remote), .forwardRequest(let id, let request)):
            guard role == .acceptor else { return close(.unexpectedFrame("forwardRequest on a dialled connection")) }
            guard admission.members.contains(remote) || PeerAdmission.stranger(remote, mayForward: request) else {
                return .refuseForward(id: id, .forwardNotAllowed(remote))
            }
            return .serveForward(id: id, request)
        case (.established, .forwardResponse(let id, let response)):
            guard role != .acceptor else { return close(.unexpectedFrame("forwardResponse on an accepted connection")) }
            return .completeForward(id: id, response)
        }
    }

    /// Why a Raft message on the connection of `remote` must not reach the node, if it must not.
    private func refusal(of message: Message, snapshotData: [UInt8]?, remote: NodeID, admission: PeerAdmission)
        -> PeerRefusal?
    {
        guard message.from == remote else { return .spoofedSender(claimed: message.from, hello: remote) }
        guard admission.members.contains(remote) else { return .notMember(remote) }
        return PeerMessageValidation.problem(with: message, snapshotData: snapshotData).map { .invalidMessage($0) }
    }

    private mutating func refuse(_ refusal: PeerRefusal) -> Action {
        if refusal.closesConnection { state = .closed }
        return .refuse(refusal)
    }

    /// A decoding error or the channel going away.
    mutating func failed() {
        state = .closed
    }

    private mutating func close(_ error: PeerWireError) -> Action {
        state = .closed
        return .close(error)
    }
}

extension PeerFrame {
    /// The frame's case name, for error messages.
    var kindName: String {
        switch self {
        case .hello: return "hello"
        case .raft: return "raft"
        case .forwardRequest: return "forwardRequest"
        case .forwardResponse: return "forwardResponse"
        case .snapshotChunk: return "snapshotChunk"
        case .snapshotAck: return "snapshotAck"
        }
    }
}
