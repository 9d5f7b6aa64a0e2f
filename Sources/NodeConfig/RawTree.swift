import TOMLKit

// MARK: - Raw tree

/// Where a value came from; decides the `SOURCE` part of an error message.
enum ValueOrigin: Equatable {
    /// The config file.
    case file
    /// An environment variable, by name.
    case environment(String)
}

/// A parsed value before it is checked against the schema. Environment overrides arrive as `.text` and are
/// converted to the key's type when the key is read, so that one reader handles both sources.
indirect enum RawValue {
    case table([String: RawNode])
    case array([RawNode])
    case string(String)
    case integer(Int)
    case float(Double)
    case boolean(Bool)
    /// A TOML date, time or date-time (never valid in this schema; kept for the error message).
    case temporal
    /// An environment override's text, typed on read.
    case text(String)
}

/// A value and its origin.
struct RawNode {
    var value: RawValue
    var origin: ValueOrigin

    /// The TOML type name used in `expected X, got Y` messages.
    var typeName: String {
        switch value {
        case .table: return "table"
        case .array: return "array"
        case .string, .text: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .boolean: return "boolean"
        case .temporal: return "date-time"
        }
    }

    /// Copies a TOMLKit value into the raw tree.
    init(toml: any TOMLValueConvertible, origin: ValueOrigin) {
        self.origin = origin
        switch toml.type {
        case .table:
            value = .table(Self.entries(of: toml.table ?? TOMLTable(), origin: origin))
        case .array:
            let array = toml.array.map { Array($0) } ?? []
            value = .array(array.map { RawNode(toml: $0, origin: origin) })
        case .string: value = .string(toml.string ?? "")
        case .int: value = .integer(toml.int ?? 0)
        case .double: value = .float(toml.double ?? 0)
        case .bool: value = .boolean(toml.bool ?? false)
        case .date, .time, .dateTime: value = .temporal
        }
    }

    init(value: RawValue, origin: ValueOrigin) {
        self.value = value
        self.origin = origin
    }

    /// The entries of a TOMLKit table as raw nodes.
    static func entries(of table: TOMLTable, origin: ValueOrigin) -> [String: RawNode] {
        var entries: [String: RawNode] = [:]
        for key in table.keys {
            if let value = table[key] {
                entries[key] = RawNode(toml: value, origin: origin)
            }
        }
        return entries
    }
}

// MARK: - Load context

/// State shared while one configuration is loaded: the file name for messages and the origin of every key read,
/// so that a cross-key validation error names the environment variable when the value came from one.
final class LoadContext {
    let fileName: String
    private var origins: [String: ValueOrigin] = [:]

    init(fileName: String) {
        self.fileName = fileName
    }

    /// The `SOURCE` part of a message for a value of this origin.
    func source(of origin: ValueOrigin) -> String {
        switch origin {
        case .file: return fileName
        case .environment(let name): return "env \(name)"
        }
    }

    /// Remembers where the value at `path` came from.
    func record(_ path: String, _ origin: ValueOrigin) {
        origins[path] = origin
    }

    /// Overrides the recorded origin (used by `METRICS_PORT`).
    func override(_ path: String, byEnvironment name: String) {
        origins[path] = .environment(name)
    }

    /// An error about the value at `path`, attributed to wherever that value came from.
    func error(_ kind: ConfigError.Kind, at path: String, _ message: String) -> ConfigError {
        ConfigError(kind: kind, source: source(of: origins[path] ?? .file), keyPath: path, message: message)
    }

    /// An error about a node, attributed to the node's origin.
    func error(_ kind: ConfigError.Kind, at path: String, origin: ValueOrigin, _ message: String) -> ConfigError {
        ConfigError(kind: kind, source: source(of: origin), keyPath: path, message: message)
    }
}

// MARK: - Typed reads

/// Converts raw nodes to schema types, with `expected X, got Y` errors.
struct NodeReader {
    let context: LoadContext

    func integer(_ node: RawNode, at path: String) throws(ConfigError) -> Int {
        context.record(path, node.origin)
        switch node.value {
        case .integer(let value):
            return value
        case .text(let text):
            let trimmed = text.trimmingWhitespace()
            guard let value = Int(trimmed.replacingUnderscores()) else {
                throw context.error(.wrongType, at: path, origin: node.origin, "expected integer, got \"\(text)\"")
            }
            return value
        default:
            throw mismatch(node, expected: "integer", at: path)
        }
    }

    func string(_ node: RawNode, at path: String) throws(ConfigError) -> String {
        context.record(path, node.origin)
        switch node.value {
        case .string(let value), .text(let value):
            return value
        default:
            throw mismatch(node, expected: "string", at: path)
        }
    }

    func boolean(_ node: RawNode, at path: String) throws(ConfigError) -> Bool {
        context.record(path, node.origin)
        switch node.value {
        case .boolean(let value):
            return value
        case .text(let text):
            switch text.trimmingWhitespace().lowercased() {
            case "true": return true
            case "false": return false
            default:
                throw context.error(.wrongType, at: path, origin: node.origin, "expected boolean, got \"\(text)\"")
            }
        default:
            throw mismatch(node, expected: "boolean", at: path)
        }
    }

    func table(_ node: RawNode, at path: String) throws(ConfigError) -> [String: RawNode] {
        context.record(path, node.origin)
        switch try inline(node, expected: "table", at: path).value {
        case .table(let entries): return entries
        default: throw mismatch(node, expected: "table", at: path)
        }
    }

    func array(_ node: RawNode, at path: String) throws(ConfigError) -> [RawNode] {
        context.record(path, node.origin)
        switch try inline(node, expected: "array", at: path).value {
        case .array(let elements): return elements
        default: throw mismatch(node, expected: "array", at: path)
        }
    }

