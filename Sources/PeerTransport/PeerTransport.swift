import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import RaftCore

// MARK: - Handler protocol

/// What the node supplies to the transport: where inbound traffic goes.
///
/// Methods are called on NIO event-loop threads (possibly several at once, one per connection's loop); they must
/// not block and must be thread-safe. No transport lock is held while they run, so they may call back into the
/// transport.
public protocol PeerTransportHandler: Sendable {
    /// A Raft message from a peer (with its snapshot data for an `installSnapshot`).
    func received(_ message: Message, snapshotData: [UInt8]?)

    /// Messages to `id` may have been lost: a connection attempt failed, an open connection closed, or its queue
    /// overflowed. The Raft core should stop pipelining to it (`RaftNode.reportUnreachable`).
    func peerUnreachable(_ id: NodeID)

    /// Serves a client request that a follower forwarded to this node. The future should always succeed (a failed
    /// future is answered with status 500). `eventLoop` is the connection's loop; an async implementation can use
    /// `eventLoop.makeFutureWithTask { ... }`.
    func handleForwarded(_ request: TunnelledRequest, on eventLoop: EventLoop) -> EventLoopFuture<TunnelledResponse>
}

// MARK: - Secure mode

/// Secure mode for the peer protocol (docs/security.md): connections run inside mutual TLS and a link is accepted
/// only from the node its certificate names.
///
/// Outbound, `addClientHandler` puts the TLS client handler first in the pipeline; it refuses a server whose
/// certificate is not node `peer`'s. Inbound, the node's listener has TLS in front of the port detector, and the
/// transport accepts the hello only when `certifiedNodeID` (the id bound in the verified client certificate) equals
/// the id the hello claims, so every frame on the link is known to come from that node.
public struct PeerTLS: Sendable {
    public var addClientHandler: @Sendable (_ channel: any Channel, _ peer: NodeID) throws -> Void
    public var certifiedNodeID: @Sendable (_ channel: any Channel) -> NodeID?
    /// Refused links, one line each, for the node's log.
    public var report: @Sendable (String) -> Void

    public init(
        addClientHandler: @escaping @Sendable (_ channel: any Channel, _ peer: NodeID) throws -> Void,
        certifiedNodeID: @escaping @Sendable (_ channel: any Channel) -> NodeID?,
        report: @escaping @Sendable (String) -> Void
    ) {
        self.addClientHandler = addClientHandler
        self.certifiedNodeID = certifiedNodeID
        self.report = report
    }
}

// MARK: - Transport

