import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy on 127.0.0.1 in front of `target`: it forwards both ways, except that on its first connection it cuts
/// both sides after `cutFirstAfter` bytes from the client, and later connections read nothing from the client until
/// ``release()``. Counts the client's bytes per connection.
final class CuttingProxy: Sendable {
    let server: Channel
    private let forwarded: NIOLockedValueBox<[Int]>
    private let gate: EventLoopPromise<Void>

    /// Lets connections after the first one forward.
    func release() { gate.succeed(()) }

    /// Bytes forwarded from the client on each connection, in order.
    var bytesPerConnection: [Int] { forwarded.withLockedValue { $0 } }

    private init(server: Channel, forwarded: NIOLockedValueBox<[Int]>, gate: EventLoopPromise<Void>) {
        self.server = server
        self.forwarded = forwarded
        self.gate = gate
    }

    static func start(group: EventLoopGroup, target: Int, cutFirstAfter limit: Int) async throws -> CuttingProxy {
        let forwarded = NIOLockedValueBox<[Int]>([])
        let gate = group.next().makePromise(of: Void.self)
        let server = try await ServerBootstrap(group: group)
            .childChannelOption(.autoRead, value: false)
            .childChannelInitializer { inbound in
                let index = forwarded.withLockedValue { counts -> Int in
                    counts.append(0)
                    return counts.count - 1
                }
                return ClientBootstrap(group: inbound.eventLoop)
                    .channelInitializer { outbound in
                        outbound.eventLoop.makeCompletedFuture {
                            try outbound.pipeline.syncOperations.addHandler(Glue(partner: inbound, limit: nil) { _ in })
                        }
                    }
                    .connect(host: "127.0.0.1", port: target)
                    .flatMap { outbound in
                        inbound.eventLoop.makeCompletedFuture {
                            let glue = Glue(partner: outbound, limit: index == 0 ? limit : nil) { bytes in
                                forwarded.withLockedValue { $0[index] += bytes }
                            }
                            try inbound.pipeline.syncOperations.addHandler(glue)
                        }.flatMap {
                            (index == 0 ? inbound.eventLoop.makeSucceededVoidFuture() : gate.futureResult)
                                .hop(to: inbound.eventLoop)
                                .flatMap { inbound.setOption(.autoRead, value: true) }
                        }
                    }
            }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        return CuttingProxy(server: server, forwarded: forwarded, gate: gate)
    }

    /// Forwards what one side reads to the other; closes both after `limit` bytes, and when either side closes.
    private final class Glue: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let partner: Channel
        let limit: Int?
        let counted: (Int) -> Void
        var total = 0

        init(partner: Channel, limit: Int?, counted: @escaping (Int) -> Void) {
            self.partner = partner
            self.limit = limit
            self.counted = counted
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            var buffer = unwrapInboundIn(data)
            if let limit, total + buffer.readableBytes >= limit {
                let slice = buffer.readSlice(length: limit - total) ?? ByteBuffer()
                counted(slice.readableBytes)
                total = limit
                partner.writeAndFlush(slice).whenComplete { [partner] _ in partner.close(promise: nil) }
                context.close(promise: nil)
                return
            }
            total += buffer.readableBytes
            counted(buffer.readableBytes)
            partner.writeAndFlush(buffer, promise: nil)
        }

        func channelInactive(context: ChannelHandlerContext) {
            partner.close(promise: nil)
            context.fireChannelInactive()
        }
    }
}
