import ClusterAPI
import Foundation
import NIOCore
import NIOHTTP1

/// A request the HTTP layer answers itself, without calling the backend.
struct ClientRequestRejection: Error, Sendable, Hashable {
    var error: APIError
    /// The status to send; differs from `error.httpStatus` only for `405 Method Not Allowed`.
    var status: HTTPResponseStatus
    /// The `Allow` header value of a `405`.
    var allow: String?

    init(_ code: APIErrorCode, _ message: String) {
        self.error = APIError(code: code, message: message)
        self.status = HTTPResponseStatus(statusCode: code.httpStatus)
        self.allow = nil
    }

    /// `405` with code `invalid_request` (the route exists, the method does not).
    static func methodNotAllowed(_ method: HTTPMethod, path: String, allow: HTTPMethod) -> Self {
        var rejection = Self(
            .invalidRequest, "method \(method.rawValue) is not allowed on \(path); use \(allow.rawValue)")
        rejection.status = .methodNotAllowed
        rejection.allow = allow.rawValue
        return rejection
    }
}

/// Routes a complete request and turns it into a validated `ClientCommand` (SPEC.md, "Client HTTP API").
///
/// Decisions recorded here:
/// - Unknown paths are `404 not_found`. A known path with the wrong method is `405` with code `invalid_request`
///   and an `Allow` header: the one response whose status is not its code's `httpStatus`.
/// - In query strings `+` is a literal plus (not a space); spaces must be sent as `%20`. Unknown query parameters
///   and unknown JSON members are ignored; a repeated one takes its last value.
/// - Keys must be non-empty. `/scan` without `prefix` scans every key; `limit` must be a positive integer.
/// - `node_id` must be a positive integer; `ttl_secs` a non-negative integer or `null`.
/// - Sizes are UTF-8 bytes of the decoded key or value, checked against `ClientHTTPLimits`.
enum ClientRequestDecoder {
    /// Routes and decodes in one go (method and path, then the query and body of that route, then the headers).
    static func decode(
        method: HTTPMethod, uri: String, headers: [(String, String)] = [], body: ByteBuffer?, limits: ClientHTTPLimits
    ) -> Result<DecodedClientRequest, ClientRequestRejection> {
        route(method: method, uri: uri).flatMap { target in
            decode(target, headers: headers, body: body, limits: limits)
        }
    }

    /// The route of `method uri` (`404` for an unknown path, `405` for the wrong method), with its query string.
    static func route(method: HTTPMethod, uri: String) -> Result<RoutedTarget, ClientRequestRejection> {
        let (path, query) = splitTarget(uri)
        guard let route = ClientRoute(path: path) else {
            return .failure(ClientRequestRejection(.notFound, "no route for \(method.rawValue) \(path)"))
        }
        guard method == route.method else {
            return .failure(.methodNotAllowed(method, path: String(path), allow: route.method))
        }
        return .success(RoutedTarget(route: route, query: query))
    }

    /// Decodes and validates the query, body and headers of a routed request: everything the backend receives has
    /// been checked here.
    static func decode(
        _ target: RoutedTarget, headers: [(String, String)], body: ByteBuffer?, limits: ClientHTTPLimits
    ) -> Result<DecodedClientRequest, ClientRequestRejection> {
        do throws(ClientRequestRejection) {
            let command = try decodeCommand(target, body: body, limits: limits)
            var idempotencyKey: String?
            if target.route.isKeyValueWrite {
                switch ClientRequestContext.idempotencyKey(in: headers) {
                case .success(let key): idempotencyKey = key
                case .failure(let error): throw ClientRequestRejection(error.code, error.message)
                }
            }
            return .success(DecodedClientRequest(command: command, idempotencyKey: idempotencyKey))
        } catch {
            return .failure(error)
        }
    }

    /// The read consistency a `/get` names in its query, if any and valid; for the forwarding decision, made before
    /// the request is decoded (an invalid name is refused by whichever node decodes it).
    static func requestedConsistency(_ target: RoutedTarget) -> ReadConsistency? {
        guard target.route == .get || target.route == .scan, !target.query.isEmpty, let parameters = try? QueryParameters(target.query),
            let name = parameters["consistency"]
        else { return nil }
        return ReadConsistency(queryName: name)
    }

