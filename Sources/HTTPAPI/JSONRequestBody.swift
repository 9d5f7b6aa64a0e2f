/// A small, strict JSON reader for request bodies: one top-level object whose members are read by name.
///
/// Request bodies are flat (`{"key":"k","value":"v"}`), so this reader keeps scalar members and validates but
/// skips nested objects and arrays. It is RFC 8259 strict: no trailing commas, no comments, no unescaped control
/// characters in strings, no lone surrogates, and the body must be valid UTF-8 (`JSONDecoder` would take the same
/// bodies, at several times the cost on the `/put` hot path).

// MARK: - Values

/// A member value of a request body.
enum JSONMemberValue: Sendable, Hashable {
    case string(String)
    /// A number written as a plain non-negative integer that fits in `UInt64` (`0`, `42`).
    case unsignedInteger(UInt64)
    /// Any other number: negative, fractional, with an exponent, or too large for `UInt64`.
    case otherNumber
    case bool(Bool)
    case null
    /// A nested object or array (validated, not kept).
    case compound

    /// The JSON type name, for error messages.
    var typeName: String {
        switch self {
        case .string: return "a string"
        case .unsignedInteger, .otherNumber: return "a number"
        case .bool: return "a boolean"
        case .null: return "null"
        case .compound: return "an object or array"
        }
    }
}

/// Why a body is not an acceptable JSON object.
struct JSONBodyError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, for the `invalid_request` message.
    var reason: String
    /// The byte offset in the body where it went wrong.
    var offset: Int

    var description: String { "\(reason) at byte \(offset)" }
}

/// The members of a top-level JSON object, in body order. Lookups take the last member of a name.
struct JSONRequestObject: Sendable {
    /// Nesting deeper than this is rejected rather than skipped (keeps the recursion bounded).
    static let maximumDepth = 32

    private(set) var members: [(name: String, value: JSONMemberValue)] = []

    /// The value of member `name`, or `nil` when the body has no such member.
    subscript(name: String) -> JSONMemberValue? {
        for member in members.reversed() where member.name == name {
            return member.value
        }
        return nil
    }

    /// Parses `bytes` as one JSON object surrounded by optional whitespace.
    init(parsing bytes: UnsafeRawBufferPointer) throws(JSONBodyError) {
        var scanner = JSONScanner(bytes: bytes)
        scanner.skipWhitespace()
        guard scanner.peek() == UInt8(ascii: "{") else {
            throw scanner.error(scanner.isAtEnd ? "empty body, expected a JSON object" : "expected a JSON object")
        }
        scanner.index += 1
        scanner.skipWhitespace()
        if scanner.peek() == UInt8(ascii: "}") {
            scanner.index += 1
        } else {
            while true {
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: "\"") else { throw scanner.error("expected a member name") }
                let name = try scanner.readString()
                scanner.skipWhitespace()
                guard scanner.peek() == UInt8(ascii: ":") else { throw scanner.error("expected ':'") }
                scanner.index += 1
                let value = try scanner.readValue(depth: 1)
                members.append((name, value))
                scanner.skipWhitespace()
                switch scanner.peek() {
                case UInt8(ascii: ","):
                    scanner.index += 1
                    continue
                case UInt8(ascii: "}"):
                    scanner.index += 1
                default:
                    throw scanner.error("expected ',' or '}'")
                }
                break
            }
        }
        scanner.skipWhitespace()
        guard scanner.isAtEnd else { throw scanner.error("unexpected data after the JSON object") }
    }
}

// MARK: - Scanner

/// A cursor over the body bytes. Only used inside `JSONRequestObject.init(parsing:)`.
private struct JSONScanner {
    let bytes: UnsafeRawBufferPointer
    var index = 0

    var isAtEnd: Bool { index >= bytes.count }

    func peek() -> UInt8? {
        index < bytes.count ? bytes[index] : nil
    }

    func error(_ reason: String) -> JSONBodyError {
        JSONBodyError(
            reason: isAtEnd && !reason.hasPrefix("empty") ? "\(reason), found end of body" : reason,
            offset: index)
    }

    mutating func skipWhitespace() {
        while index < bytes.count {
            switch bytes[index] {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"):
                index += 1
            default:
                return
            }
        }
    }

    mutating func readValue(depth: Int) throws(JSONBodyError) -> JSONMemberValue {
        skipWhitespace()
        guard let byte = peek() else { throw error("expected a value") }
        switch byte {
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return try readNumber()
        case UInt8(ascii: "t"):
            try expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try expectLiteral("null")
            return .null
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            try skipCompound(depth: depth)
            return .compound
        default:
            throw error("unexpected character")
        }
    }

    mutating func expectLiteral(_ literal: StaticString) throws(JSONBodyError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - index >= count else { throw error("invalid literal") }
        let expected = UnsafeRawBufferPointer(start: literal.utf8Start, count: count)
        for offset in 0..<count where bytes[index + offset] != expected[offset] {
            throw error("invalid literal")
        }
        index += count
    }

