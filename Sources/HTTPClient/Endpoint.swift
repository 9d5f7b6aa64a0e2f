// MARK: - Endpoint

/// A `host:port` to dial: the one endpoint type of the tools (dctl, dtop, dbench) and the tests.
///
/// Parsed from `127.0.0.1:9081`, `http://127.0.0.1:9081/`, `https://node1:9081`, `[::1]:9081` or `localhost:9081`
/// (the host grammar is the config file's, `parseHostPort`). A wildcard host (`0.0.0.0`, `::`) is read as
/// `127.0.0.1`: a listen address is not dialable, the same machine is.
public struct Endpoint: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// A host name, an IPv4 literal, or an IPv6 literal without brackets.
    public var host: String
    public var port: Int
    /// Written `https://...`: dialled with TLS (which also needs the cluster CA).
    public var secure: Bool

    public init(host: String, port: Int, secure: Bool = false) {
        self.host = host
        self.port = port
        self.secure = secure
    }

    /// `nil` when `text` is not an endpoint. An `http://` or `https://` prefix and a trailing `/` are accepted.
    ///
    /// With a `defaultHost` (dtop's `--endpoints`), a bare port (`8081`) and `:8081` mean that host, and a path after
    /// the port (`http://h:8081/status`) is ignored.
    public init?(parsing text: String, defaultHost: String? = nil) {
        var rest = Substring(text.trimmingWhitespace)
        var secure = false
        if rest.hasPrefix("http://") {
            rest = rest.dropFirst("http://".count)
        } else if rest.hasPrefix("https://") {
            rest = rest.dropFirst("https://".count)
            secure = true
        }
        if defaultHost != nil, let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        if let defaultHost {
            if rest.allSatisfy(\.isNumber) { rest = ":" + rest }
            if rest.hasPrefix(":") { rest = Substring(Self.bracketed(defaultHost)) + rest }
        }
        guard case .success(let address) = parseHostPort(String(rest)) else { return nil }
        let wildcard = address.host == "0.0.0.0" || address.host == "::"
        self.init(host: wildcard ? "127.0.0.1" : address.host, port: address.port, secure: secure)
    }

    /// Splits a comma- or space-separated list (dtop's `--endpoints`); throws on the first entry that does not
    /// parse; drops repeats.
    public static func parseList(_ text: String, defaultHost: String = "127.0.0.1") throws(EndpointListError) -> [Endpoint] {
        var endpoints: [Endpoint] = []
        for item in text.split(whereSeparator: { $0 == "," || $0 == " " }) where !item.isEmpty {
            guard let endpoint = Endpoint(parsing: String(item), defaultHost: defaultHost) else {
                throw EndpointListError(entry: String(item))
            }
            if !endpoints.contains(endpoint) { endpoints.append(endpoint) }
        }
        return endpoints
    }

    /// Two spellings of one loopback socket (`localhost:1`, `127.0.0.1:1`, `0.0.0.0:1`) compare equal here.
    public var identity: String {
        let loopback = ["localhost", "127.0.0.1", "0.0.0.0", "::", "::1"]
        return "\(loopback.contains(host.lowercased()) ? "127.0.0.1" : host.lowercased()):\(port)"
    }

    /// `host:port`, with brackets around an IPv6 host.
    public var description: String { "\(Self.bracketed(host)):\(port)" }

    public static func < (lhs: Endpoint, rhs: Endpoint) -> Bool {
        (lhs.host, lhs.port, lhs.secure ? 1 : 0) < (rhs.host, rhs.port, rhs.secure ? 1 : 0)
    }

    private static func bracketed(_ host: String) -> String { host.contains(":") ? "[\(host)]" : host }
}

/// An `--endpoints` entry that is not `host:port`.
public struct EndpointListError: Error, Sendable, CustomStringConvertible {
    public var entry: String
    public init(entry: String) { self.entry = entry }
    public var description: String { "invalid endpoint '\(entry)' (expected host:port)" }
}

// MARK: - host:port grammar

/// Parses `host:port` or `[ipv6]:port` (the host without brackets), or says in a few words what is wrong.
///
/// The one grammar for addresses: the config file's (`HostPort`) and every endpoint a tool or test dials.
/// A host is letters, digits, `.` and `-`; an IPv6 literal must be in brackets; the port is 1-65535.
public func parseHostPort(_ text: String) -> Result<(host: String, port: Int), HostPortProblem> {
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
    guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber), let port = Int(portText)
    else {
        return .failure(.init("expected a numeric port in \"\(text)\""))
    }
    guard (1...65535).contains(port) else {
        return .failure(.init("port must be 1-65535, got \(portText) in \"\(text)\""))
    }
    return .success((String(host), port))
}

/// Why a string is not a `host:port`.
public struct HostPortProblem: Error, Equatable, Sendable {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines (no Foundation needed).
    var trimmingWhitespace: String {
        var view = Substring(self)
        while let first = view.first, first.isWhitespace { view.removeFirst() }
        while let last = view.last, last.isWhitespace { view.removeLast() }
        return String(view)
    }
}
