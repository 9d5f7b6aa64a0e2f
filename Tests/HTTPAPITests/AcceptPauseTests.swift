import Foundation
import HTTPAPI
import HTTPClient
import NIOCore
import NIOPosix
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `AcceptPauseHandler` on a real listening channel: an accept that found no descriptor (`EMFILE`) turns accepting
/// off for the pause, so the loop does not spin on the readable socket, and accepting resumes by itself.
@Suite("Accepting pauses when descriptors run out")
struct AcceptPauseTests {
    @Test("EMFILE: nothing is accepted during the pause, the waiting connection is accepted after it")
    func pausesThenResumes() async throws {
        let accepted = Mutex(0)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(AcceptPauseHandler(pause: .milliseconds(400)))
                }
            }
            .childChannelInitializer { channel in
                accepted.withLock { $0 += 1 }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .bind(host: "127.0.0.1", port: 0).get()
        try await closing(server) {
            let port = try #require(server.localAddress?.port)

            let started = ContinuousClock.now
            try await server.eventLoop.submit {
                server.pipeline.fireErrorCaught(IOError(errnoCode: EMFILE, reason: "accept"))
            }.get()
            #expect(try await server.getOption(.autoRead).get() == false, "accepting was not paused")
            let socket = try BlockingSocket.connect(
                Endpoint(host: "127.0.0.1", port: port), deadline: .now + .seconds(2), timeout: .seconds(2))
            defer { socket.close() }
            // The kernel completed the handshake; the node takes the connection only once the pause is over.
            while accepted.withLock({ $0 }) == 0 {
                #expect(ContinuousClock.now - started < .seconds(5), "the paused listener never accepted again")
                if ContinuousClock.now - started >= .seconds(5) { break }
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(ContinuousClock.now - started >= .milliseconds(350), "accepted during the pause")
            #expect(try await server.getOption(.autoRead).get() == true)
            let pauses = try await server.pipeline.handler(type: AcceptPauseHandler.self).map { $0.pauses }.get()
            #expect(pauses == 1)
        }
    }

    @Test("other errors do not pause accepting")
    func otherErrorsPassThrough() async throws {
        let server = try await HTTPServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton
        ) { $0.eventLoop.makeSucceededVoidFuture() }
        try await closing(server) {
            try await server.eventLoop.submit {
                server.pipeline.fireErrorCaught(IOError(errnoCode: ECONNABORTED, reason: "accept"))
            }.get()
            #expect(try await server.getOption(.autoRead).get() == true)
            let pauses = try await server.pipeline.handler(type: AcceptPauseHandler.self).map { $0.pauses }.get()
            #expect(pauses == 0)
        }
    }

    /// Runs `body`, then closes the listener whether or not it threw.
    private func closing(_ server: any Channel, _ body: () async throws -> Void) async throws {
        do {
            try await body()
            try await server.close()
        } catch {
            try? await server.close()
            throw error
        }
    }
}
