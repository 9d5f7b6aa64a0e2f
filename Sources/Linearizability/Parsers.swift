import Foundation

/// A line of a history file that could not be understood.
public struct HistoryParseError: Error, Sendable, CustomStringConvertible {
    /// 1-based line number.
    public var line: Int
    /// What was wrong.
    public var reason: String

    /// `line N: reason`.
    public var description: String { "line \(line): \(reason)" }
}

/// Readers for the shared vectors: Jepsen etcd logs, porcupine's EDN key-value histories and `labels.tsv`.
///
/// Each event gets its line number as timestamp (the files are in real-time order). Events are matched to
/// invokes by process id, one outstanding operation per process. A process whose operation ended `:info` never
/// returns; Jepsen gives the client a fresh process id, so the next invoke with the same id is simply a new
/// operation. Invokes never completed by the end of the file become `.info`.
public enum HistoryParsers {
    /// What a Jepsen `:fail :cas` means.
    public enum FailedCAS: Sendable {
        /// The etcd client reports a compare mismatch as `:fail`: the CAS ran and returned `false`, which
        /// constrains the register (porcupine's reading, the one the labels assume).
        case comparedAndMismatched
        /// Generic Jepsen semantics: the operation did not happen and is dropped (weaker check).
        case dropped
    }

    // MARK: - Jepsen etcd logs

    /// Parses a Jepsen etcd register log (`INFO  jepsen.util - 3\t:invoke\t:cas\t[4 2]`). Lines that are not
    /// `jepsen.util` events are ignored.
    public static func parseJepsenEtcd(
        _ text: String,
        failedCAS: FailedCAS = .comparedAndMismatched
    ) throws -> History<RegisterInput, RegisterOutput> {
        var matcher = Matcher<RegisterInput, RegisterOutput>()
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            guard let marker = rawLine.range(of: "jepsen.util - ") else { continue }
            let fields = rawLine[marker.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 4, let process = Int(fields[0]) else {
                throw HistoryParseError(line: lineNumber, reason: "expected `process :type :f value`")
            }
            let type = fields[1]
            let function = fields[2]
            let value = fields[3...].joined(separator: " ")
            let time = UInt64(lineNumber)
            switch type {
            case ":invoke":
                let input: RegisterInput
                switch function {
                case ":read": input = .read
                case ":write":
                    guard let written = Int(value) else {
                        throw HistoryParseError(line: lineNumber, reason: "write of non-integer `\(value)`")
                    }
                    input = .write(written)
                case ":cas":
                    guard let (expected, new) = parsePair(value) else {
                        throw HistoryParseError(line: lineNumber, reason: "cas argument `\(value)` is not `[a b]`")
                    }
                    input = .cas(expected: expected, new: new)
                default:
                    throw HistoryParseError(line: lineNumber, reason: "unknown function \(function)")
                }
                try matcher.invoke(process: process, input, time: time, line: lineNumber)
            case ":ok":
                let output: RegisterOutput
                switch function {
                case ":read":
                    if value == "nil" {
                        output = .value(nil)
                    } else if let read = Int(value) {
                        output = .value(read)
                    } else {
                        throw HistoryParseError(line: lineNumber, reason: "read of non-integer `\(value)`")
                    }
                case ":write": output = .done
                case ":cas": output = .swapped(true)
                default: throw HistoryParseError(line: lineNumber, reason: "unknown function \(function)")
                }
                try matcher.complete(process: process, .ok(output), time: time, line: lineNumber)
            case ":fail":
                let outcome: Outcome<RegisterOutput> =
                    function == ":cas" && failedCAS == .comparedAndMismatched ? .ok(.swapped(false)) : .fail
                try matcher.complete(process: process, outcome, time: time, line: lineNumber)
            case ":info":
                try matcher.complete(process: process, .info, time: time, line: lineNumber)
            default:
                throw HistoryParseError(line: lineNumber, reason: "unknown type \(type)")
            }
        }
        return matcher.history()
    }

    /// `[4 2]` → (4, 2).
    private static func parsePair(_ text: String) -> (Int, Int)? {
        guard text.hasPrefix("["), text.hasSuffix("]") else { return nil }
        let parts = text.dropFirst().dropLast().split(separator: " ")
        guard parts.count == 2, let first = Int(parts[0]), let second = Int(parts[1]) else { return nil }
        return (first, second)
    }

    // MARK: - EDN key-value histories