/// Connections to the other members of the cluster: Raft messages out, Raft messages in, and client requests
/// tunnelled from followers to the leader.
///
/// **Connections.** One outbound connection per peer, opened lazily when the first frame is queued, re-opened after
/// a loss with exponential backoff and jitter (``Configuration/minimumBackoff`` to ``Configuration/maximumBackoff``).
/// Raft messages to a peer travel on our outbound connection; its messages to us arrive on its outbound connection,
/// which our server accepts and hands to ``inboundPipeline(channel:)`` (via ``SharedPortDetector``). A forwarded
/// request and its response both use the requester's outbound connection.
///
/// **Threading.** All mutable state (the links, their queues, pending forwards, accepted connections) is confined to
/// one event loop of `group`, chosen at init, through a `NIOLoopBoundBox`; outbound connections live on that loop
/// too. Public methods may be called from any thread: ``send(_:snapshotData:)`` encodes the frame on the caller's
/// thread and hops to the loop; nothing waits for the network. A drain runs once per loop tick per peer, writing
/// every queued frame (up to ``Configuration/maxBatchBytes``) and flushing once. Inbound connections live on whatever
/// loop the server gave them and call the handler from there. The class is `Sendable` because every stored
/// property is immutable or loop-bound.
///
/// **Backpressure.** Each peer's queue is bounded (``Configuration/maxQueuedFrames``,
/// ``Configuration/maxQueuedBytes``). While a peer is slow (its channel not writable) or down, frames accumulate up
/// to that bound; beyond it they are dropped and ``PeerTransportHandler/peerUnreachable(_:)`` is reported once until
/// frames flow again. Peers never wait on each other.
public final class PeerTransport: Sendable {
    /// Bounds and timings.
    public struct Configuration: Sendable, Equatable {
        /// Frames queued per peer before new ones are dropped.
        public var maxQueuedFrames = 4096
        /// Bytes queued per peer before new frames are dropped (room for one maximal snapshot frame).
        public var maxQueuedBytes = 96 * 1024 * 1024
        /// Largest frame sent or accepted; larger outbound frames are dropped and reported as unreachable.
        public var maxFrameLength = PeerWire.defaultMaxFrameLength
        /// Bytes written per drain before yielding to the loop (at least one frame is always written).
        public var maxBatchBytes = 1024 * 1024
        public var connectTimeout: TimeAmount = .seconds(1)
        public var minimumBackoff: TimeAmount = .milliseconds(50)
        public var maximumBackoff: TimeAmount = .seconds(2)
        /// Outbound channel write-buffer watermarks: above `high` the channel is not writable and frames wait in
        /// the bounded queue.
        public var writeBufferLowWaterMark = 256 * 1024
        public var writeBufferHighWaterMark = 1024 * 1024
        /// Snapshot data above this size travels as ``SnapshotChunk``s of this size, one queued at a time, so that
        /// other frames to the same peer (heartbeats, appends) slip in between and no frame limit caps a snapshot.
        public var snapshotChunkBytes = 1024 * 1024
        /// This node's cluster id (`DataDirectory.Opened.clusterID`, 0 for none): sent in hellos, and peers with
        /// another are refused.
        public var clusterID: UInt64 = 0
        /// The largest chunked snapshot a receiver stages; a transfer announcing more is dropped at its first chunk.
        public var maxSnapshotBytes: UInt64 = 4 << 30
        /// Where a receiver stages chunked snapshots while they arrive (one file per sender; see
        /// ``SnapshotStaging``). The node uses `<db_root_dir>/incoming-snapshots`; `nil` picks a new directory under
        /// the system's temporary directory for this transport.
        public var snapshotStagingDirectory: String?
        /// Inbound peer connections open at once; one more is closed at once (a cluster needs one per peer).
        public var maxInboundConnections = 64
        /// An inbound peer connection that carries nothing for this long is closed (a leader's link carries heartbeats;
        /// the sender reconnects when it has something to say). `nil`: never.
        public var inboundIdleTimeout: TimeAmount? = .seconds(60)

        public init() {}
    }

    public let selfID: NodeID
    public let configuration: Configuration
    /// The loop that owns the transport's state and its outbound connections.
    public let eventLoop: EventLoop
    /// Where inbound traffic goes: given at `init`, or once by `start(handler:)` (the node's handler is its Raft server,
    /// which is itself built with this transport). Until then inbound messages are dropped and forwarded requests
    /// refused; nothing connects before the node has started it.
    private let handlerBox: NIOLockedValueBox<PeerTransportHandler?>
    var handler: PeerTransportHandler? { handlerBox.withLockedValue { $0 } }
    /// Secure mode; `nil` for plaintext.
    let tls: PeerTLS?
    /// Who may speak to this node (see ``admit(members:leader:)``); read by inbound connections on every frame.
    let admission: PeerAdmissionBox
    /// Chunked snapshots being received, staged on disk.
    let staging: SnapshotStaging
    private let allocator = ByteBufferAllocator()
    private let state: NIOLoopBoundBox<State>

    private struct Link {
        var machine: PeerLinkStateMachine
        var reconnectTimer: Scheduled<Void>?
        /// The chunked snapshot being sent to this peer, if any.
        var transfer: OutboundTransfer?
    }

    /// A snapshot on its way out, one chunk at a time.
    private struct OutboundTransfer {
        var id: UInt64
        var message: Message
        var data: [UInt8]
        var nextOffset = 0
        /// The first chunk is out and the rest waits for the receiver's `snapshotAck`, which says where to continue
        /// (after the first chunk, or further on when it staged more of this transfer before a reconnect).
        var awaitingAck = false
    }

    private struct State {
        var links: [NodeID: Link] = [:]
        /// Random at start: a receiver resumes a transfer it holds part of by id, total and first chunk, so ids must
        /// not repeat across a restart of this node (a new snapshot of the same size would be spliced onto an old one).
        var nextTransferID = UInt64.random(in: 0...(UInt64.max >> 1))
        var inbound: [ObjectIdentifier: Channel] = [:]
        var isShutdown = false
        /// Per peer, one timer for every forwarded request to it: it fires at the earliest pending deadline (not one
        /// timer per request), fails what expired and re-arms for the next (`forwardsExpired(now:)`). Kept apart from
        /// `links` so that reading it copies no `Link`.
        var forwardTimers: [NodeID: (timer: Scheduled<Void>, at: NIODeadline)] = [:]
    }

