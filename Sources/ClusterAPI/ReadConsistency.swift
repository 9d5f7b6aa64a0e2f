/// How a read is served. The wire (query) names are the raw values; the config file uses d-engine's names.
///
/// | query name     | config name           | guarantee                                                          |
/// |----------------|-----------------------|--------------------------------------------------------------------|
/// | `linearizable` | `LinearizableRead`    | the leader confirms its leadership with a quorum round (ReadIndex) |
/// | `lease`        | `LeaseRead`           | the leader answers while its lease holds (bounded clock drift)     |
/// | `eventual`     | `EventualConsistency` | any node answers from its local state; may be stale               |
public enum ReadConsistency: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    case linearizable
    case lease
    case eventual

    /// Parses a query-string name (`?consistency=lease`), case-insensitively.
    public init?(queryName: String) {
        self.init(rawValue: queryName.lowercased())
    }

    /// Parses a config-file name (`default_policy = "LeaseRead"`), case-insensitively.
    public init?(configName: String) {
        let wanted = configName.lowercased()
        guard let match = Self.allCases.first(where: { $0.configName.lowercased() == wanted }) else {
            return nil
        }
        self = match
    }

    /// Parses either spelling: a query name or a config name.
    public init?(parsing text: String) {
        guard let value = Self(queryName: text) ?? Self(configName: text) else { return nil }
        self = value
    }

    /// The name used in the config file (`[raft.read_consistency] default_policy`).
    public var configName: String {
        switch self {
        case .linearizable: return "LinearizableRead"
        case .lease: return "LeaseRead"
        case .eventual: return "EventualConsistency"
        }
    }

    /// The query-string name, as sent on the wire.
    public var description: String { rawValue }
}
