import ClusterClient
import NIOCore
import NIOPosix

/// A `host:port` to send requests to (`0.0.0.0` and `localhost` spellings are accepted, as everywhere in the tools).
public typealias BenchEndpoint = Endpoint

/// When a run stops.
public enum StopCondition: Sendable, Equatable {
    /// After this many requests in total (split evenly over the clients).
    case total(Int)
    /// No new request after this long; requests in flight still finish and count.
    case duration(Duration)
}

/// Everything one load run needs.
public struct LoadSpec: Sendable {
    public var system: BenchSystem
    public var endpoints: [BenchEndpoint]
    /// TCP connections, spread round-robin over `endpoints` (connection i goes to endpoint i mod count).
    public var conns: Int
    /// Concurrent closed-loop clients, spread round-robin over the connections. More clients than connections means
    /// HTTP/1.1 pipelining: each connection carries up to clients/conns requests in flight, answered in order.
    public var clients: Int
    /// Event-loop threads of the generator.
    public var threads: Int
    public var stop: StopCondition
    public var operation: BenchOperation
    public var keys: KeyShape
    /// A request not answered within this is counted as `timeout` and its connection is reopened.
    public var timeout: Duration
    public var seed: UInt64
    /// Secure mode: TLS to every endpoint (the server must present a node certificate of the CA), a client
    /// certificate and/or a bearer token. `nil`: plaintext.
    public var security: ClientSecurity? = nil

    public init(
        system: BenchSystem, endpoints: [BenchEndpoint], conns: Int, clients: Int, threads: Int, stop: StopCondition,
        operation: BenchOperation, keys: KeyShape, timeout: Duration = .seconds(5), seed: UInt64 = 42
    ) {
        self.system = system
        self.endpoints = endpoints
        self.conns = conns
        self.clients = clients
        self.threads = threads
        self.stop = stop
        self.operation = operation
        self.keys = keys
        self.timeout = timeout
        self.seed = seed
    }
}

/// The outcome of one load run.
public struct LoadResult: Sendable {
    /// Requests answered with 2xx (and, for a `get` of our store, 404: an answered read of an absent key).
    public var succeeded: Int = 0
    /// Successful reads that found no key (a missing preload shows here).
    public var notFound: Int = 0
    /// Failed requests by kind: `http_<status>`, `timeout`, `closed`, `connect`, `parse`.
    public var errors: [String: Int] = [:]
    /// From the first request to the last answer.
    public var elapsedSeconds: Double = 0
    /// Latency of successful requests, in microseconds.
    public var latency = HdrHistogram()

    public init() {}

    public var errorCount: Int { errors.values.reduce(0, +) }
    public var opsPerSecond: Double { elapsedSeconds > 0 ? Double(succeeded) / elapsedSeconds : 0 }

    mutating func merge(_ other: LoadResult) {
        succeeded += other.succeeded
        notFound += other.notFound
        errors.merge(other.errors, uniquingKeysWith: +)
        latency.merge(other.latency)
    }
}

/// The failure of a whole run (not of single requests, which are counted in ``LoadResult/errors``).
public struct LoadError: Error, CustomStringConvertible {
    public var description: String
}

