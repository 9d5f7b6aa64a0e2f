import ClusterAPI
import ClusterClient
import Foundation
import Linearizability
import RaftCore

/// Every random choice of a run (workload and nemesis) comes from one seed, through RaftCore's SplitMix64.
public typealias SeededRandom = SplitMix64

/// What one client request turned into, from the HTTP status or the transport failure.
public enum Completion: Sendable, Equatable {
    /// 200 (or 404 for a get): the body.
    case ok(status: Int, body: Data)
    /// Certainly not applied: refused before sending, 400/409/413/429/503.
    case fail(String)
    /// Unknown: 504, a timeout or a connection lost after sending, any other status.
    case info(String)

    /// Classifies an exchange's result (SPEC's error table).
    static func classify(_ result: Result<HTTPResponse, TransportError>) -> Completion {
        switch result {
        case .success(let response):
            switch response.status {
            case 200, 404: return .ok(status: response.status, body: response.body)
            case 400, 409, 413, 429, 503: return .fail("HTTP \(response.status)")
            default: return .info("HTTP \(response.status)")
            }
        case .failure(let error):
            return error.requestSent ? .info(error.reason) : .fail(error.reason)
        }
    }
}

/// Counters of a run's operations.
public struct OperationCounts: Sendable, Codable, CustomStringConvertible {
    public var invoked: [String: Int] = [:]
    public var ok: [String: Int] = [:]
    public var fail: [String: Int] = [:]
    public var info: [String: Int] = [:]
    public init() {}

    mutating func record(_ kind: String, _ completion: Completion) {
        invoked[kind, default: 0] += 1
        switch completion {
        case .ok: ok[kind, default: 0] += 1
        case .fail: fail[kind, default: 0] += 1
        case .info: info[kind, default: 0] += 1
        }
    }

    public var total: Int { invoked.values.reduce(0, +) }
    public var totalOK: Int { ok.values.reduce(0, +) }

    public var description: String {
        invoked.keys.sorted().map { kind in
            "\(kind) \(invoked[kind] ?? 0) (ok \(ok[kind] ?? 0), fail \(fail[kind] ?? 0), info \(info[kind] ?? 0))"
        }.joined(separator: ", ")
    }
}

/// Concurrent clients: several per key on a handful of keys, writes with unique values, reads at each consistency
/// level, compare-and-swap and the odd delete, each recorded as invoke then ok / fail / info.
///
/// Every write carries its own `Idempotency-Key`. A write whose outcome is unknown (504, a timeout, a connection
/// lost after sending) is resent with the same key to the next node, up to `writeRetries` times, as the same
/// recorded operation: a 200 then is the first outcome, so the linearizability check also checks that a retried
/// write applied exactly once (a put, CAS or delete applied twice shows up as a value that comes back or a CAS
/// outcome no order explains). Resends are counted as `<kind>-retry`.
///
/// Puts, CAS, deletes and linearizable and lease reads go into one `HistoryRecorder` checked for linearizability;
/// eventual reads are kept apart for `EventualReads`, tagged with the client, the node and its incarnation (a
/// restarted node replays its log and may legitimately serve older data than before the crash). Keys rotate every
/// `keyLifetime` (`k<slot>.<generation>`) so that each key's history stays small enough to check exhaustively.
// @unchecked Sendable: `let`s only; the recorder and the cluster lock their own state.
public final class Workload: @unchecked Sendable {
    public struct Options: Sendable {
        public var keys = 4
        public var clientsPerKey = 3
        public var keyLifetime: Duration = .seconds(6)
        /// The client-side deadline of one request (above the node's request_timeout_ms, so a node answers 504 first).
        public var requestTimeout: Duration = .milliseconds(2500)
        /// How many times a write of unknown outcome is resent with its Idempotency-Key.
        public var writeRetries = 2
        public init() {}
    }

    public let recorder = HistoryRecorder<KVInput, KVOutput>()
    public let options: Options
    private let cluster: ChaosCluster
    private let seed: UInt64
    private let started = ContinuousClock.now
    private let lock = NSLock()
    private var eventualReads: [EventualReads.Read] = []
    private var counts = OperationCounts()
    private var usedKeys: Set<String> = []
    private var stopping = false
    private var valueCounter = 0
    private var targets: [Int: Int] = [:]

