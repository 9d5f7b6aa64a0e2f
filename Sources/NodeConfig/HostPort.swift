/// A `host:port` socket address as written in the config (`0.0.0.0:9081`, `node1.example:9081`, `[::1]:9081`).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    /// A host name, an IPv4 literal, or an IPv6 literal without brackets.
    public var host: String
    /// 1-65535.
    public var port: Int

    /// Creates an address without checking it; use `init?(_:)` to parse user input.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port` or `[ipv6]:port`; `nil` if it is malformed or the port is outside 1-65535.
    public init?(_ text: String) {
        guard case .success(let address) = Self.parse(text) else { return nil }
        self = address
    }

    /// `true` for the wildcard hosts `0.0.0.0` and `::`, which mean "every interface" when listening.
    public var isWildcard: Bool {
        host == "0.0.0.0" || host == "::" || host == "[::]"
    }

    /// The address to connect to: a wildcard host (`0.0.0.0`, `::`) becomes `127.0.0.1`, so that the seed's
    /// `initial_cluster = [{ address = "0.0.0.0:9082" }, ...]` works as written on one machine.
    /// `true` for `localhost`, 127.0.0.0/8 and `::1`: reachable from this machine only.
    public var isLoopback: Bool {
        let lower = host.lowercased()
        if lower == "localhost" || lower == "::1" { return true }
        // An IPv4 literal 127.a.b.c (not a name that merely starts with "127.").
        let parts = lower.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127"
            && parts.allSatisfy { part in part.count <= 3 && UInt8(part) != nil }
    }

    public var dialAddress: HostPort {
        isWildcard ? HostPort(host: "127.0.0.1", port: port) : self
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Parses `text`, or says in a few words what is wrong with it.
    static func parse(_ text: String) -> Result<HostPort, AddressProblem> {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(.init("unclosed '[' in \"\(text)\"")) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return .failure(.init("expected host:port, got \"\(text)\"")) }
            portText = rest.dropFirst()
            let ipv6 = host.allSatisfy { $0.isHexDigit || $0 == ":" || $0 == "." }
            guard host.contains(":"), ipv6 else {
                return .failure(.init("\"\(host)\" in brackets is not an IPv6 address"))
            }
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                return .failure(.init("expected host:port, got \"\(text)\""))
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard !host.contains(":") else {
                return .failure(.init("IPv6 host must be in brackets, e.g. [::1]:9081, got \"\(text)\""))
            }
            guard !host.isEmpty else { return .failure(.init("host is empty in \"\(text)\"")) }
            let allowed = host.allSatisfy { ($0.isASCII && ($0.isLetter || $0.isNumber)) || $0 == "." || $0 == "-" }
            guard allowed else { return .failure(.init("invalid host \"\(host)\" in \"\(text)\"")) }
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber),
            let port = Int(portText)
        else {
            return .failure(.init("expected a numeric port in \"\(text)\""))
        }
        guard (1...65535).contains(port) else {
            return .failure(.init("port must be 1-65535, got \(portText) in \"\(text)\""))
        }
        return .success(HostPort(host: String(host), port: port))
    }

    /// A key under which two addresses that reach the same socket compare equal (`0.0.0.0:1` and
    /// `127.0.0.1:1`, `localhost:1`), for duplicate detection.
    var identityKey: String {
        let dial = dialAddress
        let host = dial.host.lowercased() == "localhost" || dial.host == "::1" ? "127.0.0.1" : dial.host.lowercased()
        return "\(host):\(dial.port)"
    }
}

/// Why a string is not a `host:port`.
struct AddressProblem: Error, Equatable {
    var message: String

    init(_ message: String) {
        self.message = message
    }
}
