import ClusterAPI
import NIOCore
import NIOHTTP1

/// The request lifecycle of one client connection, as a value: the handler feeds it request parts and backend
/// completions and performs the actions it returns.
///
/// `HTTPServerPipelineHandler` sits in front and holds back pipelined requests until the previous response is
/// written, so at most one request is in progress here. Body size is enforced as the body streams in, so an
/// oversized upload is rejected before it is buffered.
///
/// Invariant: `sequence` grows by one per dispatched request; a completion or timeout carrying an older sequence
/// is stale and is dropped.
struct ClientConnectionStateMachine {
    enum State {
        /// Between requests.
        case idle
        /// The head has arrived; body bytes are being collected.
        case receiving(head: HTTPRequestHead, body: ByteBuffer?, received: Int)
        /// The request was handed to the backend under `sequence`.
        case awaitingResponse(head: HTTPRequestHead, sequence: UInt64)
        /// An early rejection was sent; everything else the client sends is dropped until the connection closes.
        case draining
        /// The connection is closing or closed.
        case closed
    }

    private(set) var state: State = .idle
    private var sequence: UInt64 = 0
    let maxBodyBytes: Int

    init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    // MARK: Inbound

    enum HeadAction: Equatable {
        /// Keep reading the body.
        case proceed
        /// Keep reading and answer `100 Continue` first (the client sent `Expect: 100-continue`).
        case sendContinue
        /// Answer `413` now and stop reading the request (its declared length is over the cap).
        case rejectEarly(ClientRequestRejection, head: HTTPRequestHead)
        /// Nothing to do (draining or closed).
        case ignore
    }

    mutating func receivedHead(_ head: HTTPRequestHead) -> HeadAction {
        switch state {
        case .idle:
            if let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > maxBodyBytes {
                state = .draining
                return .rejectEarly(Self.bodyTooLarge(maxBodyBytes), head: head)
            }
            state = .receiving(head: head, body: nil, received: 0)
            return head.headers.first(name: "expect")?.lowercased() == "100-continue" ? .sendContinue : .proceed
        case .draining, .closed:
            return .ignore
        case .receiving, .awaitingResponse:
            // The pipelining handler never delivers a second head early; treat it like a protocol error.
            state = .closed
            return .rejectEarly(ClientRequestRejection(.invalidRequest, "unexpected request head"), head: head)
        }
    }

    enum BodyAction: Equatable {
        case proceed
        /// The streamed body went over the cap: answer `413` now and stop reading the request.
        case rejectEarly(ClientRequestRejection, head: HTTPRequestHead)
    }

    mutating func receivedBody(_ part: ByteBuffer) -> BodyAction {
        guard case .receiving(let head, var body, let received) = state else { return .proceed }
        let total = received + part.readableBytes
        guard total <= maxBodyBytes else {
            state = .draining
            return .rejectEarly(Self.bodyTooLarge(maxBodyBytes), head: head)
        }
        // Drop the state's reference before appending, so the buffer is not copied on write.
        state = .idle
        if body == nil {
            body = part
        } else {
            var part = part
            body!.writeBuffer(&part)
        }
        state = .receiving(head: head, body: body, received: total)
        return .proceed
    }

    enum EndAction: Equatable {
        /// Decode and answer the request; completions must carry `sequence`.
        case dispatch(head: HTTPRequestHead, body: ByteBuffer?, sequence: UInt64)
        /// The request ended while draining after an early rejection: the connection can close now.
        case closeAfterDrain
        case ignore
    }

    mutating func receivedEnd() -> EndAction {
        switch state {
        case .receiving(let head, let body, _):
            sequence &+= 1
            state = .awaitingResponse(head: head, sequence: sequence)
            return .dispatch(head: head, body: body, sequence: sequence)
        case .draining:
            return .closeAfterDrain
        case .idle, .awaitingResponse, .closed:
            return .ignore
        }
    }

    // MARK: Completion

    /// The backend answered, or the deadline passed, for request `sequence`. Returns the request head when this
    /// completion is the one to answer (the state becomes `.idle`), or `nil` when it is stale.
    mutating func completeRequest(sequence completed: UInt64) -> HTTPRequestHead? {
        guard case .awaitingResponse(let head, let current) = state, current == completed else { return nil }
        state = .idle
        return head
    }

    /// `true` while request `sequence` waits for its answer.
    func isAwaiting(sequence awaited: UInt64) -> Bool {
        if case .awaitingResponse(_, let current) = state { return current == awaited }
        return false
    }

    enum ProtocolErrorAction: Equatable {
        /// Answer `400` (nothing is being written) and close.
        case respondAndClose
        /// A response is pending or the connection is draining: just close.
        case close
    }

    /// The HTTP parser failed. The connection always closes afterwards.
    mutating func protocolError() -> ProtocolErrorAction {
        defer { state = .closed }
        switch state {
        case .idle, .receiving: return .respondAndClose
        case .awaitingResponse, .draining, .closed: return .close
        }
    }

    /// `true` when no request is in progress, so an idle or half-closed connection may simply be closed.
    var isBetweenRequests: Bool {
        if case .idle = state { return true }
        return false
    }

    mutating func connectionClosed() {
        state = .closed
    }

    private static func bodyTooLarge(_ limit: Int) -> ClientRequestRejection {
        ClientRequestRejection(.tooLarge, "request body is over the \(limit)-byte limit")
    }
}
