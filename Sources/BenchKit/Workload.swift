import ClusterClient
import Foundation
import NIOCore
import RaftCore

/// The store under test: ours (`/put`, `/get`) or etcd through its v3 JSON gateway (`/v3/kv/put`, `/v3/kv/range`).
/// `nginx` is the HTTP ceiling: a static server (nginx `return 200`) sent exactly our requests.
public enum BenchSystem: String, Sendable, CaseIterable, Codable {
    case dengine
    case etcd
    case nginx
}

/// Read consistency of a `get`. etcd has only linearizable and serializable ranges: `lease` and `eventual` are both
/// sent to etcd as `serializable: true` (a local, possibly stale read).
public enum BenchConsistency: String, Sendable, CaseIterable, Codable {
    case linearizable
    case lease
    case eventual
}

/// What one request does.
public enum BenchOperation: Sendable, Equatable {
    case put
    case get(BenchConsistency)
    /// `writePercent` % puts, the rest gets at `readConsistency`.
    case mixed(writePercent: Int, readConsistency: BenchConsistency)

    public var description: String {
        switch self {
        case .put: "put"
        case .get(let consistency): "get(\(consistency.rawValue))"
        case .mixed(let percent, let consistency): "mixed(\(percent)% put, get \(consistency.rawValue))"
        }
    }
}

/// Key and value shapes, as in d-engine's bench and etcd's `benchmark`: fixed-size keys `k0000042` (padded to
/// `keySize`), a fixed ASCII value of `valueSize` bytes, keys uniform over `keySpace` or sequential.
public struct KeyShape: Sendable, Equatable {
    public var keySize: Int
    public var valueSize: Int
    public var keySpace: Int
    public var sequential: Bool

    public init(keySize: Int = 8, valueSize: Int = 256, keySpace: Int = 100_000, sequential: Bool = false) {
        self.keySize = keySize
        self.valueSize = valueSize
        self.keySpace = keySpace
        self.sequential = sequential
    }

    /// The key for `number`: `k` then the number zero-padded to `keySize - 1` digits (longer if it does not fit).
    public func key(_ number: Int) -> String {
        let digits = String(number)
        let width = Swift.max(keySize - 1, 1)
        let padding = digits.count < width ? String(repeating: "0", count: width - digits.count) : ""
        return "k" + padding + digits
    }

    /// The value written by every put: `valueSize` bytes of printable ASCII.
    public var value: String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<valueSize).map { alphabet[$0 % alphabet.count] })
    }
}

/// Builds the bytes of requests for one system. Bodies and query strings are precomputed where they do not depend on
/// the key, so building a request is a few buffer writes.
public struct RequestBuilder: Sendable {
    public let system: BenchSystem
    public let host: String
    private let valueJSON: String
    /// `Host: ...` plus, in secure mode, `Authorization: ...`: the header lines every request carries.
    private let hostLines: String

    public init(system: BenchSystem, host: String, value: String, authorization: String? = nil) {
        self.system = system
        self.host = host
        self.hostLines = "Host: \(host)\r\n" + (authorization.map { "Authorization: \($0)\r\n" } ?? "")
        switch system {
        case .dengine, .nginx: valueJSON = Self.jsonString(value)
        case .etcd: valueJSON = "\"" + Data(value.utf8).base64EncodedString() + "\""
        }
    }

    public func writePut(key: String, into buffer: inout ByteBuffer) {
        let body: String
        let path: String
        switch system {
        case .dengine, .nginx:
            path = "/put"
            body = "{\"key\":\(Self.jsonString(key)),\"value\":\(valueJSON)}"
        case .etcd:
            path = "/v3/kv/put"
            body = "{\"key\":\"\(Data(key.utf8).base64EncodedString())\",\"value\":\(valueJSON)}"
        }
        writePost(path: path, body: body, into: &buffer)
    }

    public func writeGet(key: String, consistency: BenchConsistency, into buffer: inout ByteBuffer) {
        switch system {
        case .dengine, .nginx:
            buffer.writeString(
                "GET /get?key=\(Self.percentEncoded(key))&consistency=\(consistency.rawValue) HTTP/1.1\r\n\(hostLines)\r\n")
        case .etcd:
            let serializable = consistency == .linearizable ? "false" : "true"
            let body = "{\"key\":\"\(Data(key.utf8).base64EncodedString())\",\"serializable\":\(serializable)}"
            writePost(path: "/v3/kv/range", body: body, into: &buffer)
        }
    }

    private func writePost(path: String, body: String, into buffer: inout ByteBuffer) {
        buffer.writeString(
            "POST \(path) HTTP/1.1\r\n\(hostLines)Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n")
        buffer.writeString(body)
    }

    static func jsonString(_ text: String) -> String {
        JSONValue.quote(text)
    }

    static func percentEncoded(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? text
    }
}

/// Every connection draws its own keys without locks from the one seeded generator, RaftCore's.
public typealias SplitMix64 = RaftCore.SplitMix64
