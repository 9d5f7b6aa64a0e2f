/// What a caller may do in secure mode (docs/security.md). Each role includes the ones below it.
///
/// - `readonly`: get, scan, cluster, and the metrics port.
/// - `readwrite`: also put, delete, cas.
/// - `admin`: also join, promote, remove, transfer-leader and every later admin route.
public enum ClientRole: String, Sendable, Hashable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case readonly
    case readwrite
    case admin

    private var rank: Int {
        switch self {
        case .readonly: return 0
        case .readwrite: return 1
        case .admin: return 2
        }
    }

    public static func < (lhs: ClientRole, rhs: ClientRole) -> Bool { lhs.rank < rhs.rank }

    public var description: String { rawValue }
}

/// An authenticated caller: a client certificate's common name or a token's name, and its role.
public struct Caller: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var role: ClientRole

    public init(name: String, role: ClientRole) {
        self.name = name
        self.role = role
    }

    /// `alice (readonly)`.
    public var description: String { "\(name) (\(role))" }

    /// The header a follower adds to a request it tunnels to the leader, naming the caller it authenticated. The
    /// leader believes it only on a peer link authenticated as a member (mutual TLS); a client never sets it: the
    /// HTTP layer drops it from client requests.
    public static let forwardedHeader = "x-dengine-caller"

    /// `readwrite:alice` (the value of ``forwardedHeader``).
    public var headerValue: String { "\(role.rawValue):\(name)" }

    /// Parses ``headerValue``; `nil` for anything else.
    public init?(headerValue: String) {
        guard let colon = headerValue.firstIndex(of: ":"),
            let role = ClientRole(rawValue: String(headerValue[..<colon]))
        else { return nil }
        let name = String(headerValue[headerValue.index(after: colon)...])
        guard !name.isEmpty else { return nil }
        self.init(name: name, role: role)
    }
}

/// Who a verified TLS certificate speaks for: a node (its id is bound into its certificate) or a client (a name
/// and a role). Read from certificates by `NodeSecurity`.
public enum CertificateIdentity: Sendable, Hashable, CustomStringConvertible {
    case node(UInt64)
    case client(Caller)

    /// The node id of a node certificate.
    public var nodeID: UInt64? {
        if case .node(let id) = self { return id }
        return nil
    }

    /// The caller of a client certificate.
    public var caller: Caller? {
        if case .client(let caller) = self { return caller }
        return nil
    }

    public var description: String {
        switch self {
        case .node(let id): return "node \(id)"
        case .client(let caller): return "client \(caller)"
        }
    }
}
