/// A metrics endpoint (`host:port`) that dtop polls with `GET /status`.
public struct Endpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// Parses `host:port`, `:port` (loopback), a bare port, or any of these behind `http://`.
    /// A trailing path is ignored. Returns `nil` for anything else.
    public init?(parsing text: String) {
        var rest = Substring(text.filter { !$0.isWhitespace })
        if rest.hasPrefix("http://") { rest = rest.dropFirst("http://".count) }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        guard !rest.isEmpty else { return nil }
        let host: Substring
        let portText: Substring
        if let colon = rest.lastIndex(of: ":") {
            host = rest[..<colon]
            portText = rest[rest.index(after: colon)...]
        } else {
            host = ""
            portText = rest
        }
        guard let port = Int(portText), (1...65535).contains(port) else { return nil }
        self.host = host.isEmpty ? "127.0.0.1" : String(host)
        self.port = port
    }

    public var description: String { "\(host):\(port)" }

    public static func < (lhs: Endpoint, rhs: Endpoint) -> Bool {
        (lhs.host, lhs.port) < (rhs.host, rhs.port)
    }

    /// Splits a comma- or space-separated list; throws on the first entry that does not parse.
    public static func parseList(_ text: String) throws(EndpointListError) -> [Endpoint] {
        var endpoints: [Endpoint] = []
        for item in text.split(whereSeparator: { $0 == "," || $0 == " " }) where !item.isEmpty {
            guard let endpoint = Endpoint(parsing: String(item)) else { throw EndpointListError(entry: String(item)) }
            if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
        }
        return endpoints
    }
}

/// An `--endpoints` entry that is not `host:port`.
public struct EndpointListError: Error, CustomStringConvertible {
    public var entry: String
    public var description: String { "invalid endpoint '\(entry)' (expected host:port)" }
}

/// Splits `host:port` into its parts; `nil` if the port is missing.
func splitAddress(_ address: String) -> (host: String, port: Int)? {
    guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else {
        return nil
    }
    return (String(address[..<colon]), port)
}
