import NIOCore

// MARK: - State machine

/// The protocol decision of ``SharedPortDetector``, as a pure value: bytes in, actions out.
///
/// `detecting` buffers bytes until ``PeerWire/classify(_:)`` decides; `configuring` keeps buffering while the chosen
/// pipeline is being installed; `replaying` hands the buffered bytes on exactly once; `closed` ignores everything.
struct SharedPortDetectorStateMachine {
    enum Detected: Equatable {
        case peer
        case http
    }

    enum State {
        case detecting(ByteBuffer?)
        case configuring(ByteBuffer)
        case done
        case closed
    }

    enum ReadAction: Equatable {
        /// Not enough bytes to decide.
        case wait
        /// Install the pipeline for this protocol, then call ``configured(success:)``.
        case configure(Detected)
        /// Neither protocol: close the connection.
        case close
        /// Bytes are being buffered for replay, or the detector is finished; do nothing.
        case none
    }

    enum ConfiguredAction: Equatable {
        /// Hand these bytes to the new pipeline and remove the detector.
        case replay(ByteBuffer)
        /// Configuration failed: close the connection.
        case close
        /// The connection already went away.
        case none
    }

    private(set) var state: State = .detecting(nil)

    mutating func received(_ bytes: ByteBuffer) -> ReadAction {
        switch state {
        case .detecting(let buffered):
            var all = bytes
            if var buffered {
                buffered.writeImmutableBuffer(bytes)
                all = buffered
            }
            switch PeerWire.classify(all.readableBytesView) {
            case .needMoreBytes:
                state = .detecting(all)
                return .wait
            case .peer:
                state = .configuring(all)
                return .configure(.peer)
            case .http:
                state = .configuring(all)
                return .configure(.http)
            case .invalid:
                state = .closed
                return .close
            }
        case .configuring(var buffered):
            // Avoid a copy-on-write of the buffered bytes while appending.
            state = .done
            buffered.writeImmutableBuffer(bytes)
            state = .configuring(buffered)
            return .none
        case .done, .closed:
            return .none
        }
    }

    mutating func configured(success: Bool) -> ConfiguredAction {
        guard case .configuring(let buffered) = state else { return .none }
        if success {
            state = .done
            return .replay(buffered)
        }
        state = .closed
        return .close
    }

    /// The detection deadline passed. Returns whether to close.
    mutating func timedOut() -> Bool {
        guard case .detecting = state else { return false }
        state = .closed
        return true
    }

    /// The peer half-closed or the channel went inactive. Returns whether to close (only while still undecided:
    /// a half preamble followed by EOF is not a connection anyone can serve).
    mutating func inputClosed() -> Bool {
        guard case .detecting = state else { return false }
        state = .closed
        return true
    }
}

// MARK: - Handler

/// The first handler of every accepted connection on the shared client/peer port.
///
/// It buffers the first bytes (they may arrive one at a time) until ``PeerWire/classify(_:)`` decides, then calls
/// `configurePeer` or `configureHTTP` to add the handlers for that protocol after itself, removes itself and replays
/// the buffered bytes into them. Garbage, a half preamble followed by EOF, or no decision within `detectionTimeout`
/// closes the connection; the server itself is unaffected.
public final class SharedPortDetector: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    /// Installs a protocol's handlers on the channel (appended after the detector).
    public typealias Configurator = @Sendable (Channel) -> EventLoopFuture<Void>

    private var machine = SharedPortDetectorStateMachine()
    private let configureHTTP: Configurator
    private let configurePeer: Configurator
    private let detectionTimeout: TimeAmount?
    private var timeout: Scheduled<Void>?
    private var pendingReplay: ByteBuffer?
    private var context: ChannelHandlerContext?

    /// - Parameters:
    ///   - detectionTimeout: how long a connection may stay undecided (e.g. a stalled half preamble); `nil` waits
    ///     forever.
    ///   - configureHTTP: installs the HTTP server handlers.
    ///   - configurePeer: installs the peer protocol handlers, normally ``PeerTransport/inboundPipeline(channel:)``.
    public init(
        detectionTimeout: TimeAmount? = .seconds(10),
        configureHTTP: @escaping Configurator,
        configurePeer: @escaping Configurator
    ) {
        self.detectionTimeout = detectionTimeout
        self.configureHTTP = configureHTTP
        self.configurePeer = configurePeer
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        if context.channel.isActive { startTimer(context: context) }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        _ = machine.inputClosed()
        timeout?.cancel()
        context.fireChannelInactive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is ChannelEvent, case .inputClosed = event as? ChannelEvent, machine.inputClosed() {
            close(context: context)
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch machine.received(unwrapInboundIn(data)) {
        case .wait, .none:
            break
        case .close:
            close(context: context)
        case .configure(let detected):
            timeout?.cancel()
            timeout = nil
            let configure = detected == .peer ? configurePeer : configureHTTP
            configure(context.channel)
                .hop(to: context.eventLoop)
                .assumeIsolated()
                .whenComplete { result in
                    self.configurationCompleted(success: (try? result.get()) != nil)
                }
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        // Swallowed until the new pipeline is installed; the replay fires its own read-complete.
        if case .done = machine.state { context.fireChannelReadComplete() }
    }

    public func removeHandler(context: ChannelHandlerContext, removalToken: ChannelHandlerContext.RemovalToken) {
        if let replay = pendingReplay {
            pendingReplay = nil
            context.fireChannelRead(wrapInboundOut(replay))
            context.fireChannelReadComplete()
        }
        context.leavePipeline(removalToken: removalToken)
    }

    // MARK: Private

    private func configurationCompleted(success: Bool) {
        guard let context else { return }
        switch machine.configured(success: success) {
        case .none:
            break
        case .close:
            close(context: context)
        case .replay(let buffered):
            pendingReplay = buffered
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    private func startTimer(context: ChannelHandlerContext) {
        guard timeout == nil, let detectionTimeout, case .detecting = machine.state else { return }
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: detectionTimeout) {
            guard self.machine.timedOut(), let context = self.context else { return }
            self.close(context: context)
        }
    }

    private func close(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
        context.close(promise: nil)
    }
}