/// A closed-loop HTTP/1.1 keep-alive load generator on SwiftNIO, the same for both systems.
///
/// Every connection is opened before the clock starts. Each client sends its next request when the answer to its
/// previous one arrives. Latency runs from the moment the request is written to the moment its response is parsed.
public enum LoadGenerator {
    public static func run(_ spec: LoadSpec) async throws -> LoadResult {
        guard !spec.endpoints.isEmpty else { throw LoadError(description: "no endpoint") }
        guard spec.conns >= 1, spec.clients >= spec.conns else {
            throw LoadError(description: "need conns >= 1 and clients >= conns")
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, min(spec.threads, spec.conns)))
        do {
            let result = try await run(spec, group: group)
            try await group.shutdownGracefully()
            return result
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private static func run(_ spec: LoadSpec, group: MultiThreadedEventLoopGroup) async throws -> LoadResult {
        let value = spec.keys.value
        var drivers: [ConnectionDriver] = []
        for index in 0..<spec.conns {
            let endpoint = spec.endpoints[index % spec.endpoints.count]
            let depth = spec.clients / spec.conns + (index < spec.clients % spec.conns ? 1 : 0)
            var quota = Int.max
            if case .total(let total) = spec.stop {
                quota = total / spec.conns + (index < total % spec.conns ? 1 : 0)
            }
            drivers.append(
                ConnectionDriver(
                    index: index, spec: spec, endpoint: endpoint, depth: depth, quota: quota,
                    builder: RequestBuilder(
                        system: spec.system, host: endpoint.description, value: value,
                        authorization: spec.security?.token.map { "Bearer \($0)" }),
                    eventLoop: group.next()))
        }
        do {
            for driver in drivers { try await driver.connect().get() }
        } catch {
            for driver in drivers { driver.abandon() }
            throw LoadError(description: "cannot connect: \(error)")
        }
        let started = NIODeadline.now()
        var deadline = NIODeadline.distantFuture
        if case .duration(let duration) = spec.stop {
            deadline = started + .nanoseconds(Int64(duration.components.seconds) * 1_000_000_000
                + duration.components.attoseconds / 1_000_000_000)
        }
        let futures = drivers.map { $0.start(deadline: deadline) }
        var total = LoadResult()
        for future in futures {
            total.merge(try await future.get())
        }
        total.elapsedSeconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        return total
    }
}

/// One connection and the clients multiplexed on it. Lives on one event loop; every method runs there.
// @unchecked Sendable: confined to its connection's event loop (every method runs there).
final class ConnectionDriver: @unchecked Sendable {
    private let index: Int
    private let spec: LoadSpec
    private let endpoint: BenchEndpoint
    private let depth: Int
    private var quota: Int
    private let builder: RequestBuilder
    let eventLoop: any EventLoop

    private var channel: (any Channel)?
    private var parser = HTTPResponseParser()
    private var inbound: ByteBuffer?
    /// Requests written and not yet answered, oldest first: start time (ns) and whether it was a get.
    private var outstanding = CircularBuffer<(start: UInt64, isGet: Bool)>(initialCapacity: 8)
    private var result = LoadResult()
    private var rng: SplitMix64
    private var sequence = 0
    private var deadline = NIODeadline.distantFuture
    private var stopping = false
    private var done: EventLoopPromise<LoadResult>?
    private var timeoutTask: RepeatedTask?
    private let timeoutNanos: UInt64

    init(
        index: Int, spec: LoadSpec, endpoint: BenchEndpoint, depth: Int, quota: Int, builder: RequestBuilder,
        eventLoop: any EventLoop
    ) {
        self.index = index
        self.spec = spec
        self.endpoint = endpoint
        self.depth = depth
        self.quota = quota
        self.builder = builder
        self.eventLoop = eventLoop
        self.rng = SplitMix64(seed: spec.seed &+ UInt64(index) &* 0x9E37_79B9)
        let timeout = spec.timeout.components
        timeoutNanos = UInt64(timeout.seconds) * 1_000_000_000 + UInt64(timeout.attoseconds / 1_000_000_000)
    }