    private static func decodeCommand(
        _ target: RoutedTarget, body: ByteBuffer?, limits: ClientHTTPLimits
    ) throws(ClientRequestRejection) -> ClientCommand {
        let query = target.query
        switch target.route {
        case .put:
            let object = try parseBody(body)
            let request = PutRequest(
                key: try key(object, limits), value: try value(object, "value", limits),
                ttlSecs: try optionalUnsigned(object, "ttl_secs"))
            return .put(request)
        case .get:
            let parameters = try QueryParameters(query)
            guard let key = parameters["key"] else {
                throw ClientRequestRejection(.invalidRequest, "missing query parameter \"key\"")
            }
            try checkKey(key, limits)
            return .get(key: key, consistency: try consistency(parameters))
        case .delete:
            return .delete(DeleteRequest(key: try key(try parseBody(body), limits)))
        case .cas:
            let object = try parseBody(body)
            let key = try key(object, limits)
            let expected: String?
            switch object["expected"] {
            case nil:
                throw ClientRequestRejection(.invalidRequest, "missing field \"expected\" (use null for \"absent\")")
            case .null:
                expected = nil
            case .string(let string):
                guard string.utf8.count <= limits.maxValueBytes else {
                    throw ClientRequestRejection(.tooLarge, "\"expected\" is over \(limits.maxValueBytes) bytes")
                }
                expected = string
            case let other?:
                throw ClientRequestRejection(
                    .invalidRequest, "field \"expected\" must be a string or null, not \(other.typeName)")
            }
            return .cas(CasRequest(key: key, expected: expected, value: try value(object, "value", limits)))
        case .scan:
            let parameters = try QueryParameters(query)
            let prefix = parameters["prefix"] ?? ""
            guard prefix.utf8.count <= limits.maxKeyBytes else {
                throw ClientRequestRejection(.tooLarge, "prefix is over \(limits.maxKeyBytes) bytes")
            }
            var limit: Int?
            if let text = parameters["limit"] {
                guard let parsed = Int(text), parsed > 0, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else {
                    throw ClientRequestRejection(.invalidRequest, "limit must be a positive integer, not \"\(text)\"")
                }
                limit = parsed
            }
            let after = parameters["after"]
            if let after { try checkKey(after, limits) }
            return .scan(
                ScanRequest(prefix: prefix, limit: limit, after: after, consistency: try consistency(parameters)))
        case .cluster:
            return .cluster
        case .join:
            let object = try parseBody(body)
            let nodeID = try nodeID(object)
            guard case .string(let address)? = object["address"] else {
                throw missingOrWrongType(object, "address", "a string")
            }
            guard !address.isEmpty else {
                throw ClientRequestRejection(.invalidRequest, "\"address\" must not be empty")
            }
            return .join(JoinRequest(nodeID: nodeID, address: address))
        case .promote:
            return .promote(PromoteRequest(nodeID: try nodeID(try parseBody(body))))
        case .remove:
            return .remove(RemoveRequest(nodeID: try nodeID(try parseBody(body))))
        case .transferLeader:
            return .transferLeader(TransferLeaderRequest(nodeID: try nodeID(try parseBody(body))))
        case .alarms:
            return .alarms
        case .disarmAlarms:
            return .disarmAlarms
        case .txn:
            return .txn(try decodeTxn(body, limits))
        case .snapshot:
            return .snapshot
        case .watch:
            throw ClientRequestRejection(
                .invalidRequest, "a watch is a stream served by the node it is sent to; it cannot be relayed")
        }
    }

    // MARK: Watch

