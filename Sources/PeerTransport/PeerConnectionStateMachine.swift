import RaftCore

/// Protocol rules of one peer connection, as a pure value: frames in, actions out.
///
/// Both directions start with a hello. The dialer sends preamble + hello and may send frames at once; the acceptor
/// answers with its own hello. Afterwards Raft frames may travel either way, forwarded requests only from dialer to
/// acceptor and forwarded responses only back. Anything else is a protocol violation and closes the connection.
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
        case serveForward(id: UInt64, ForwardedRequest)
        /// Dialer: the answer to one of our forwarded requests.
        case completeForward(id: UInt64, ForwardedResponse)
        /// Close the connection.
        case close(PeerWireError)
        /// Nothing to do (the connection is already closing).
        case none
    }

    let role: Role
    private(set) var state: State = .awaitingHello
    /// Reassembles chunked snapshots arriving on this connection.
    private(set) var assembler: SnapshotAssembler
    /// Chunks that did not fit a transfer (each drops the transfer; the leader sends the snapshot again).
    private(set) var rejectedChunks = 0

    init(role: Role, maxSnapshotBytes: UInt64 = 16 << 30) {
        self.role = role
        self.assembler = SnapshotAssembler(maxTotal: maxSnapshotBytes)
    }

    mutating func received(_ frame: PeerFrame) -> Action {
        switch (state, frame) {
        case (.closed, _):
            return .none
        case (.awaitingHello, .hello(let hello)):
            guard hello.version == PeerWire.protocolVersion else { return close(.unsupportedVersion(hello.version)) }
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
        case (.established, .raft(let message, let data)):
            return .deliver(message, snapshotData: data)
        case (.established, .snapshotChunk(let chunk)):
            switch assembler.accept(chunk) {
            case .incomplete:
                return .none
            case .complete(let message, let image):
                return .deliver(message, snapshotData: image)
            case .rejected:
                rejectedChunks += 1
                return .none
            }
        case (.established, .forwardRequest(let id, let request)):
            guard role == .acceptor else { return close(.unexpectedFrame("forwardRequest on a dialled connection")) }
            return .serveForward(id: id, request)
        case (.established, .forwardResponse(let id, let response)):
            guard role != .acceptor else { return close(.unexpectedFrame("forwardResponse on an accepted connection")) }
            return .completeForward(id: id, response)
        }
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
        }
    }
}