    /// An override's text parsed as a TOML inline value (`[{ id = 1, ... }]`, `{ Batch = { ... } }`);
    /// any other node unchanged.
    func inline(_ node: RawNode, expected: String, at path: String) throws(ConfigError) -> RawNode {
        guard case .text(let text) = node.value else { return node }
        let parsed: TOMLTable
        do {
            parsed = try TOMLTable(string: "value = \(text)")
        } catch {
            throw context.error(
                .wrongType, at: path, origin: node.origin,
                "expected \(expected) written as a TOML inline value, got \"\(text)\"")
        }
        guard let value = parsed["value"] else {
            throw context.error(.wrongType, at: path, origin: node.origin, "expected \(expected), got \"\(text)\"")
        }
        return RawNode(toml: value, origin: node.origin)
    }

    func mismatch(_ node: RawNode, expected: String, at path: String) -> ConfigError {
        if case .text(let text) = node.value {
            return context.error(.wrongType, at: path, origin: node.origin, "expected \(expected), got \"\(text)\"")
        }
        return context.error(.wrongType, at: path, origin: node.origin, "expected \(expected), got \(node.typeName)")
    }
}

/// Reads one table of the schema: rejects unknown keys, applies defaults, checks ranges.
struct TableReader {
    let context: LoadContext
    /// The dotted path of this table (`""` for the root).
    let path: String
    let entries: [String: RawNode]

    init(context: LoadContext, path: String, entries: [String: RawNode]) {
        self.context = context
        self.path = path
        self.entries = entries
    }

    var nodes: NodeReader { NodeReader(context: context) }

    func keyPath(_ key: String) -> String {
        path.isEmpty ? key : "\(path).\(key)"
    }

    /// Fails on the first key (in sorted order) that is not in `known`, suggesting a close known key.
    func rejectUnknownKeys(known: [String]) throws(ConfigError) {
        for key in entries.keys.sorted() where !known.contains(key) {
            var message = "unknown key"
            if let suggestion = closestKey(to: key, among: known) {
                message += " (did you mean \(suggestion)?)"
            }
            throw context.error(.unknownKey, at: keyPath(key), origin: entries[key]!.origin, message)
        }
    }

    /// A sub-table; an absent key reads as an empty table, so every key in it takes its default.
    func table(_ key: String) throws(ConfigError) -> TableReader {
        guard let node = entries[key] else { return TableReader(context: context, path: keyPath(key), entries: [:]) }
        return TableReader(context: context, path: keyPath(key), entries: try nodes.table(node, at: keyPath(key)))
    }

    func integer(_ key: String, default value: Int, in range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let node = entries[key] else { return value }
        let read = try nodes.integer(node, at: keyPath(key))
        guard range.contains(read) else {
            throw context.error(.invalidValue, at: keyPath(key), origin: node.origin, Self.rangeMessage(range, read))
        }
        return read
    }

    func optionalInteger(_ key: String, in range: ClosedRange<Int>) throws(ConfigError) -> Int? {
        guard entries[key] != nil else { return nil }
        return try integer(key, default: range.lowerBound, in: range)
    }

    func string(_ key: String, default value: String) throws(ConfigError) -> String {
        guard let node = entries[key] else { return value }
        return try nodes.string(node, at: keyPath(key))
    }

    func optionalString(_ key: String) throws(ConfigError) -> String? {
        guard let node = entries[key] else { return nil }
        return try nodes.string(node, at: keyPath(key))
    }

    func boolean(_ key: String, default value: Bool) throws(ConfigError) -> Bool {
        guard let node = entries[key] else { return value }
        return try nodes.boolean(node, at: keyPath(key))
    }

    func address(_ key: String, default value: HostPort) throws(ConfigError) -> HostPort {
        guard let node = entries[key] else { return value }
        return try Self.address(try nodes.string(node, at: keyPath(key)), at: keyPath(key), node, context)
    }

    /// Parses a `host:port` string read from `node`.
    static func address(
        _ text: String, at path: String, _ node: RawNode, _ context: LoadContext
    ) throws(ConfigError) -> HostPort {
        switch HostPort.parse(text) {
        case .success(let address): return address
        case .failure(let problem): throw context.error(.invalidValue, at: path, origin: node.origin, problem.message)
        }
    }

    static func rangeMessage(_ range: ClosedRange<Int>, _ value: Int) -> String {
        if range.upperBound == Int.max {
            return "must be at least \(range.lowerBound), got \(value)"
        }
        return "must be between \(range.lowerBound) and \(range.upperBound), got \(value)"
    }
}

// MARK: - Helpers

/// The known key closest to `key` by edit distance, if it is close enough to be a likely typo.
func closestKey(to key: String, among known: [String]) -> String? {
    let scored = known.map { (candidate: $0, distance: editDistance(key.lowercased(), $0.lowercased())) }
    guard let best = scored.min(by: { $0.distance < $1.distance }) else { return nil }
    let limit = max(2, key.count / 4)
    return best.distance <= limit ? best.candidate : nil
}

/// Levenshtein distance between two strings.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a)
    let b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = Array(repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
            current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

extension String {
    /// The string without leading and trailing spaces, tabs and newlines.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }

    /// The string with TOML's digit separators removed (`10_000` reads as `10000`), unless it has
    /// leading, trailing or doubled underscores, which TOML forbids and which therefore stay and fail to parse.
    func replacingUnderscores() -> String {
        guard contains("_"), !hasPrefix("_"), !hasSuffix("_"), !contains("__") else { return self }
        return String(filter { $0 != "_" })
    }
}
