import Foundation

/// The JSON settings every producer and consumer of ClusterAPI types shares.
///
/// Keys are spelled by each type's `CodingKeys` (snake_case), so plain `JSONEncoder`/`JSONDecoder` also work;
/// these helpers add sorted keys and unescaped slashes so output is stable for golden tests and readable by eye.
public enum WireJSON {
    /// An encoder writing compact JSON with sorted keys and unescaped `/`.
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }

    /// A decoder for ClusterAPI types (unknown fields are ignored by every type).
    public static func makeDecoder() -> JSONDecoder {
        JSONDecoder()
    }

    /// Encodes `value` as compact JSON bytes.
    public static func encode<Value: Encodable>(_ value: Value) throws -> Data {
        try makeEncoder().encode(value)
    }

    /// Decodes a `Value` from JSON bytes.
    public static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        try makeDecoder().decode(type, from: data)
    }
}
