import ClusterAPI
import Crypto
import Foundation

/// Bearer tokens, stored hashed (docs/security.md): one line per token, `NAME ROLE sha256:HEX`; `#` starts a
/// comment. A token is 32 random bytes (`dtk_` + 64 hex digits), so one SHA-256 of it is as good as a slow hash:
/// there is nothing to guess. The file holds no token itself, only what recognises one.
public struct TokenStore: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var caller: Caller
        /// SHA-256 of the token's UTF-8 bytes.
        public var digest: [UInt8]
    }

    public private(set) var entries: [Entry]

    public init(entries: [Entry] = []) {
        self.entries = entries
    }

    /// Parses the file's text; a malformed line is an error naming its number.
    public init(text: String, source: String) throws {
        var entries: [Entry] = []
        for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            if fields.isEmpty { continue }
            guard fields.count == 3, let role = ClientRole(rawValue: String(fields[1])),
                fields[2].hasPrefix("sha256:"), let digest = Self.hexBytes(fields[2].dropFirst(7)), digest.count == 32
            else {
                throw TLSMaterialError(
                    "\(source):\(number + 1): expected NAME ROLE sha256:HEX (ROLE readonly, readwrite or admin)")
            }
            entries.append(Entry(caller: Caller(name: String(fields[0]), role: role), digest: digest))
        }
        self.entries = entries
    }

    public static func load(path: String) throws -> TokenStore {
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8)
        else { throw TLSMaterialError("cannot read the tokens file \(path)") }
        return try TokenStore(text: text, source: path)
    }

    /// The caller a presented token belongs to; every entry is compared in constant time.
    public func caller(forToken token: Substring) -> Caller? {
        let digest = Array(SHA256.hash(data: Array(token.utf8)))
        var found: Caller?
        for entry in entries {
            var difference: UInt8 = 0
            for (a, b) in zip(entry.digest, digest) { difference |= a ^ b }
            if difference == 0 { found = entry.caller }
        }
        return found
    }

    /// A new random token and the line that recognises it.
    public static func makeToken(name: String, role: ClientRole) -> (token: String, line: String) {
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let token = "dtk_" + hex(bytes)
        let digest = Array(SHA256.hash(data: Array(token.utf8)))
        return (token, "\(name) \(role.rawValue) sha256:\(hex(digest))")
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined()
    }

    static func hexBytes(_ text: Substring) -> [UInt8]? {
        guard text.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        var index = text.startIndex
        while index < text.endIndex {
            let next = text.index(index, offsetBy: 2)
            guard let byte = UInt8(text[index..<next], radix: 16) else { return nil }
            bytes.append(byte)
            index = next
        }
        return bytes
    }
}