    /// `?key=K` or `?prefix=P` (exactly one), optional `since=INDEX` (a positive integer); a `Last-Event-ID: N` header
    /// (what an SSE client sends when it reconnects) takes precedence and means `since = N + 1`.
    static func decodeWatch(
        _ target: RoutedTarget, lastEventID: String?
    ) -> Result<WatchRequest, ClientRequestRejection> {
        do throws(ClientRequestRejection) {
            let parameters = try QueryParameters(target.query)
            let filter: WatchRequest.Filter
            switch (parameters["key"], parameters["prefix"]) {
            case (let key?, nil):
                guard !key.isEmpty else { throw ClientRequestRejection(.invalidRequest, "key must not be empty") }
                guard key.utf8.count <= ClientHTTPLimits.defaultMaxKeyBytes else {
                    throw ClientRequestRejection(.tooLarge, "key is over \(ClientHTTPLimits.defaultMaxKeyBytes) bytes")
                }
                filter = .key(Array(key.utf8))
            case (nil, let prefix?):
                guard prefix.utf8.count <= ClientHTTPLimits.defaultMaxKeyBytes else {
                    throw ClientRequestRejection(
                        .tooLarge, "prefix is over \(ClientHTTPLimits.defaultMaxKeyBytes) bytes")
                }
                filter = .prefix(Array(prefix.utf8))
            case (nil, nil):
                throw ClientRequestRejection(.invalidRequest, "give one of the query parameters \"key\" or \"prefix\"")
            case (_?, _?):
                throw ClientRequestRejection(.invalidRequest, "give \"key\" or \"prefix\", not both")
            }
            var since: UInt64?
            if let text = parameters["since"] {
                since = try positiveIndex(text, "since")
            }
            if let lastEventID {
                let trimmed = lastEventID.trimmingSpaces
                let last = try positiveIndex(trimmed, "Last-Event-ID")
                guard last < UInt64.max else {
                    throw ClientRequestRejection(.invalidRequest, "Last-Event-ID is out of range")
                }
                since = last + 1
            }
            return .success(WatchRequest(filter: filter, since: since))
        } catch {
            return .failure(error)
        }
    }

    private static func positiveIndex(_ text: String, _ name: String) throws(ClientRequestRejection) -> UInt64 {
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let value = UInt64(text), value > 0
        else {
            throw ClientRequestRejection(.invalidRequest, "\(name) must be a positive integer index, not \"\(text)\"")
        }
        return value
    }

    // MARK: Transactions

    /// The most operations (compares plus both branches) one transaction may have.
    static let maxTxnOperations = 128