    /// - Parameters:
    ///   - selfID: this node's id, sent in hellos; an entry for it in `peers` is ignored.
    ///   - group: the transport uses one loop of it (`group.next()`).
    ///   - peers: the other members' addresses; wildcard hosts are dialled on loopback.
    ///   - handler: receives inbound traffic and reachability reports.
    public init(
        selfID: NodeID,
        group: EventLoopGroup,
        peers: [NodeID: (host: String, port: Int)],
        handler: PeerTransportHandler? = nil,
        configuration: Configuration = Configuration(),
        tls: PeerTLS? = nil
    ) {
        self.selfID = selfID
        self.configuration = configuration
        self.handlerBox = NIOLockedValueBox(handler)
        self.tls = tls
        self.eventLoop = group.next()
        self.admission = PeerAdmissionBox(peers: Set(peers.keys).subtracting([selfID]))
        self.staging = SnapshotStaging(
            directory: configuration.snapshotStagingDirectory
                ?? NSTemporaryDirectory() + "dengine-incoming-snapshots-\(selfID)-\(UUID().uuidString)",
            maxTotal: configuration.maxSnapshotBytes)
        var initial = State()
        for (id, address) in peers where id != selfID {
            let machine = PeerLinkStateMachine(
                address: PeerAddress(host: address.host, port: address.port), limits: configuration.limits
            )
            initial.links[id] = Link(machine: machine)
        }
        self.state = .makeBoxSendingValue(initial, eventLoop: eventLoop)
    }

    // MARK: Public API

    /// Sets where inbound traffic goes, once, before the node accepts connections (a transport built without a
    /// handler). A second call is a programming error and is ignored.
    public func start(handler: PeerTransportHandler) {
        handlerBox.withLockedValue { current in
            if current == nil { current = handler }
        }
    }

    /// Queues `message` for `message.to` and returns at once. Unknown peers are ignored; a full queue drops the
    /// message and reports the peer unreachable. Messages to one peer are delivered in order while its connection
    /// lasts.
    public func send(_ message: Message, snapshotData: [UInt8]? = nil) {
        if let data = snapshotData, data.count > configuration.snapshotChunkBytes {
            onLoop { self.startTransfer(message, data: data) }
            return
        }
        let frame = PeerWire.encode(.raft(message, snapshotData: snapshotData), allocator: allocator)
        let peer = message.to
        onLoop { self.enqueueRaft(frame, to: peer) }
    }

    /// Sends a client request to `peer` (the leader) and completes with its answer.
    ///
    /// Fails with ``ForwardError/unreachable`` when the request was certainly not sent, and with
    /// ``ForwardError/timeout`` or ``ForwardError/connectionLost`` once it was written (outcome unknown).
    public func forward(
        _ request: TunnelledRequest, to peer: NodeID, timeout: TimeAmount
    ) -> EventLoopFuture<TunnelledResponse> {
        let promise = eventLoop.makePromise(of: TunnelledResponse.self)
        onLoop { self.startForward(request, to: peer, timeout: timeout, promise: promise) }
        return promise.futureResult
    }

    /// Replaces the peer set: new peers get a (lazy) link, removed ones are closed and their pending forwards fail,
    /// changed addresses reconnect.
    public func updatePeers(_ peers: [NodeID: (host: String, port: Int)]) {
        var wanted: [NodeID: PeerAddress] = [:]
        for (id, address) in peers where id != selfID {
            wanted[id] = PeerAddress(host: address.host, port: address.port)
        }
        let addresses = wanted
        admission.peersChanged(Set(wanted.keys))
        onLoop { self.applyPeers(addresses) }
    }

    /// Publishes who may speak to this node: Raft frames and snapshot chunks are taken only from `members`, chunks only
    /// from `leader`, and a non-member may only tunnel `POST /join` (see ``PeerAdmission``). Takes effect for the
    /// next frame on every connection. Until the first call, the peer set given to `init`/``updatePeers(_:)`` stands
    /// in for the members and no chunk is taken.
    public func admit(members: Set<NodeID>, leader: NodeID?) {
        admission.publish(PeerAdmission(members: members.subtracting([selfID]), leader: leader))
    }

    /// How many frames were refused, by ``PeerRefusal/code`` (for tests and metrics).
    public func refusals() -> [String: Int] { admission.refusals }

    /// The current peer ids (for tests and status); completes on the transport's loop.
    public func peerIDs() -> EventLoopFuture<Set<NodeID>> {
        eventLoop.submit { Set(self.state.value.links.keys) }
    }

