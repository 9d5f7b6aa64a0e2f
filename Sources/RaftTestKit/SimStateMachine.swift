import RaftCore

/// The simulator's state machine: a map of registers with a client session table (thesis §6.3), so that the
/// simulation exercises exactly-once application of retried commands.
///
/// Commands are UTF-8 text `key=value`. Values are unique per client write, which lets the read checker tell which
/// write a read observed.
public struct SimStateMachine: Sendable, Equatable {
    public private(set) var values: [String: String] = [:]
    /// Index of the write that produced the current value of each key.
    public private(set) var writeIndex: [String: LogIndex] = [:]
    public private(set) var appliedIndex: LogIndex = 0
    public private(set) var appliedTerm: Term = 0
    /// clientID -> last applied sequence number.
    public private(set) var sessions: [UInt64: UInt64] = [:]
    /// Commands skipped as duplicates (for tests).
    public private(set) var duplicatesSkipped = 0

    public init() {}

    public static func command(key: String, value: String) -> [UInt8] { Array("\(key)=\(value)".utf8) }

    public static func parse(_ data: [UInt8]) -> (key: String, value: String)? {
        guard let eq = data.firstIndex(of: UInt8(ascii: "=")) else { return nil }
        return (String(decoding: data[..<eq], as: UTF8.self), String(decoding: data[(eq + 1)...], as: UTF8.self))
    }

    /// Applies one committed entry. Entries must arrive in index order with no gaps.
    public mutating func apply(_ entry: Entry) {
        precondition(entry.index == appliedIndex + 1, "apply out of order: \(entry.index) after \(appliedIndex)")
        appliedIndex = entry.index
        appliedTerm = entry.term
        guard entry.kind == .normal, let (key, value) = Self.parse(entry.data) else { return }
        if entry.clientID != 0 {
            if let last = sessions[entry.clientID], entry.sequence <= last {
                duplicatesSkipped += 1
                return
            }
            sessions[entry.clientID] = entry.sequence
        }
        values[key] = value
        writeIndex[key] = entry.index
    }

    /// Skips to a snapshot image.
    public mutating func restore(_ image: SimStateMachine) { self = image }
}
