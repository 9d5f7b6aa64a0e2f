/// Why a configuration could not be loaded. The node prints `description` to stderr and exits with `exitCode`.
///
/// `description` has one of three shapes, chosen so that editors and humans can jump to the problem:
/// - `FILE:LINE:COL: message` for a TOML syntax error;
/// - `SOURCE: section.key: message` for a key that is unknown, has the wrong type or an invalid value, where
///   `SOURCE` is the file, or `env NAME` when the value came from the environment variable `NAME`;
/// - `FILE: message` when the file cannot be read at all.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The broad reason, for callers and tests that branch on it; the message carries the details.
    public enum Kind: Sendable, Equatable {
        /// The file is missing or unreadable.
        case unreadable
        /// The file is not valid TOML.
        case syntax
        /// A key (or section, or environment override) the schema does not have.
        case unknownKey
        /// A value of the wrong TOML type, or an override that does not parse as the key's type.
        case wrongType
        /// A well-typed value that breaks a rule (range, format, consistency with other keys).
        case invalidValue
    }

    /// `EX_CONFIG` from `sysexits.h`: the exit status of a node that refuses its configuration.
    public static let exitCode: Int32 = 78

    public var kind: Kind
    /// The file path, or `env NAME` for an environment override.
    public var source: String
    /// The dotted key, e.g. `raft.election.election_timeout_min` or `cluster.initial_cluster[1].id`.
    public var keyPath: String?
    /// 1-based line of a syntax error.
    public var line: Int?
    /// 1-based column of a syntax error.
    public var column: Int?
    public var message: String

    public init(
        kind: Kind, source: String, keyPath: String? = nil, line: Int? = nil, column: Int? = nil, message: String
    ) {
        self.kind = kind
        self.source = source
        self.keyPath = keyPath
        self.line = line
        self.column = column
        self.message = message
    }

    /// Always `ConfigError.exitCode` (78).
    public var exitCode: Int32 { Self.exitCode }

    public var description: String {
        if let line, let column {
            return "\(source):\(line):\(column): \(message)"
        }
        if let keyPath {
            return "\(source): \(keyPath): \(message)"
        }
        return "\(source): \(message)"
    }
}