    /// Installs the peer protocol on an accepted connection whose first bytes were the preamble. Used as
    /// ``SharedPortDetector``'s `configurePeer`.
    ///
    /// - Parameter authenticatedNodeID: the node the connection's transport proved the remote to be (with mutual
    ///   TLS, the node id bound in its certificate). The remote's hello must then name that node, and every frame is
    ///   admitted as that node's. `nil` (plain TCP) trusts the hello's id, still subject to ``admit(members:leader:)``.
    public func inboundPipeline(channel: Channel, authenticatedNodeID: NodeID? = nil) -> EventLoopFuture<Void> {
        let maxFrameLength = configuration.maxFrameLength
        let idleTimeout = configuration.inboundIdleTimeout
        return channel.eventLoop.makeCompletedFuture {
            if let idleTimeout {
                try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                try channel.pipeline.syncOperations.addHandler(PeerIdleCloser())
            }
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(PeerFrameDecoder(expectsPreamble: true, maxFrameLength: maxFrameLength))
            )
            try channel.pipeline.syncOperations.addHandler(
                PeerChannelHandler(transport: self, role: .acceptor, authenticatedNodeID: authenticatedNodeID))
        }.flatMap {
            self.eventLoop.submit { self.registerInbound(channel) }
        }.hop(to: channel.eventLoop)
    }

    /// A ``SharedPortDetector`` that hands peer connections to this transport and everything else to `configureHTTP`.
    public func makeSharedPortDetector(
        detectionTimeout: TimeAmount? = .seconds(10),
        configureHTTP: @escaping SharedPortDetector.Configurator
    ) -> SharedPortDetector {
        SharedPortDetector(
            detectionTimeout: detectionTimeout,
            configureHTTP: configureHTTP,
            // Secure mode: the node id of the link's verified certificate (`certified(_:context:)` also refuses a
            // link without one); the connection state machine then holds every frame to it.
            configurePeer: { channel in
                self.inboundPipeline(channel: channel, authenticatedNodeID: self.tls?.certifiedNodeID(channel))
            }
        )
    }

    /// Closes every connection and fails every pending forward; later sends are ignored. Completes when all
    /// channels are closed.
    @discardableResult
    public func shutdown() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            var downs: [PeerLinkStateMachine.LinkDown] = []
            var channels: [Channel] = []
            self.state.withValue { state in
                state.isShutdown = true
                for id in state.links.keys {
                    state.links[id]?.reconnectTimer?.cancel()
                    if let down = state.links[id]?.machine.shutdown() { downs.append(down) }
                }
                state.links.removeAll()
                for (_, armed) in state.forwardTimers { armed.timer.cancel() }
                state.forwardTimers.removeAll()
                channels = Array(state.inbound.values)
                state.inbound.removeAll()
            }
            for down in downs { self.perform(down, peer: nil) }
            let closes = (channels + downs.compactMap(\.close)).map { channel in
                channel.close().recover { _ in }
            }
            return EventLoopFuture.andAllComplete(closes, on: self.eventLoop)
        }
    }

    // MARK: Loop-confined implementation

    private func onLoop(_ body: @escaping @Sendable () -> Void) {
        if eventLoop.inEventLoop {
            body()
        } else {
            eventLoop.execute(body)
        }
    }

    private func enqueueRaft(_ frame: ByteBuffer, to peer: NodeID) {
        guard frame.readableBytes - 4 <= configuration.maxFrameLength else {
            if state.value.links[peer] != nil { handler?.peerUnreachable(peer) }
            return
        }
        guard let action = state.value.links[peer]?.machine.enqueue(frame) else { return }
        perform(action, peer: peer)
    }

    /// Starts sending a snapshot in chunks, replacing one still in progress to the same peer.
    private func startTransfer(_ message: Message, data: [UInt8]) {
        let peer = message.to
        guard state.value.links[peer] != nil else { return }
        state.value.nextTransferID &+= 1
        let id = state.value.nextTransferID
        state.value.links[peer]?.transfer = OutboundTransfer(id: id, message: message, data: data)
        pumpTransfer(peer: peer)
    }

    /// Queues the next chunk of `peer`'s transfer once its queue is empty: at most one chunk waits at a time. A
    /// transfer whose chunks are all sent stays until the receiver acknowledges the whole image (a `snapshotAck` at
    /// its total), so that a connection lost before then restarts it (and the receiver answers with what it holds).
    private func pumpTransfer(peer: NodeID) {
        guard var transfer = state.value.links[peer]?.transfer, transfer.nextOffset < transfer.data.count,
            !transfer.awaitingAck, state.value.links[peer]?.machine.queuedBytes == 0
        else { return }
        let end = min(transfer.data.count, transfer.nextOffset + configuration.snapshotChunkBytes)
        let last = end == transfer.data.count
        let chunk = SnapshotChunk(
            transfer: transfer.id, offset: UInt64(transfer.nextOffset), total: UInt64(transfer.data.count),
            data: Array(transfer.data[transfer.nextOffset..<end]), message: last ? transfer.message : nil)
        transfer.awaitingAck = transfer.nextOffset == 0 && !last
        transfer.nextOffset = end
        state.value.links[peer]?.transfer = transfer
        enqueueRaft(PeerWire.encode(.snapshotChunk(chunk), allocator: allocator), to: peer)
    }

    private func startForward(
        _ request: TunnelledRequest, to peer: NodeID, timeout: TimeAmount,
        promise: EventLoopPromise<TunnelledResponse>
    ) {
        guard let id = state.value.links[peer]?.machine.allocateForwardID() else {
            promise.fail(ForwardError.unreachable)
            return
        }
        let frame = PeerWire.encode(.forwardRequest(id: id, request), allocator: allocator)
        guard frame.readableBytes - 4 <= configuration.maxFrameLength else {
            promise.fail(ForwardError.unreachable)
            return
        }
        let deadline = NIODeadline.now() + timeout
        guard let action = state.value.links[peer]?.machine.enqueue(frame, forward: (id, promise, deadline)) else {
            promise.fail(ForwardError.unreachable)
            return
        }
        if case .dropped = action {
            promise.fail(ForwardError.unreachable)
        } else {
            armForwardTimer(peer: peer, at: deadline)
        }
        perform(action, peer: peer)
    }

    /// Makes sure the peer's forward timer fires no later than `deadline`.
    private func armForwardTimer(peer: NodeID, at deadline: NIODeadline) {
        if let armed = state.value.forwardTimers[peer] {
            if armed.at <= deadline { return }
            armed.timer.cancel()
        }
        let timer = eventLoop.scheduleTask(deadline: deadline) { self.forwardTimerFired(peer: peer) }
        state.value.forwardTimers[peer] = (timer, deadline)
    }

    private func forwardTimerFired(peer: NodeID) {
        let expired: (failures: [PeerLinkStateMachine.Failure], next: NIODeadline?)? = state.withValue { state in
            state.forwardTimers[peer] = nil
            return state.links[peer]?.machine.forwardsExpired(now: .now())
        }
        guard let expired else { return }
        for failure in expired.failures { failure.promise.fail(failure.error) }
        if let next = expired.next { armForwardTimer(peer: peer, at: next) }
    }

    private func applyPeers(_ wanted: [NodeID: PeerAddress]) {
        var downs: [PeerLinkStateMachine.LinkDown] = []
        var connects: [(NodeID, PeerAddress, UInt64)] = []
        state.withValue { state in
            guard !state.isShutdown else { return }
            for id in Array(state.links.keys) where wanted[id] == nil {
                state.links[id]?.reconnectTimer?.cancel()
                state.forwardTimers.removeValue(forKey: id)?.timer.cancel()
                if let down = state.links[id]?.machine.shutdown() { downs.append(down) }
                state.links[id] = nil
            }
            for (id, address) in wanted {
                guard let existing = state.links[id] else {
                    state.links[id] = Link(
                        machine: PeerLinkStateMachine(address: address, limits: configuration.limits))
                    continue
                }
                guard existing.machine.address != address else { continue }
                state.links[id]?.reconnectTimer?.cancel()
                state.links[id]?.reconnectTimer = nil
                if let (down, connect) = state.links[id]?.machine.updateAddress(address) {
                    downs.append(down)
                    if let connect { connects.append((id, connect.0, connect.1)) }
                }
            }
        }
        for down in downs { perform(down, peer: nil) }
        for (id, address, attempt) in connects { connect(peer: id, address: address, attempt: attempt) }
    }

    private func registerInbound(_ channel: Channel) {
        if state.value.isShutdown {
            channel.close(promise: nil)
            return
        }
        // A channel that already closed has run (or is about to run) `inboundClosed`; do not keep it.
        guard channel.isActive else { return }
        guard state.value.inbound.count < configuration.maxInboundConnections else {
            channel.close(promise: nil)
            return
        }
        state.value.inbound[ObjectIdentifier(channel)] = channel
    }

    fileprivate func inboundClosed(_ channel: Channel) {
        onLoop { self.state.value.inbound[ObjectIdentifier(channel)] = nil }
    }

    // MARK: Performing link actions

    private func perform(_ action: PeerLinkStateMachine.EnqueueAction, peer: NodeID) {
        switch action {
        case .none:
            break
        case .scheduleDrain:
            eventLoop.execute { self.drain(peer: peer) }
        case .connect(let address, let attempt):
            connect(peer: peer, address: address, attempt: attempt)
        case .dropped(let report):
            if report { handler?.peerUnreachable(peer) }
        }
    }

    private func perform(_ down: PeerLinkStateMachine.LinkDown, peer: NodeID?) {
        for failure in down.failures { failure.promise.fail(failure.error) }
        down.close?.close(promise: nil)
        if let peer, let (delay, attempt) = down.reconnect {
            let timer = eventLoop.scheduleTask(in: delay) { self.reconnectTimerFired(peer: peer, attempt: attempt) }
            state.value.links[peer]?.reconnectTimer = timer
        }
        if let peer, down.reportUnreachable { handler?.peerUnreachable(peer) }
    }

    private func drain(peer: NodeID) {
        // Mutate the link in place: a copy would duplicate the queue's storage.
        let writable = state.value.links[peer]?.machine.connectedChannel?.isWritable ?? false
        guard let batch = state.value.links[peer]?.machine.drain(writable: writable) else {
            if writable { pumpTransfer(peer: peer) }
            return
        }
        for frame in batch.frames { batch.channel.write(frame, promise: nil) }
        batch.channel.flush()
        if batch.channel.isWritable { pumpTransfer(peer: peer) }
        // Frames left over go next tick while the channel stays writable, else on its writability change.
        if batch.more, batch.channel.isWritable {
            state.value.links[peer]?.machine.drainRescheduled()
            eventLoop.execute { self.drain(peer: peer) }
        }
    }

    private func connect(peer: NodeID, address: PeerAddress, attempt: UInt64) {
        let configuration = self.configuration
        let watermark = ChannelOptions.Types.WriteBufferWaterMark(
            low: configuration.writeBufferLowWaterMark, high: configuration.writeBufferHighWaterMark
        )
        ClientBootstrap(group: eventLoop)
            .connectTimeout(configuration.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: watermark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try self.tls?.addClientHandler(channel, peer)
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(
                            PeerFrameDecoder(expectsPreamble: false, maxFrameLength: configuration.maxFrameLength)
                        )
                    )
                    try channel.pipeline.syncOperations.addHandler(
                        PeerChannelHandler(transport: self, role: .dialer(expected: peer), attempt: attempt)
                    )
                }
            }
            .connect(host: address.dialHost, port: address.port)
            .hop(to: eventLoop)
            .whenComplete { result in
                switch result {
                case .success(let channel): self.connected(peer: peer, attempt: attempt, channel: channel)
                case .failure: self.connectFailed(peer: peer, attempt: attempt)
                }
            }
    }

    private func connected(peer: NodeID, attempt: UInt64, channel: Channel) {
        guard let action = state.value.links[peer]?.machine.connected(attempt: attempt, channel: channel) else {
            channel.close(promise: nil)
            return
        }
        switch action {
        case .closeStale(let stale):
            stale.close(promise: nil)
        case .start(let channel):
            var opening = allocator.buffer(capacity: PeerWire.preamble.count + PeerWire.frameHeaderLength + 10)
            PeerWire.writePreamble(into: &opening)
            PeerWire.encode(.hello(PeerHello(nodeID: selfID, clusterID: configuration.clusterID)), into: &opening)
            channel.write(opening, promise: nil)
            channel.flush()
            drain(peer: peer)
        }
    }

    private func connectFailed(peer: NodeID, attempt: UInt64) {
        let jitter = Double.random(in: 0..<1)
        guard let down = state.value.links[peer]?.machine.connectFailed(attempt: attempt, jitter: jitter) else {
            return
        }
        perform(down, peer: peer)
    }

    private func reconnectTimerFired(peer: NodeID, attempt: UInt64) {
        guard let next = state.value.links[peer]?.machine.reconnectTimerFired(attempt: attempt) else { return }
        connect(peer: peer, address: next.0, attempt: next.attempt)
    }

    fileprivate func linkHelloConfirmed(peer: NodeID, attempt: UInt64) {
        onLoop { self.state.value.links[peer]?.machine.helloConfirmed(attempt: attempt) }
    }

    fileprivate func linkWritable(peer: NodeID) {
        onLoop { self.drain(peer: peer) }
    }

    fileprivate func linkClosed(peer: NodeID, attempt: UInt64) {
        onLoop {
            let jitter = Double.random(in: 0..<1)
            guard let down = self.state.value.links[peer]?.machine.connectionClosed(attempt: attempt, jitter: jitter)
            else { return }
            // Start the transfer again at offset 0: a receiver that staged more of it answers with a snapshotAck and
            // the transfer continues from there.
            self.state.value.links[peer]?.transfer?.nextOffset = 0
            self.state.value.links[peer]?.transfer?.awaitingAck = false
            self.perform(down, peer: peer)
            // A link with nothing queued stays idle: a pending transfer is what brings it back.
            self.pumpTransfer(peer: peer)
        }
    }

    /// The receiver holds `0..<offset` of our transfer `transfer` to `peer`: skip what it has, or forget the transfer
    /// once it has all of it.
    fileprivate func resumeTransfer(peer: NodeID, transfer: UInt64, offset: UInt64) {
        onLoop {
            guard var outbound = self.state.value.links[peer]?.transfer, outbound.id == transfer else { return }
            if offset == UInt64(outbound.data.count) {
                self.state.value.links[peer]?.transfer = nil
                return
            }
            guard offset < UInt64(outbound.data.count), outbound.awaitingAck || offset > UInt64(outbound.nextOffset)
            else { return }
            outbound.nextOffset = Int(offset)
            outbound.awaitingAck = false
            self.state.value.links[peer]?.transfer = outbound
            self.pumpTransfer(peer: peer)
        }
    }

    fileprivate func forwardResponseReceived(peer: NodeID, id: UInt64, response: TunnelledResponse) {
        onLoop { self.state.value.links[peer]?.machine.responseReceived(id: id)?.succeed(response) }
    }
}