    /// Parses porcupine's EDN key-value histories, one map per line:
    /// `{:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}` with `:get`, `:put` and `:append`.
    /// Check them with `KVModel(initialValue: "")`: a get of a missing key returns `""` there.
    public static func parseEDNKeyValue(_ text: String) throws -> History<KVInput, KVOutput> {
        var matcher = Matcher<KVInput, KVOutput>()
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            let map: [String: EDNValue]
            do {
                var reader = EDNReader(line)
                map = try reader.readMap()
            } catch let error as EDNReader.Failure {
                throw HistoryParseError(line: lineNumber, reason: error.reason)
            }
            guard case .integer(let process)? = map["process"], case .keyword(let type)? = map["type"],
                case .keyword(let function)? = map["f"], case .string(let key)? = map["key"]
            else {
                throw HistoryParseError(line: lineNumber, reason: "missing :process, :type, :f or :key")
            }
            let value: String?
            switch map["value"] {
            case .string(let text)?: value = text
            case .nil?, nil: value = nil
            default: throw HistoryParseError(line: lineNumber, reason: ":value is neither a string nor nil")
            }
            let time = UInt64(lineNumber)
            switch type {
            case "invoke":
                let input: KVInput
                switch (function, value) {
                case ("get", _): input = .get(key: key)
                case ("put", let value?): input = .put(key: key, value: value)
                case ("append", let value?): input = .append(key: key, value: value)
                default: throw HistoryParseError(line: lineNumber, reason: "bad invoke of :\(function)")
                }
                try matcher.invoke(process: process, input, time: time, line: lineNumber)
            case "ok":
                let output: KVOutput = function == "get" ? .value(value) : .done
                try matcher.complete(process: process, .ok(output), time: time, line: lineNumber)
            case "fail":
                try matcher.complete(process: process, .fail, time: time, line: lineNumber)
            case "info":
                try matcher.complete(process: process, .info, time: time, line: lineNumber)
            default:
                throw HistoryParseError(line: lineNumber, reason: "unknown :type :\(type)")
            }
        }
        return matcher.history()
    }

    // MARK: - Labels

    /// Parses `labels.tsv` (`path<TAB>linearizable|not-linearizable`) into path → expected linearizability.
    public static func parseLabels(_ text: String) throws -> [String: Bool] {
        var labels: [String: Bool] = [:]
        for (offset, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let fields = line.split(separator: "\t").map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.isEmpty || fields[0].isEmpty || fields[0].hasPrefix("#") { continue }
            guard fields.count == 2 else {
                throw HistoryParseError(line: offset + 1, reason: "expected `path<TAB>verdict`")
            }
            switch fields[1] {
            case "linearizable": labels[fields[0]] = true
            case "not-linearizable": labels[fields[0]] = false
            default: throw HistoryParseError(line: offset + 1, reason: "unknown verdict `\(fields[1])`")
            }
        }
        return labels
    }
}

/// Pairs invokes and completions by process id.
private struct Matcher<Input: Sendable, Output: Sendable> {
    var operations: [HistoryOperation<Input, Output>] = []
    var open: [Int: Int] = [:]

    mutating func invoke(process: Int, _ input: Input, time: UInt64, line: Int) throws {
        guard open[process] == nil else {
            throw HistoryParseError(line: line, reason: "process \(process) invoked twice without a completion")
        }
        open[process] = operations.count
        operations.append(
            HistoryOperation(process: process, input: input, outcome: .info, invokedAt: time, returnedAt: nil)
        )
    }

    mutating func complete(process: Int, _ outcome: Outcome<Output>, time: UInt64, line: Int) throws {
        guard let index = open.removeValue(forKey: process) else {
            throw HistoryParseError(line: line, reason: "completion for process \(process) with nothing invoked")
        }
        operations[index].outcome = outcome
        if case .info = outcome {
            operations[index].returnedAt = nil
        } else {
            operations[index].returnedAt = time
        }
    }

    /// Unmatched invokes stay `.info` with no return.
    func history() -> History<Input, Output> {
        History(operations)
    }
}

/// The few EDN values the history files use.
private enum EDNValue: Equatable {
    case integer(Int)
    case string(String)
    case keyword(String)
    case `nil`
}

/// Reads one flat EDN map of keywords to integers, strings, keywords or nil.
private struct EDNReader {
    struct Failure: Error {
        var reason: String
    }

    private let characters: [Character]
    private var position = 0

    init(_ text: String) {
        characters = Array(text)
    }

    private mutating func skipSpace() {
        while position < characters.count, characters[position].isWhitespace || characters[position] == "," {
            position += 1
        }
    }

    mutating func readMap() throws -> [String: EDNValue] {
        skipSpace()
        guard position < characters.count, characters[position] == "{" else { throw Failure(reason: "expected {") }
        position += 1
        var map: [String: EDNValue] = [:]
        while true {
            skipSpace()
            guard position < characters.count else { throw Failure(reason: "unterminated map") }
            if characters[position] == "}" {
                position += 1
                break
            }
            guard case .keyword(let key) = try readValue() else { throw Failure(reason: "map key is not a keyword") }
            skipSpace()
            map[key] = try readValue()
        }
        skipSpace()
        guard position == characters.count else { throw Failure(reason: "text after the map") }
        return map
    }

    private mutating func readValue() throws -> EDNValue {
        guard position < characters.count else { throw Failure(reason: "expected a value") }
        let first = characters[position]
        if first == "\"" {
            position += 1
            var text = ""
            while position < characters.count, characters[position] != "\"" {
                if characters[position] == "\\", position + 1 < characters.count {
                    position += 1
                    switch characters[position] {
                    case "n": text.append("\n")
                    case "t": text.append("\t")
                    default: text.append(characters[position])
                    }
                } else {
                    text.append(characters[position])
                }
                position += 1
            }
            guard position < characters.count else { throw Failure(reason: "unterminated string") }
            position += 1
            return .string(text)
        }
        var token = ""
        while position < characters.count {
            let character = characters[position]
            if character.isWhitespace || character == "," || character == "}" { break }
            token.append(character)
            position += 1
        }
        if token == "nil" { return .nil }
        if token.hasPrefix(":"), token.count > 1 { return .keyword(String(token.dropFirst())) }
        if let integer = Int(token) { return .integer(integer) }
        throw Failure(reason: "unknown token `\(token)`")
    }
}
