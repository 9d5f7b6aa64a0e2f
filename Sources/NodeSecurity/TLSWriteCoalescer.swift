import NIOCore

/// Sits on the application side of a TLS handler and joins the small writes made between two flushes into one
/// buffer, so that they travel as one TLS record: NIOSSL encrypts every write as a record of its own, and an HTTP
/// response is three writes (head, body, end) while a peer link flushes many frames at once. Large writes pass
/// through unchanged (after what is pending), so snapshot chunks are not copied.
public final class TLSWriteCoalescer: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = IOData
    public typealias OutboundOut = IOData

    /// Writes at least this large are not copied into the pending buffer.
    static let passThroughBytes = 16 * 1024

    private var pending: ByteBuffer?
    private var promise: EventLoopPromise<Void>?

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .byteBuffer(var buffer) = unwrapOutboundIn(data), buffer.readableBytes < Self.passThroughBytes
        else {
            writePending(context: context)
            context.write(data, promise: promise)
            return
        }
        if pending == nil {
            pending = buffer
        } else {
            pending?.writeBuffer(&buffer)
        }
        if let promise {
            if let existing = self.promise { existing.futureResult.cascade(to: promise) } else { self.promise = promise }
        }
    }

    public func flush(context: ChannelHandlerContext) {
        writePending(context: context)
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        writePending(context: context)
        context.close(mode: mode, promise: promise)
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        writePending(context: context)
    }

    private func writePending(context: ChannelHandlerContext) {
        guard let buffer = pending else { return }
        pending = nil
        let promise = self.promise
        self.promise = nil
        context.write(wrapOutboundOut(.byteBuffer(buffer)), promise: promise)
    }
}

@available(*, unavailable)
extension TLSWriteCoalescer: Sendable {}
