import NIOCore
import NIOHTTP1
import NIOPosix

/// Binding helpers for the client and metrics listeners.
public enum HTTPServer {
    /// Binds a TCP server on `host:port` (port `0` picks a free one) and returns the listening channel.
    ///
    /// An accept that finds no descriptor left pauses accepting for a second (``AcceptPauseHandler``). Accepted
    /// connections get `TCP_NODELAY`, remote half-closure (so a client that shuts down its side after
    /// the request still gets the answer) and `childChannelInitializer`. Close the returned channel to stop
    /// listening; its `localAddress?.port` is the bound port.
    public static func bind(
        host: String, port: Int, group: any EventLoopGroup,
        childChannelInitializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            // Out of descriptors: accepting pauses for a second instead of spinning.
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler())
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer(childChannelInitializer)
            .bind(host: host, port: port)
            .get()
    }

    /// Binds the client HTTP API alone on `host:port` (without the peer-protocol detector the node puts in front).
    public static func bindClientAPI(
        host: String, port: Int, group: any EventLoopGroup, backend: any ClientAPIBackend,
        limits: ClientHTTPLimits = ClientHTTPLimits()
    ) async throws -> any Channel {
        try await bind(host: host, port: port, group: group) { channel in
            configureClientHTTP(channel: channel, backend: backend, limits: limits)
        }
    }
}
