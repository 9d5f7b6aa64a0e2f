import NIOCore
import NIOEmbedded
import RaftCore
import Testing

@testable import PeerTransport

@Suite("PeerLinkStateMachine and PeerConnectionStateMachine")
struct PeerLinkStateMachineTests {
    private let limits = PeerLinkStateMachine.Limits(
        maxQueuedFrames: 3, maxQueuedBytes: 100, maxBatchBytes: 25,
        minimumBackoff: .milliseconds(50), maximumBackoff: .seconds(2)
    )

    private func frame(_ size: Int) -> ByteBuffer {
        ByteBuffer(bytes: [UInt8](repeating: 1, count: size))
    }

    @Test("the first frame opens a connection; frames queue until connected, then drain in batches")
    func lazyConnectAndBatches() throws {
        var link = PeerLinkStateMachine(address: PeerAddress(host: "0.0.0.0", port: 9082), limits: limits)
        guard case .connect(let address, let attempt) = link.enqueue(frame(10)) else {
            Issue.record("expected connect")
            return
        }
        #expect(address.dialHost == "127.0.0.1")
        guard case .none = link.enqueue(frame(10)) else { Issue.record("expected none"); return }
        #expect(link.drain(writable: true) == nil)
        let channel = EmbeddedChannel()
        guard case .start = link.connected(attempt: attempt, channel: channel) else {
            Issue.record("expected start")
            return
        }
        guard case .scheduleDrain = link.enqueue(frame(10)) else { Issue.record("expected drain"); return }
        #expect(link.drain(writable: false) == nil)
        let firstBatch = link.drain(writable: true)
        let first = try #require(firstBatch)
        #expect(first.frames.count == 2)
        #expect(first.more)
        let secondBatch = link.drain(writable: true)
        let second = try #require(secondBatch)
        #expect(second.frames.count == 1)
        #expect(!second.more)
        #expect(link.queuedBytes == 0)
        guard case .scheduleDrain = link.enqueue(frame(1)) else { Issue.record("expected drain"); return }
        guard case .none = link.enqueue(frame(1)) else { Issue.record("one drain per tick"); return }
    }