extension PeerTransport.Configuration {
    var limits: PeerLinkStateMachine.Limits {
        PeerLinkStateMachine.Limits(
            maxQueuedFrames: maxQueuedFrames,
            maxQueuedBytes: maxQueuedBytes,
            maxBatchBytes: maxBatchBytes,
            minimumBackoff: minimumBackoff,
            maximumBackoff: maximumBackoff
        )
    }
}

// MARK: - Channel handler

/// Applies ``PeerConnectionStateMachine``'s actions on one connection, dialled or accepted. Framing is done by
/// ``PeerFrameDecoder`` before it; this handler holds no protocol logic of its own.
final class PeerChannelHandler: ChannelInboundHandler {
    typealias InboundIn = PeerFrame
    typealias OutboundOut = ByteBuffer

    private let transport: PeerTransport
    private var machine: PeerConnectionStateMachine
    /// The dialled peer and connection attempt, for outbound connections.
    private let dialled: (peer: NodeID, attempt: UInt64)?

    init(
        transport: PeerTransport, role: PeerConnectionStateMachine.Role, attempt: UInt64 = 0,
        authenticatedNodeID: NodeID? = nil
    ) {
        self.transport = transport
        self.machine = PeerConnectionStateMachine(
            role: role, authenticatedNodeID: authenticatedNodeID, clusterID: transport.configuration.clusterID)
        if case .dialer(let peer) = role {
            self.dialled = (peer, attempt)
        } else {
            self.dialled = nil
        }
    }