    /// Validates an object or array starting at `index` and moves past it.
    mutating func skipCompound(depth: Int) throws(JSONBodyError) {
        guard depth < JSONRequestObject.maximumDepth else { throw error("JSON nested too deeply") }
        let isObject = bytes[index] == UInt8(ascii: "{")
        let close = isObject ? UInt8(ascii: "}") : UInt8(ascii: "]")
        index += 1
        skipWhitespace()
        if peek() == close {
            index += 1
            return
        }
        while true {
            if isObject {
                skipWhitespace()
                guard peek() == UInt8(ascii: "\"") else { throw error("expected a member name") }
                _ = try readString()
                skipWhitespace()
                guard peek() == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
            }
            _ = try readValue(depth: depth + 1)
            skipWhitespace()
            guard let next = peek() else { throw error("unterminated \(isObject ? "object" : "array")") }
            index += 1
            if next == close { return }
            guard next == UInt8(ascii: ",") else {
                index -= 1
                throw error(isObject ? "expected ',' or '}'" : "expected ',' or ']'")
            }
        }
    }

    /// Reads `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    mutating func readNumber() throws(JSONBodyError) -> JSONMemberValue {
        var isPlainUnsigned = true
        if peek() == UInt8(ascii: "-") {
            isPlainUnsigned = false
            index += 1
        }
        guard let first = peek(), first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") else {
            throw error("invalid number")
        }
        var value: UInt64 = 0
        var overflowed = false
        if first == UInt8(ascii: "0") {
            index += 1
            if let next = peek(), next >= UInt8(ascii: "0"), next <= UInt8(ascii: "9") {
                throw error("invalid number (leading zero)")
            }
        } else {
            while let digit = peek(), digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") {
                let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                let (sum, o2) = times10.addingReportingOverflow(UInt64(digit - UInt8(ascii: "0")))
                overflowed = overflowed || o1 || o2
                value = sum
                index += 1
            }
        }
        if peek() == UInt8(ascii: ".") {
            isPlainUnsigned = false
            index += 1
            try readDigits()
        }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            isPlainUnsigned = false
            index += 1
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { index += 1 }
            try readDigits()
        }
        return isPlainUnsigned && !overflowed ? .unsignedInteger(value) : .otherNumber
    }

    mutating func readDigits() throws(JSONBodyError) {
        let start = index
        while let digit = peek(), digit >= UInt8(ascii: "0"), digit <= UInt8(ascii: "9") {
            index += 1
        }
        guard index > start else { throw error("invalid number") }
    }

    /// Reads a string starting at the opening quote; validates UTF-8 and escapes.
    mutating func readString() throws(JSONBodyError) -> String {
        index += 1
        let start = index
        // Fast path: no escapes. Control characters are rejected; UTF-8 is validated by `String(validating:)`.
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                guard let string = String(validating: slice, as: UTF8.self) else {
                    index = start
                    throw error("string is not valid UTF-8")
                }
                index += 1
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw error("unescaped control character in string") }
            index += 1
        }
        guard index < bytes.count else { throw error("unterminated string") }
        return try readEscapedString(start: start)
    }

    /// The slow path of `readString`: the string holds at least one escape, at `index`.
    mutating func readEscapedString(start: Int) throws(JSONBodyError) -> String {
        var utf8: [UInt8] = []
        utf8.reserveCapacity(index - start + 16)
        utf8.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let byte = bytes[index]
            switch byte {
            case UInt8(ascii: "\""):
                index += 1
                guard let string = String(validating: utf8, as: UTF8.self) else {
                    index = start
                    throw error("string is not valid UTF-8")
                }
                return string
            case UInt8(ascii: "\\"):
                index += 1
                guard let escape = peek() else { throw error("unterminated string") }
                index += 1
                switch escape {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(escape)
                case UInt8(ascii: "b"): utf8.append(0x08)
                case UInt8(ascii: "f"): utf8.append(0x0C)
                case UInt8(ascii: "n"): utf8.append(0x0A)
                case UInt8(ascii: "r"): utf8.append(0x0D)
                case UInt8(ascii: "t"): utf8.append(0x09)
                case UInt8(ascii: "u"):
                    let scalar = try readUnicodeEscape()
                    utf8.append(contentsOf: UTF8.encode(scalar)!)
                default:
                    index -= 1
                    throw error("invalid escape")
                }
            case 0..<0x20:
                throw error("unescaped control character in string")
            default:
                utf8.append(byte)
                index += 1
            }
        }
        throw error("unterminated string")
    }

    /// Reads the `XXXX` of `\uXXXX` (and a following `\uXXXX` low surrogate when the first is a high one).
    mutating func readUnicodeEscape() throws(JSONBodyError) -> Unicode.Scalar {
        let first = try readHex4()
        switch first {
        case 0xD800...0xDBFF:
            guard bytes.count - index >= 6, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u")
            else { throw error("lone surrogate in \\u escape") }
            index += 2
            let second = try readHex4()
            guard (0xDC00...0xDFFF).contains(second) else { throw error("lone surrogate in \\u escape") }
            let combined = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            return Unicode.Scalar(combined)!
        case 0xDC00...0xDFFF:
            throw error("lone surrogate in \\u escape")
        default:
            return Unicode.Scalar(first)!
        }
    }

    mutating func readHex4() throws(JSONBodyError) -> UInt32 {
        guard bytes.count - index >= 4 else { throw error("invalid \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
            default: throw error("invalid \\u escape")
            }
            value = value << 4 | UInt32(digit)
            index += 1
        }
        return value
    }
}