    /// Decodes and validates a `POST /txn` body: keys non-empty and within `max_key_bytes`, each compare's target of
    /// the type its `op` needs (`value`: string, `index`: integer, `exists`: boolean with `=` or `!=`), a value on
    /// every put and none on other ops, at most `maxTxnOperations` in all, and keys plus values at most
    /// `max_value_bytes + max_key_bytes` bytes (what one put may carry, so the entry fits the log's caps).
    static func decodeTxn(_ body: ByteBuffer?, _ limits: ClientHTTPLimits) throws(ClientRequestRejection) -> TxnRequest {
        guard let body, body.readableBytes > 0 else {
            throw ClientRequestRejection(.invalidRequest, "malformed JSON: empty body, expected a JSON object")
        }
        let request: TxnRequest
        do {
            request = try WireJSON.makeDecoder().decode(TxnRequest.self, from: Data(body.readableBytesView))
        } catch let error as DecodingError {
            throw ClientRequestRejection(.invalidRequest, "malformed transaction: \(Self.describe(error))")
        } catch {
            throw ClientRequestRejection(.invalidRequest, "malformed JSON: \(error)")
        }
        let count = request.compare.count + request.success.count + request.failure.count
        guard count <= maxTxnOperations else {
            throw ClientRequestRejection(
                .tooLarge, "the transaction has \(count) compares and operations, over the limit of \(maxTxnOperations)")
        }
        var total = 0
        for (i, compare) in request.compare.enumerated() {
            try checkKey(compare.key, limits)
            total += compare.key.utf8.count
            switch (compare.op, compare.target) {
            case (.value, .string(let text)):
                total += text.utf8.count
            case (.index, .integer):
                break
            case (.exists, .bool):
                guard compare.cmp == .equal || compare.cmp == .notEqual else {
                    throw ClientRequestRejection(.invalidRequest, "compare[\(i)]: \"exists\" takes \"=\" or \"!=\"")
                }
            case (.value, _), (.index, _), (.exists, _):
                let wanted = compare.op == .value ? "a string" : compare.op == .index ? "an integer" : "a boolean"
                throw ClientRequestRejection(
                    .invalidRequest, "compare[\(i)]: op \"\(compare.op.rawValue)\" needs \(wanted) target")
            }
        }
        for (branch, ops) in [("success", request.success), ("failure", request.failure)] {
            for (i, op) in ops.enumerated() {
                try checkKey(op.key, limits)
                total += op.key.utf8.count
                switch (op.op, op.value) {
                case (.put, let value?): total += value.utf8.count
                case (.put, nil):
                    throw ClientRequestRejection(.invalidRequest, "\(branch)[\(i)]: a put needs a \"value\"")
                case (.delete, nil), (.get, nil): break
                case (.delete, _?), (.get, _?):
                    throw ClientRequestRejection(
                        .invalidRequest, "\(branch)[\(i)]: a \(op.op.rawValue) takes no \"value\"")
                }
            }
        }
        let budget = limits.maxValueBytes + limits.maxKeyBytes
        guard total <= budget else {
            throw ClientRequestRejection(
                .tooLarge, "the transaction's keys and values are \(total) bytes, over the \(budget)-byte limit")
        }
        return request
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
            return path.isEmpty ? "" : "at \(path.hasPrefix(".") ? String(path.dropFirst()) : path): "
        }
        switch error {
        case .keyNotFound(let key, let context): return "\(path(context))missing field \"\(key.stringValue)\""
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "\(path(context))\(context.debugDescription)"
        @unknown default: return "\(error)"
        }
    }

    // MARK: Target

    /// Splits `/path?query#fragment` into the path and the query (without `?`; fragment dropped).
    static func splitTarget(_ uri: String) -> (path: Substring, query: Substring) {
        var target = Substring(uri)
        if let hash = target.utf8.firstIndex(of: UInt8(ascii: "#")) {
            target = target[..<hash]
        }
        guard let question = target.utf8.firstIndex(of: UInt8(ascii: "?")) else { return (target, "") }
        return (target[..<question], target[target.utf8.index(after: question)...])
    }

    // MARK: Body fields

    private static func parseBody(_ body: ByteBuffer?) throws(ClientRequestRejection) -> JSONRequestObject {
        guard let body, body.readableBytes > 0 else {
            throw ClientRequestRejection(.invalidRequest, "malformed JSON: empty body, expected a JSON object")
        }
        let result = body.withUnsafeReadableBytes { bytes in
            Result { () throws(JSONBodyError) in try JSONRequestObject(parsing: bytes) }
        }
        switch result {
        case .success(let object): return object
        case .failure(let error): throw ClientRequestRejection(.invalidRequest, "malformed JSON: \(error)")
        }
    }

    private static func missingOrWrongType(
        _ object: JSONRequestObject, _ name: String, _ expected: String
    ) -> ClientRequestRejection {
        guard let value = object[name] else {
            return ClientRequestRejection(.invalidRequest, "missing field \"\(name)\"")
        }
        return ClientRequestRejection(.invalidRequest, "field \"\(name)\" must be \(expected), not \(value.typeName)")
    }

    private static func key(
        _ object: JSONRequestObject, _ limits: ClientHTTPLimits
    ) throws(ClientRequestRejection) -> String {
        guard case .string(let key)? = object["key"] else { throw missingOrWrongType(object, "key", "a string") }
        try checkKey(key, limits)
        return key
    }

    /// The `consistency` query parameter, if present.
    private static func consistency(_ parameters: QueryParameters) throws(ClientRequestRejection) -> ReadConsistency? {
        guard let name = parameters["consistency"] else { return nil }
        guard let parsed = ReadConsistency(queryName: name) else {
            throw ClientRequestRejection(
                .invalidRequest, "unknown consistency \"\(name)\"; use linearizable, lease or eventual")
        }
        return parsed
    }

    private static func checkKey(_ key: String, _ limits: ClientHTTPLimits) throws(ClientRequestRejection) {
        guard !key.isEmpty else { throw ClientRequestRejection(.invalidRequest, "key must not be empty") }
        let size = key.utf8.count
        guard size <= limits.maxKeyBytes else {
            throw ClientRequestRejection(.tooLarge, "key is \(size) bytes, over the \(limits.maxKeyBytes)-byte limit")
        }
    }

    private static func value(
        _ object: JSONRequestObject, _ name: String, _ limits: ClientHTTPLimits
    ) throws(ClientRequestRejection) -> String {
        guard case .string(let value)? = object[name] else { throw missingOrWrongType(object, name, "a string") }
        let size = value.utf8.count
        guard size <= limits.maxValueBytes else {
            throw ClientRequestRejection(
                .tooLarge, "\(name) is \(size) bytes, over the \(limits.maxValueBytes)-byte limit (max_value_bytes)")
        }
        return value
    }

    private static func optionalUnsigned(
        _ object: JSONRequestObject, _ name: String
    ) throws(ClientRequestRejection) -> UInt64? {
        switch object[name] {
        case nil, .null?: return nil
        case .unsignedInteger(let value)?: return value
        case .some: throw missingOrWrongType(object, name, "a non-negative integer")
        }
    }

    private static func nodeID(_ object: JSONRequestObject) throws(ClientRequestRejection) -> UInt64 {
        guard case .unsignedInteger(let id)? = object["node_id"] else {
            throw missingOrWrongType(object, "node_id", "a positive integer")
        }
        guard id > 0 else { throw ClientRequestRejection(.invalidRequest, "node_id must be a positive integer") }
        return id
    }
}