    func connect() -> EventLoopFuture<Void> {
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .connectTimeout(.seconds(5))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let material = self.spec.security?.tls {
                        try channel.pipeline.syncOperations.addHandler(try material.makeClientHandler(expectingNode: 0))
                    }
                    try channel.pipeline.syncOperations.addHandler(DriverHandler(driver: self))
                }
            }
            .connect(host: endpoint.host, port: endpoint.port)
            .map { channel in
                self.channel = channel
                self.inbound = channel.allocator.buffer(capacity: 4096)
            }
    }

    /// Closes the connection of a run that never started.
    func abandon() {
        eventLoop.execute { self.channel?.close(promise: nil) }
    }

    func start(deadline: NIODeadline) -> EventLoopFuture<LoadResult> {
        eventLoop.flatSubmit {
            self.deadline = deadline
            let promise = self.eventLoop.makePromise(of: LoadResult.self)
            self.done = promise
            let interval = TimeAmount.nanoseconds(Int64(max(self.timeoutNanos / 4, 10_000_000)))
            self.timeoutTask = self.eventLoop.scheduleRepeatedTask(initialDelay: interval, delay: interval) { _ in
                self.checkTimeouts()
            }
            self.fill()
            return promise.futureResult
        }
    }

    // MARK: - Sending

    /// Sends requests until `depth` are in flight or the run is over.
    private func fill() {
        guard let channel, channel.isActive else { return }
        var wrote = false
        while outstanding.count < depth, shouldSend() {
            quota -= 1
            var buffer = channel.allocator.buffer(capacity: 512 + spec.keys.valueSize * 2)
            let isGet = writeRequest(into: &buffer)
            outstanding.append((MonotonicClock.nanos(), isGet))
            channel.write(buffer, promise: nil)
            wrote = true
        }
        if wrote { channel.flush() }
        finishIfDone()
    }

    private func shouldSend() -> Bool {
        if stopping { return false }
        if quota <= 0 || NIODeadline.now() >= deadline {
            stopping = true
            return false
        }
        return true
    }

    private func nextKey() -> String {
        let space = max(1, spec.keys.keySpace)
        let number: Int
        if spec.keys.sequential {
            number = (index + sequence * spec.conns) % space
            sequence += 1
        } else {
            number = Int(rng.next() % UInt64(space))
        }
        return spec.keys.key(number)
    }

    private func writeRequest(into buffer: inout ByteBuffer) -> Bool {
        let key = nextKey()
        switch spec.operation {
        case .put:
            builder.writePut(key: key, into: &buffer)
            return false
        case .get(let consistency):
            builder.writeGet(key: key, consistency: consistency, into: &buffer)
            return true
        case .mixed(let writePercent, let consistency):
            if Int(rng.next() % 100) < writePercent {
                builder.writePut(key: key, into: &buffer)
                return false
            }
            builder.writeGet(key: key, consistency: consistency, into: &buffer)
            return true
        }
    }

    // MARK: - Receiving

    fileprivate func received(_ bytes: ByteBuffer) {
        guard var buffer = inbound else { return }
        inbound = nil
        var bytes = bytes
        buffer.writeBuffer(&bytes)
        var closes = false
        do {
            while let response = try parser.next(from: &buffer) {
                guard let request = outstanding.popFirst() else {
                    count("unsolicited")
                    continue
                }
                complete(request, status: response.status)
                if response.closes { closes = true }
            }
        } catch {
            count("parse")
            closes = true
        }
        buffer.discardReadBytes()
        inbound = buffer
        if closes {
            channel?.close(promise: nil)
            return
        }
        fill()
    }

    private func complete(_ request: (start: UInt64, isGet: Bool), status: Int) {
        let micros = Int((MonotonicClock.nanos() &- request.start) / 1000)
        if (200..<300).contains(status) {
            result.succeeded += 1
            result.latency.record(micros)
        } else if status == 404, request.isGet, spec.system == .dengine {
            result.succeeded += 1
            result.notFound += 1
            result.latency.record(micros)
        } else {
            count("http_\(status)")
        }
    }

    private func count(_ kind: String, _ number: Int = 1) {
        guard number > 0 else { return }
        result.errors[kind, default: 0] += number
    }

    private func checkTimeouts() {
        guard let oldest = outstanding.first else { return }
        if MonotonicClock.nanos() &- oldest.start > timeoutNanos {
            count("timeout", outstanding.count)
            outstanding.removeAll()
            channel?.close(promise: nil)
        }
    }

    fileprivate func closed() {
        count("closed", outstanding.count)
        outstanding.removeAll()
        channel = nil
        parser = HTTPResponseParser()
        if stopping || done == nil {
            finishIfDone()
            return
        }
        // Reopen and go on; connection failures count as `connect` and are retried every 100 ms until the end.
        eventLoop.scheduleTask(in: .milliseconds(100)) { self.reconnect() }
    }

    private func reconnect() {
        if !shouldSend() {
            finishIfDone()
            return
        }
        connect().whenComplete { outcome in
            if case .failure = outcome {
                self.count("connect")
                self.eventLoop.scheduleTask(in: .milliseconds(100)) { self.reconnect() }
            } else {
                self.fill()
            }
        }
    }

    private func finishIfDone() {
        guard stopping, outstanding.isEmpty, let promise = done else { return }
        done = nil
        timeoutTask?.cancel()
        timeoutTask = nil
        channel?.close(promise: nil)
        promise.succeed(result)
    }
}

/// Hands the driver the bytes and the closure of its connection.
private final class DriverHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private let driver: ConnectionDriver

    init(driver: ConnectionDriver) {
        self.driver = driver
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        driver.received(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        driver.closed()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

/// The monotonic clock in nanoseconds (cheaper than building `NIODeadline`s per request).
enum MonotonicClock {
    static func nanos() -> UInt64 {
        UInt64(NIODeadline.now().uptimeNanoseconds)
    }
}