    public init(cluster: ChaosCluster, seed: UInt64, options: Options) {
        self.cluster = cluster
        self.seed = seed
        self.options = options
    }

    public var operationCounts: OperationCounts { lock.withLock { counts } }
    public var keys: [String] { lock.withLock { usedKeys.sorted() } }
    public var eventual: [EventualReads.Read] { lock.withLock { eventualReads } }
    /// The node each recorded operation was sent to, by operation id.
    public var operationTargets: [Int: Int] { lock.withLock { targets } }

    private func invoke(_ process: Int, _ input: KVInput, _ target: Int) -> Int {
        let id = recorder.invoke(process: process, input)
        lock.withLock { targets[id] = target }
        return id
    }

    /// Runs the clients until `stop()`; returns when every client has finished its last request.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            for slot in 0..<options.keys {
                for member in 0..<options.clientsPerKey {
                    let process = slot * options.clientsPerKey + member
                    group.addTask { await self.client(process: process, slot: slot) }
                }
            }
        }
    }

    public func stop() { lock.withLock { stopping = true } }
    private var isStopping: Bool { lock.withLock { stopping } }

    private func key(slot: Int) -> String {
        let lifetime = options.keyLifetime / .milliseconds(1)
        let generation = Int((ContinuousClock.now - started) / .milliseconds(1) / lifetime)
        return "k\(slot).\(generation)"
    }

    private func uniqueValue(_ process: Int) -> String {
        lock.withLock {
            valueCounter += 1
            return "v\(process)-\(valueCounter)"
        }
    }

    private func client(process: Int, slot: Int) async {
        var random = SeededRandom(seed: seed &+ UInt64(process) &* 0x9E37_79B9)
        var lastSeen: [String: String?] = [:]
        while !isStopping {
            let key = key(slot: slot)
            lock.withLock { _ = usedKeys.insert(key) }
            let target = cluster.ids.randomElement(using: &random)!
            let roll = Int.random(in: 0..<100, using: &random)
            let completion: Completion
            switch roll {
            case 0..<28:
                completion = await put(process, key, uniqueValue(process), target)
            case 28..<42:
                let expected = lastSeen[key] ?? nil
                completion = await cas(process, key, expected, uniqueValue(process), target)
            case 42..<45:
                completion = await delete(process, key, target)
            case 45..<65:
                completion = await read(process, key, .linearizable, target)
            case 65..<83:
                completion = await read(process, key, .lease, target)
            default:
                completion = await eventualRead(process, key, target)
            }
            if case .ok(let status, let body) = completion, roll >= 45 {
                lastSeen[key] =
                    status == 404 ? .some(nil) : .some(try? WireJSON.decode(GetResponse.self, from: body).value)
            }
            if case .fail = completion {
                // Refused (node down, no leader): do not spin.
                try? await Task.sleep(for: .milliseconds(Int.random(in: 10...40, using: &random)))
            }
        }
    }

    private func exchange(
        _ method: String, _ target: Int, _ path: String, _ body: Data?, headers: [(String, String)] = []
    ) async -> Completion {
        let endpoint = cluster.node(target).client
        do {
            let response = try await httpExchange(
                method: method, endpoint: endpoint, path: path, body: body, headers: headers,
                timeout: options.requestTimeout)
            return .classify(.success(response))
        } catch {
            return .classify(.failure(error))
        }
    }

    /// A write with a fresh Idempotency-Key, resent with it to the next node while its outcome is unknown. A resend
    /// refused outright (503, ...) says nothing about the earlier attempts: the outcome stays unknown.
    private func write(_ kind: String, _ target: Int, _ path: String, _ body: Data?) async -> Completion {
        let headers = [("Idempotency-Key", UUID().uuidString)]
        var completion = await exchange("POST", target, path, body, headers: headers)
        var node = target
        var attempt = 0
        while case .info = completion, attempt < options.writeRetries, !isStopping {
            attempt += 1
            let ids = cluster.ids
            node = ids[((ids.firstIndex(of: node) ?? 0) + 1) % ids.count]
            let retry = await exchange("POST", node, path, body, headers: headers)
            lock.withLock { counts.record(kind + "-retry", retry) }
            if case .fail = retry { break }
            completion = retry
        }
        return completion
    }

    private func finish(
        _ id: Int, _ kind: String, _ completion: Completion, output: (Data, Int) -> (KVOutput, UInt64?)?
    ) {
        lock.withLock { counts.record(kind, completion) }
        switch completion {
        case .ok(let status, let body):
            if let (value, index) = output(body, status) {
                recorder.ok(id, value, index: index)
            } else {
                recorder.info(id)  // a 200 we cannot read: unknown
            }
        case .fail: recorder.fail(id)
        case .info: recorder.info(id)
        }
    }

    func put(_ process: Int, _ key: String, _ value: String, _ target: Int) async -> Completion {
        let id = invoke(process, .put(key: key, value: value), target)
        let body = try? WireJSON.encode(PutRequest(key: key, value: value))
        let completion = await write("put", target, "/put", body)
        finish(id, "put", completion) { body, status in
            guard status == 200, let response = try? WireJSON.decode(PutResponse.self, from: body) else { return nil }
            return (.done, response.index)
        }
        return completion
    }

    func cas(_ process: Int, _ key: String, _ expected: String?, _ value: String, _ target: Int) async -> Completion {
        let id = invoke(process, .cas(key: key, expected: expected, new: value), target)
        let body = try? WireJSON.encode(CasRequest(key: key, expected: expected, value: value))
        let completion = await write("cas", target, "/cas", body)
        finish(id, "cas", completion) { body, status in
            guard status == 200, let response = try? WireJSON.decode(CasResponse.self, from: body) else { return nil }
            return (.swapped(response.succeeded), response.succeeded ? response.index : nil)
        }
        return completion
    }

    func delete(_ process: Int, _ key: String, _ target: Int) async -> Completion {
        let id = invoke(process, .delete(key: key), target)
        let body = try? WireJSON.encode(DeleteRequest(key: key))
        let completion = await write("delete", target, "/delete", body)
        finish(id, "delete", completion) { body, status in
            guard status == 200, let response = try? WireJSON.decode(DeleteResponse.self, from: body) else {
                return nil
            }
            return (.done, response.index)
        }
        return completion
    }

    /// A linearizable or lease read, checked for linearizability.
    func read(_ process: Int, _ key: String, _ consistency: ReadConsistency, _ target: Int) async -> Completion {
        let id = invoke(process, .get(key: key), target)
        let completion = await exchange("GET", target, "/get?key=\(key)&consistency=\(consistency.rawValue)", nil)
        finish(id, "get-\(consistency.rawValue)", completion) { body, status in
            if status == 404 { return (.value(nil), nil) }
            guard let response = try? WireJSON.decode(GetResponse.self, from: body) else { return nil }
            return (.value(response.value), response.index)
        }
        return completion
    }

    /// An eventual read: recorded apart, with the node and incarnation that served it.
    func eventualRead(_ process: Int, _ key: String, _ target: Int) async -> Completion {
        let incarnation = cluster.incarnation(target)
        let completion = await exchange("GET", target, "/get?key=\(key)&consistency=eventual", nil)
        lock.withLock {
            counts.record("get-eventual", completion)
            guard case .ok(let status, let body) = completion else { return }
            // One sequence per client, node and incarnation: a client's reads are sequential in real time, so on
            // one node process each must see at least what the one before saw. (Reads of different clients may
            // complete in any order, and a restarted node replays its log from a snapshot.)
            let node = "n\(target)#\(incarnation)/p\(process)"
            if status == 404 {
                eventualReads.append(.init(node: node, key: key, value: nil, index: nil, id: eventualReads.count))
            } else if let response = try? WireJSON.decode(GetResponse.self, from: body) {
                eventualReads.append(
                    .init(node: node, key: key, value: response.value, index: response.index, id: eventualReads.count))
            }
        }
        return completion
    }
}