// MARK: - Query string

/// The decoded `name=value` pairs of a query string. Percent escapes are decoded and the result must be UTF-8.
struct QueryParameters: Sendable {
    private var pairs: [(name: String, value: String)] = []

    init(_ query: Substring) throws(ClientRequestRejection) {
        guard !query.isEmpty else { return }
        // One pass over the bytes, no intermediate arrays: this runs for every GET.
        pairs.reserveCapacity(4)
        let bytes = query.utf8
        var start = bytes.startIndex
        while start < bytes.endIndex {
            let end = bytes[start...].firstIndex(of: UInt8(ascii: "&")) ?? bytes.endIndex
            let component = bytes[start..<end]
            start = end < bytes.endIndex ? bytes.index(after: end) : end
            guard !component.isEmpty else { continue }
            let name: Substring.UTF8View.SubSequence
            let value: Substring.UTF8View.SubSequence
            if let equals = component.firstIndex(of: UInt8(ascii: "=")) {
                name = component[..<equals]
                value = component[component.index(after: equals)...]
            } else {
                name = component
                value = component[component.endIndex...]
            }
            pairs.append((try Self.percentDecode(name), try Self.percentDecode(value)))
        }
    }

    /// The last value of parameter `name`.
    subscript(name: String) -> String? {
        for pair in pairs.reversed() where pair.name == name {
            return pair.value
        }
        return nil
    }

    /// Decodes `%XX` escapes; `+` stays a plus. Fails on a malformed escape or on bytes that are not UTF-8.
    static func percentDecode(_ encoded: Substring.UTF8View.SubSequence) throws(ClientRequestRejection) -> String {
        guard encoded.contains(UInt8(ascii: "%")) else {
            return String(Substring(encoded))
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(encoded.count)
        var index = encoded.startIndex
        while index < encoded.endIndex {
            let byte = encoded[index]
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                encoded.formIndex(after: &index)
                continue
            }
            let high = encoded.index(after: index)
            guard high < encoded.endIndex, encoded.index(after: high) < encoded.endIndex,
                let hi = hexValue(encoded[high]), let lo = hexValue(encoded[encoded.index(after: high)])
            else {
                throw ClientRequestRejection(.invalidRequest, "malformed percent-encoding in the query string")
            }
            bytes.append(hi << 4 | lo)
            index = encoded.index(high, offsetBy: 2)
        }
        guard let string = String(validating: bytes, as: UTF8.self) else {
            throw ClientRequestRejection(.invalidRequest, "query parameter is not valid UTF-8 once percent-decoded")
        }
        return string
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

extension String {
    /// Without leading and trailing spaces and tabs.
    var trimmingSpaces: String {
        var text = Substring(self)
        while text.first == " " || text.first == "\t" { text = text.dropFirst() }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}