    @Test("a full queue drops and reports unreachable once until frames flow again")
    func boundedQueue() throws {
        var link = PeerLinkStateMachine(address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        _ = link.enqueue(frame(10))
        _ = link.enqueue(frame(10))
        _ = link.enqueue(frame(10))
        guard case .dropped(true) = link.enqueue(frame(10)) else { Issue.record("expected report"); return }
        guard case .dropped(false) = link.enqueue(frame(10)) else { Issue.record("expected no report"); return }
        #expect(link.queue.count == 3)
        var bytes = PeerLinkStateMachine(address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        _ = bytes.enqueue(frame(90))
        guard case .dropped(true) = bytes.enqueue(frame(11)) else { Issue.record("byte bound"); return }
    }

    @Test("connect failures back off exponentially with jitter, capped; a hello resets the backoff")
    func backoff() {
        var link = PeerLinkStateMachine(address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        guard case .connect(_, var attempt) = link.enqueue(frame(1)) else { Issue.record("connect"); return }
        var delays: [TimeAmount] = []
        for _ in 0..<8 {
            let down = link.connectFailed(attempt: attempt, jitter: 1)
            #expect(down.reportUnreachable)
            guard let reconnect = down.reconnect else { Issue.record("reconnect"); return }
            delays.append(reconnect.delay)
            guard let next = link.reconnectTimerFired(attempt: reconnect.attempt) else { Issue.record("next"); return }
            attempt = next.attempt
        }
        #expect(delays.prefix(4) == [.milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400)])
        #expect(delays.last == .seconds(2))
        #expect(
            PeerLinkStateMachine.backoffDelay(failures: 3, minimum: .milliseconds(50), maximum: .seconds(2), jitter: 0)
                == .milliseconds(100)
        )
        // Stale callbacks are ignored.
        #expect(link.connectFailed(attempt: attempt - 1, jitter: 0).reconnect == nil)
        let channel = EmbeddedChannel()
        _ = link.connected(attempt: attempt, channel: channel)
        link.helloConfirmed(attempt: attempt)
        #expect(link.failures == 0)
    }

    @Test("forwarded requests: unreachable while unsent, timeout or connectionLost once written")
    func forwardOutcomes() throws {
        let loop = EmbeddedEventLoop()
        var link = PeerLinkStateMachine(address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        let far = NIODeadline.distantFuture
        let unsent = loop.makePromise(of: TunnelledResponse.self)
        guard case .connect(_, let attempt) = link.enqueue(frame(5), forward: (1, unsent, far)) else {
            Issue.record("connect")
            return
        }
        let timedOutResult = link.forwardTimedOut(id: 1)
        let timedOut = try #require(timedOutResult)
        #expect(timedOut.error == .unreachable)
        #expect(link.queue.isEmpty)
        timedOut.promise.fail(timedOut.error)

        let second = loop.makePromise(of: TunnelledResponse.self)
        _ = link.enqueue(frame(5), forward: (2, second, far))
        let failed = link.connectFailed(attempt: attempt, jitter: 0)
        #expect(failed.failures.map(\.error) == [.unreachable])
        failed.failures.forEach { $0.promise.fail($0.error) }

        // The withdrawn request left the queue empty: the link goes idle instead of reconnecting.
        #expect(link.reconnectTimerFired(attempt: attempt) == nil)

        let third = loop.makePromise(of: TunnelledResponse.self)
        guard case .connect(_, let next) = link.enqueue(frame(5), forward: (3, third, far)) else {
            Issue.record("connect")
            return
        }
        _ = link.connected(attempt: next, channel: EmbeddedChannel())
        _ = link.drain(writable: true)
        let lost = link.connectionClosed(attempt: next, jitter: 0)
        #expect(lost.failures.map(\.error) == [.connectionLost])
        lost.failures.forEach { $0.promise.fail($0.error) }

        let fourth = loop.makePromise(of: TunnelledResponse.self)
        guard case .connect(_, let last) = link.enqueue(frame(5), forward: (4, fourth, far)) else {
            Issue.record("connect")
            return
        }
        _ = link.connected(attempt: last, channel: EmbeddedChannel())
        _ = link.drain(writable: true)
        let lateResult = link.forwardTimedOut(id: 4)
        let late = try #require(lateResult)
        #expect(late.error == .timeout)
        late.promise.fail(late.error)
        #expect(link.responseReceived(id: 4) == nil)
        #expect(link.pendingForwardCount == 0)
    }

    @Test("forward deadlines: one sweep fails exactly the expired requests and names the next deadline")
    func forwardDeadlines() throws {
        let loop = EmbeddedEventLoop()
        var link = PeerLinkStateMachine(address: PeerAddress(host: "127.0.0.1", port: 1), limits: limits)
        let at = { (ms: UInt64) in NIODeadline.uptimeNanoseconds(ms * 1_000_000) }
        guard case .connect(_, let attempt) = link.enqueue(frame(5), forward: (1, loop.makePromise(), at(100)))
        else {
            Issue.record("connect")
            return
        }
        _ = link.connected(attempt: attempt, channel: EmbeddedChannel())
        _ = link.drain(writable: true)  // request 1 is written
        for (id, deadline) in [(2, 300), (3, 200)] as [(UInt64, UInt64)] {
            _ = link.enqueue(frame(5), forward: (id, loop.makePromise(), at(deadline)))
        }
        #expect(link.queue.count == 2)

        let none = link.forwardsExpired(now: at(99))
        #expect(none.failures.isEmpty)
        #expect(none.next == at(100))

        // At 250: the written request 1 timed out, the queued request 3 is withdrawn unsent, 2 stays.
        let swept = link.forwardsExpired(now: at(250))
        #expect(swept.failures.count == 2)
        #expect(swept.failures.contains { $0.error == .timeout })
        #expect(swept.failures.contains { $0.error == .unreachable })
        #expect(swept.next == at(300))
        #expect(link.pendingForwardCount == 1)
        #expect(link.queue.count == 1)
        swept.failures.forEach { $0.promise.fail($0.error) }

        let answeredResult = link.responseReceived(id: 2)
        let answered = try #require(answeredResult)
        answered.fail(ForwardError.connectionLost)
        let empty = link.forwardsExpired(now: at(1_000))
        #expect(empty.failures.isEmpty && empty.next == nil)
    }

    @Test("connection protocol: hello first, direction rules, identity check")
    func connectionRules() {
        let open = PeerAdmission(members: [2, 3, 4], leader: nil)
        var acceptor = PeerConnectionStateMachine(role: .acceptor)
        let heartbeat = Message(from: 2, to: 1, term: 1, body: .heartbeat(commit: 0, round: 0))
        #expect(acceptor.received(.hello(PeerHello(nodeID: 2)), admission: open) == .replyHello(remote: 2))
        #expect(acceptor.received(.raft(heartbeat, snapshotData: nil), admission: open) == .deliver(heartbeat, snapshotData: nil))
        let request = TunnelledRequest(method: "GET", uri: "/cluster")
        #expect(acceptor.received(.forwardRequest(id: 1, request), admission: open) == .serveForward(id: 1, request))
        guard case .close = acceptor.received(.forwardResponse(id: 1, TunnelledResponse(status: 200)), admission: open) else {
            Issue.record("a response on an accepted connection must close it")
            return
        }
        #expect(acceptor.received(.raft(heartbeat, snapshotData: nil), admission: open) == .none)

        var early = PeerConnectionStateMachine(role: .acceptor)
        guard case .close = early.received(.raft(heartbeat, snapshotData: nil), admission: open) else {
            Issue.record("raft before hello must close")
            return
        }
        var oldVersion = PeerConnectionStateMachine(role: .acceptor)
        #expect(oldVersion.received(.hello(PeerHello(nodeID: 2, version: 99)), admission: open) == .close(.unsupportedVersion(99)))

        var dialer = PeerConnectionStateMachine(role: .dialer(expected: 3))
        guard case .close = dialer.received(.hello(PeerHello(nodeID: 4)), admission: open) else {
            Issue.record("the wrong node answering must close")
            return
        }
        var good = PeerConnectionStateMachine(role: .dialer(expected: 3))
        #expect(good.received(.hello(PeerHello(nodeID: 3)), admission: open) == .helloConfirmed)
        let response = TunnelledResponse(status: 204)
        #expect(good.received(.forwardResponse(id: 5, response), admission: open) == .completeForward(id: 5, response))
    }
}
