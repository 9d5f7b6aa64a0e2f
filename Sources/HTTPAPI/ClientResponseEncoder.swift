import ClusterAPI
import NIOCore

/// Hand-written JSON for the client API's response bodies.
///
/// The bodies are tiny and fixed in shape, so writing them straight into a `ByteBuffer` avoids Foundation's
/// `JSONEncoder` on the hot path. The output decodes with `WireJSON` into the same `ClusterAPI` types; `GET
/// /cluster` and the membership routes are cold and use `WireJSON` itself.
enum ClientResponseEncoder {
    // MARK: Key-value responses

    /// `{"key":"k","index":7}`
    static func writePut(_ response: PutResponse, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"key\":")
        buffer.writeJSONString(response.key)
        buffer.writeStaticString(",\"index\":")
        buffer.writeDecimal(response.index)
        buffer.writeStaticString("}")
    }

    /// `{"key":"k","value":"v","index":7}`
    static func writeGet(_ response: GetResponse, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"key\":")
        buffer.writeJSONString(response.key)
        buffer.writeStaticString(",\"value\":")
        buffer.writeJSONString(response.value)
        buffer.writeStaticString(",\"index\":")
        buffer.writeDecimal(response.index)
        buffer.writeStaticString("}")
    }

    /// `{"key":"k","index":7,"deleted":true}`
    static func writeDelete(_ response: DeleteResponse, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"key\":")
        buffer.writeJSONString(response.key)
        buffer.writeStaticString(",\"index\":")
        buffer.writeDecimal(response.index)
        buffer.writeStaticString(response.deleted ? ",\"deleted\":true}" : ",\"deleted\":false}")
    }

    /// `{"succeeded":true,"index":7}`
    static func writeCas(_ response: CasResponse, into buffer: inout ByteBuffer) {
        buffer.writeStaticString(
            response.succeeded ? "{\"succeeded\":true,\"index\":" : "{\"succeeded\":false,\"index\":")
        buffer.writeDecimal(response.index)
        buffer.writeStaticString("}")
    }

    /// `{"entries":[{"key":"a","value":"1"}],"index":7}`, with `,"next":"a"` when more follow.
    static func writeScan(_ response: ScanResponse, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"entries\":[")
        for (offset, entry) in response.entries.enumerated() {
            buffer.writeStaticString(offset == 0 ? "{\"key\":" : ",{\"key\":")
            buffer.writeJSONString(entry.key)
            buffer.writeStaticString(",\"value\":")
            buffer.writeJSONString(entry.value)
            buffer.writeStaticString("}")
        }
        buffer.writeStaticString("],\"index\":")
        buffer.writeDecimal(response.index)
        if let next = response.next {
            buffer.writeStaticString(",\"next\":")
            buffer.writeJSONString(next)
        }
        buffer.writeStaticString("}")
    }

    /// Any `Encodable` body through `WireJSON` (cold routes). Returns `false` when encoding fails.
    static func writeWireJSON<Value: Encodable>(_ value: Value, into buffer: inout ByteBuffer) -> Bool {
        guard let data = try? WireJSON.encode(value) else { return false }
        buffer.writeBytes(data)
        return true
    }

    // MARK: Errors

    /// `{"error":{"code":"...","message":"...","leader_id":1,"leader_address":"...","progress":{...}}}`.
    ///
    /// The leader fields come from `error` when it has them, else from `hint`; they are omitted when neither knows.
    static func writeError(_ error: APIError, hint: LeaderHint?, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"error\":{\"code\":")
        buffer.writeJSONString(error.code.rawValue)
        buffer.writeStaticString(",\"message\":")
        buffer.writeJSONString(error.message)
        if let leaderID = error.leaderID ?? hint?.id {
            buffer.writeStaticString(",\"leader_id\":")
            buffer.writeDecimal(leaderID)
        }
        // The hint's address only describes the hint's leader, not a different one the error may name.
        let hintAddress = error.leaderID == nil || error.leaderID == hint?.id ? hint?.address : nil
        if let address = error.leaderAddress ?? hintAddress {
            buffer.writeStaticString(",\"leader_address\":")
            buffer.writeJSONString(address)
        }
        if let progress = error.progress {
            buffer.writeStaticString(",\"progress\":{\"match_index\":")
            buffer.writeDecimal(progress.matchIndex)
            buffer.writeStaticString(",\"leader_last_index\":")
            buffer.writeDecimal(progress.leaderLastIndex)
            buffer.writeStaticString(",\"lag_entries\":")
            buffer.writeDecimal(progress.lagEntries)
            buffer.writeStaticString("}")
        }
        if let oldest = error.oldestIndex {
            buffer.writeStaticString(",\"oldest_index\":")
            buffer.writeDecimal(oldest)
        }
        buffer.writeStaticString("}}")
    }
}

// MARK: - ByteBuffer JSON primitives

extension ByteBuffer {
    /// Writes `string` as a JSON string literal: `"`, `\` and control characters are escaped; all other characters,
    /// including non-ASCII, are written as UTF-8.
    mutating func writeJSONString(_ string: String) {
        writeInteger(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { utf8 in
            var runStart = 0
            for index in 0..<utf8.count {
                let byte = utf8[index]
                guard byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") else { continue }
                if index > runStart {
                    writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[runStart..<index])))
                }
                writeJSONEscape(byte)
                runStart = index + 1
            }
            if utf8.count > runStart {
                writeBytes(UnsafeRawBufferPointer(UnsafeBufferPointer(rebasing: utf8[runStart..<utf8.count])))
            }
        }
        writeInteger(UInt8(ascii: "\""))
    }

    private mutating func writeJSONEscape(_ byte: UInt8) {
        switch byte {
        case UInt8(ascii: "\""): writeStaticString("\\\"")
        case UInt8(ascii: "\\"): writeStaticString("\\\\")
        case 0x0A: writeStaticString("\\n")
        case 0x0D: writeStaticString("\\r")
        case 0x09: writeStaticString("\\t")
        case 0x08: writeStaticString("\\b")
        case 0x0C: writeStaticString("\\f")
        default:
            let hex: StaticString = "0123456789abcdef"
            writeStaticString("\\u00")
            writeInteger(hex.utf8Start[Int(byte >> 4)])
            writeInteger(hex.utf8Start[Int(byte & 0x0F)])
        }
    }

    /// Writes `value` in decimal without allocating.
    mutating func writeDecimal(_ value: UInt64) {
        guard value >= 10 else {
            writeInteger(UInt8(ascii: "0") + UInt8(value))
            return
        }
        var remaining = value
        var divisor: UInt64 = 1
        while remaining / divisor >= 10 {
            divisor *= 10
        }
        while divisor > 0 {
            let digit = remaining / divisor
            writeInteger(UInt8(ascii: "0") + UInt8(digit))
            remaining -= digit * divisor
            divisor /= 10
        }
    }
}
