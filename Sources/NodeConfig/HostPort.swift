import HTTPClient

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

    /// Parses `text`, or says in a few words what is wrong with it (the one grammar: `HTTPClient.parseHostPort`).
    static func parse(_ text: String) -> Result<HostPort, AddressProblem> {
        switch parseHostPort(text) {
        case .success(let address): return .success(HostPort(host: address.host, port: address.port))
        case .failure(let problem): return .failure(AddressProblem(problem.message))
        }
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