    /// Secure mode refused the link: nothing more is read from it.
    private var refused = false
    /// A flush of the forwarded answers written this loop turn is queued.
    private var flushScheduled = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        switch machine.received(unwrapInboundIn(data), admission: transport.admission.current) {
        case .none:
            break
        case .replyHello(let remote):
            guard certified(remote, context: context) else { return }
            let hello = PeerWire.encode(
                .hello(PeerHello(nodeID: transport.selfID, clusterID: transport.configuration.clusterID)),
                allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(hello), promise: nil)
        case .helloConfirmed:
            guard let dialled, certified(dialled.peer, context: context) else { return }
            transport.linkHelloConfirmed(peer: dialled.peer, attempt: dialled.attempt)
        case .deliver(let message, let snapshotData):
            transport.handler?.received(message, snapshotData: snapshotData)
        case .serveForward(let id, let request):
            serve(id: id, request: request, channel: context.channel)
        case .completeForward(let id, let response):
            if let dialled { transport.forwardResponseReceived(peer: dialled.peer, id: id, response: response) }
        case .stageChunk(let chunk, let sender):
            switch transport.staging.accept(chunk, from: sender) {
            case .incomplete, .duplicate:
                break
            case .complete(let message, let image):
                transport.handler?.received(message, snapshotData: image)
                acknowledge(transfer: chunk.transfer, offset: UInt64(image.count), context: context)
            case .acknowledge(let transfer, let offset, _):
                acknowledge(transfer: transfer, offset: offset, context: context)
            case .rejected(let why):
                transport.admission.count(.chunkDropped(why))
            }
        case .resumeTransfer(let transfer, let offset):
            if let dialled { transport.resumeTransfer(peer: dialled.peer, transfer: transfer, offset: offset) }
        case .refuse(let refusal):
            transport.admission.count(refusal)
            if refusal.closesConnection { context.close(promise: nil) }
        case .refuseForward(let id, let refusal):
            transport.admission.count(refusal)
            let body = #"{"error":{"code":"forbidden","message":"\#(refusal)"}}"#
            let response = TunnelledResponse(
                status: 403, headers: [("content-type", "application/json")], body: Array(body.utf8))
            let frame = PeerWire.encode(.forwardResponse(id: id, response), allocator: context.channel.allocator)
            context.writeAndFlush(wrapOutboundOut(frame), promise: nil)
        case .close:
            context.close(promise: nil)
        }
    }

    /// Tells the sender of a snapshot transfer how much of it this node holds (all of it once complete).
    private func acknowledge(transfer: UInt64, offset: UInt64, context: ChannelHandlerContext) {
        let ack = PeerWire.encode(.snapshotAck(transfer: transfer, offset: offset), allocator: context.channel.allocator)
        context.writeAndFlush(wrapOutboundOut(ack), promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        machine.failed()
        context.close(promise: nil)
    }

    /// Secure mode: the hello's node id must be the one bound in the link's verified certificate. Plaintext mode
    /// accepts any.
    private func certified(_ claimed: NodeID, context: ChannelHandlerContext) -> Bool {
        guard let tls = transport.tls else { return true }
        let certified = tls.certifiedNodeID(context.channel)
        guard certified == claimed else {
            let remote = context.channel.remoteAddress.map { "\($0)" } ?? "?"
            let holder = certified.map { "node \($0)" } ?? "no node certificate"
            tls.report("refused a peer link from \(remote): its hello claims node \(claimed), its certificate names \(holder)")
            refused = true
            machine.failed()
            context.close(promise: nil)
            return false
        }
        return true
    }

    /// The shared port allows half-closure (HTTP clients half-close after their request), but a peer never does on
    /// purpose: the end of its input is the end of the connection. Without this, every peer that went away (a
    /// `kill -9`, a fuzzer) left an inbound channel in CLOSE_WAIT holding a descriptor for good.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            machine.failed()
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelInactive(context: ChannelHandlerContext) {
        machine.failed()
        if let dialled {
            transport.linkClosed(peer: dialled.peer, attempt: dialled.attempt)
        } else {
            transport.inboundClosed(context.channel)
        }
        context.fireChannelInactive()
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if let dialled, context.channel.isWritable { transport.linkWritable(peer: dialled.peer) }
        context.fireChannelWritabilityChanged()
    }

    /// Runs the node's handler and writes the answer back on this connection, whichever loop the handler finishes on.
    private func serve(id: UInt64, request: TunnelledRequest, channel: Channel) {
        let answer = transport.handler?.handleForwarded(request, on: channel.eventLoop)
            ?? channel.eventLoop.makeSucceededFuture(
                TunnelledResponse(
                    status: 503, headers: [("content-type", "text/plain; charset=utf-8")],
                    body: Array("this node has not started yet".utf8)))
        answer.hop(to: channel.eventLoop).assumeIsolated().whenComplete { result in
            let response: TunnelledResponse
            switch result {
            case .success(let answered): response = answered
            case .failure(let error):
                response = TunnelledResponse(
                    status: 500, headers: [("content-type", "text/plain; charset=utf-8")],
                    body: Array("forwarded request failed: \(error)".utf8))
            }
            let frame = PeerWire.encode(.forwardResponse(id: id, response), allocator: channel.allocator)
            channel.write(frame, promise: nil)
            // Flushed by one task queued behind this one: every answer completed in the same loop turn (a follower
            // tunnels many clients' requests over this one connection) leaves in one write(2).
            guard !self.flushScheduled else { return }
            self.flushScheduled = true
            channel.eventLoop.assumeIsolated().execute {
                self.flushScheduled = false
                channel.flush()
            }
        }
    }
}

/// Closes an inbound peer connection that `IdleStateHandler` reports idle.
final class PeerIdleCloser: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
