/// Identifiers and plain value types shared by the core, the storage and the shell.
///
/// Everything here is a value type with a stable one-line `description`, used by logs and golden tests.

public typealias NodeID = UInt64
public typealias Term = UInt64
public typealias LogIndex = UInt64

// MARK: - Log entries

/// What an entry carries. The core interprets only `.config`; `.normal` payloads are opaque.
public enum EntryKind: UInt8, Sendable, Equatable {
    /// An application command (opaque bytes for the state machine).
    case normal = 0
    /// The empty entry a new leader appends to commit entries of earlier terms (Raft §5.4.2, §8).
    case noop = 1
    /// A membership change; `data` is an encoded `MembershipChange`. Takes effect when appended (thesis §4.1).
    case config = 2
}

/// One log entry. `clientID` and `sequence` are passed through untouched so that the state machine can apply a
/// retried command exactly once (Raft thesis §6.3); `0` means "no session".
public struct Entry: Sendable, Equatable, CustomStringConvertible {
    public var term: Term
    public var index: LogIndex
    public var kind: EntryKind
    public var clientID: UInt64
    public var sequence: UInt64
    public var data: [UInt8]

    public init(
        term: Term, index: LogIndex, kind: EntryKind = .normal, clientID: UInt64 = 0, sequence: UInt64 = 0,
        data: [UInt8] = []
    ) {
        self.term = term
        self.index = index
        self.kind = kind
        self.clientID = clientID
        self.sequence = sequence
        self.data = data
    }

    public var description: String {
        switch kind {
        case .noop: return "\(term)/\(index) noop"
        case .config:
            let change = ConfigChangeRecord(encoded: data).map { "\($0.change) -> \($0.result)" } ?? "invalid"
            return "\(term)/\(index) config \(change)"
        case .normal:
            let text = String(decoding: data.prefix(24), as: UTF8.self)
            let session = clientID == 0 ? "" : " c\(clientID)#\(sequence)"
            return "\(term)/\(index) \"\(text)\"\(session)"
        }
    }
}

// MARK: - Hard state

/// The state that must be on stable storage before any message that depends on it is sent (Raft §5.1, Figure 2).
public struct HardState: Sendable, Equatable, CustomStringConvertible {
    public var term: Term
    public var vote: NodeID?
    public var commit: LogIndex

    public init(term: Term = 0, vote: NodeID? = nil, commit: LogIndex = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }

    public var description: String { "term=\(term) vote=\(vote.map(String.init) ?? "-") commit=\(commit)" }
}

// MARK: - Membership

/// The voting and non-voting members of a configuration. Learners receive the log but never vote and never count
/// toward a quorum.
public struct Membership: Sendable, Equatable, CustomStringConvertible {
    public var voters: Set<NodeID>
    public var learners: Set<NodeID>
    /// Where members listen (`host:port`), replicated with the configuration so that every node, including one that
    /// joins later, can dial every other. The core never interprets it; members of a configuration that was
    /// bootstrapped from config files may be missing until the next change (the shell falls back to its files).
    public var addresses: [NodeID: String]

    public init(voters: Set<NodeID> = [], learners: Set<NodeID> = [], addresses: [NodeID: String] = [:]) {
        self.voters = voters
        self.learners = learners
        self.addresses = addresses
    }

    public var members: Set<NodeID> { voters.union(learners) }
    public func contains(_ id: NodeID) -> Bool { voters.contains(id) || learners.contains(id) }

    public var description: String {
        let v = voters.sorted().map(String.init).joined(separator: ",")
        let l = learners.sorted().map(String.init).joined(separator: ",")
        return l.isEmpty ? "voters=(\(v))" : "voters=(\(v)) learners=(\(l))"
    }

    /// The configuration after `change`, or why it cannot be applied.
    public func applying(_ change: MembershipChange) -> Result<Membership, MembershipError> {
        var next = self
        switch change {
        case .addLearner(let id):
            if contains(id) { return .failure(.alreadyMember(id)) }
            next.learners.insert(id)
        case .promote(let id):
            guard learners.contains(id) else { return .failure(.notALearner(id)) }
            next.learners.remove(id)
            next.voters.insert(id)
        case .remove(let id):
            guard contains(id) else { return .failure(.notAMember(id)) }
            if voters == [id] { return .failure(.lastVoter(id)) }
            next.voters.remove(id)
            next.learners.remove(id)
            next.addresses[id] = nil
        }
        return .success(next)
    }

    /// The address table as bytes: a u32 count, then per member (ascending id) a u64 id, a u16 length and that many
    /// UTF-8 bytes. Shared by every encoding of a membership (config entries, snapshots, the WAL, the peer wire).
    public var encodedAddresses: [UInt8] {
        var bytes: [UInt8] = []
        let rows = addresses.sorted { $0.key < $1.key }.filter { $0.value.utf8.count <= Membership.maxAddressBytes }
        appendBigEndian(UInt64(rows.count), width: 4, to: &bytes)
        for (id, address) in rows {
            appendBigEndian(id, width: 8, to: &bytes)
            appendBigEndian(UInt64(address.utf8.count), width: 2, to: &bytes)
            bytes.append(contentsOf: address.utf8)
        }
        return bytes
    }

    /// Reads an `encodedAddresses` table at `offset`; `nil` (offset unspecified) if it is truncated or implausible.
    public static func decodeAddresses(_ bytes: [UInt8], at offset: inout Int) -> [NodeID: String]? {
        guard let count = readBigEndian(bytes, at: &offset, width: 4), count <= 10_000 else { return nil }
        var table: [NodeID: String] = [:]
        for _ in 0..<count {
            guard let id = readBigEndian(bytes, at: &offset, width: 8),
                let length = readBigEndian(bytes, at: &offset, width: 2), length <= UInt64(maxAddressBytes),
                offset + Int(length) <= bytes.count
            else { return nil }
            guard let text = String(validating: bytes[offset..<(offset + Int(length))], as: UTF8.self) else {
                return nil
            }
            table[id] = text
            offset += Int(length)
        }
        return table
    }

    /// Longer addresses are not replicated.
    public static let maxAddressBytes = 1024
}

/// A single-server membership change (Raft thesis §4.1). Only one may be uncommitted at a time.
public enum MembershipChange: Sendable, Equatable, CustomStringConvertible {
    case addLearner(NodeID)
    case promote(NodeID)
    case remove(NodeID)

    public var node: NodeID {
        switch self {
        case .addLearner(let id), .promote(let id), .remove(let id): return id
        }
    }

    public var description: String {
        switch self {
        case .addLearner(let id): return "add-learner \(id)"
        case .promote(let id): return "promote \(id)"
        case .remove(let id): return "remove \(id)"
        }
    }

    /// Nine bytes: a tag and the node id, big-endian.
    public var encoded: [UInt8] {
        let tag: UInt8
        switch self {
        case .addLearner: tag = 1
        case .promote: tag = 2
        case .remove: tag = 3
        }
        var bytes: [UInt8] = [tag]
        for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: node >> UInt64(shift))) }
        return bytes
    }

    public init?(encoded bytes: [UInt8]) {
        guard bytes.count == 9 else { return nil }
        var id: UInt64 = 0
        for b in bytes[1...] { id = id << 8 | UInt64(b) }
        switch bytes[0] {
        case 1: self = .addLearner(id)
        case 2: self = .promote(id)
        case 3: self = .remove(id)
        default: return nil
        }
    }
}

public enum MembershipError: Error, Sendable, Equatable, CustomStringConvertible {
    case alreadyMember(NodeID)
    case notALearner(NodeID)
    case notAMember(NodeID)
    case lastVoter(NodeID)

    public var description: String {
        switch self {
        case .alreadyMember(let id): return "node \(id) is already a member"
        case .notALearner(let id): return "node \(id) is not a learner"
        case .notAMember(let id): return "node \(id) is not a member"
        case .lastVoter(let id): return "node \(id) is the last voter"
        }
    }
}

// MARK: - Snapshots

/// Describes a snapshot of the state machine: everything up to and including `index` is in it. The bulk data is
/// the shell's business; the core only reasons about the metadata.
public struct SnapshotMetadata: Sendable, Equatable, CustomStringConvertible {
    public var index: LogIndex
    public var term: Term
    public var membership: Membership

    public init(index: LogIndex, term: Term, membership: Membership) {
        self.index = index
        self.term = term
        self.membership = membership
    }

    public var description: String { "snapshot@\(term)/\(index) \(membership)" }
}

/// The payload of a configuration entry: the change and the whole configuration it produces. Carrying the result
/// makes a node's view independent of the configuration it booted with: a learner that joins long after bootstrap
/// replays the log and lands on the same membership as everyone else.
public struct ConfigChangeRecord: Sendable, Equatable, CustomStringConvertible {
    public var change: MembershipChange
    public var result: Membership

    public init(change: MembershipChange, result: Membership) {
        self.change = change
        self.result = result
    }

    public var description: String { "\(change) -> \(result)" }

    /// `change` (9 bytes), then voters and learners as u32 counts of big-endian u64 ids, sorted, then (optional,
    /// absent in records written before addresses were replicated) the address table.
    public var encoded: [UInt8] {
        var bytes = change.encoded
        for set in [result.voters, result.learners] {
            let ids = set.sorted()
            appendBigEndian(UInt64(ids.count), width: 4, to: &bytes)
            for id in ids { appendBigEndian(id, width: 8, to: &bytes) }
        }
        if !result.addresses.isEmpty { bytes.append(contentsOf: result.encodedAddresses) }
        return bytes
    }

    public init?(encoded bytes: [UInt8]) {
        guard bytes.count >= 17, let change = MembershipChange(encoded: Array(bytes[0..<9])) else { return nil }
        var offset = 9
        var sets: [Set<NodeID>] = []
        for _ in 0..<2 {
            guard let count = readBigEndian(bytes, at: &offset, width: 4), count <= 10_000 else { return nil }
            var ids = Set<NodeID>()
            for _ in 0..<count {
                guard let id = readBigEndian(bytes, at: &offset, width: 8) else { return nil }
                ids.insert(id)
            }
            sets.append(ids)
        }
        var addresses: [NodeID: String] = [:]
        if offset < bytes.count {
            guard let table = Membership.decodeAddresses(bytes, at: &offset) else { return nil }
            addresses = table
        }
        guard offset == bytes.count, sets[0].isDisjoint(with: sets[1]) else { return nil }
        self.change = change
        self.result = Membership(voters: sets[0], learners: sets[1], addresses: addresses)
    }
}

@inline(__always)
func appendBigEndian(_ value: UInt64, width: Int, to bytes: inout [UInt8]) {
    for i in stride(from: width - 1, through: 0, by: -1) { bytes.append(UInt8(truncatingIfNeeded: value >> (8 * UInt64(i)))) }
}

@inline(__always)
func readBigEndian(_ bytes: [UInt8], at offset: inout Int, width: Int) -> UInt64? {
    guard offset + width <= bytes.count else { return nil }
    var value: UInt64 = 0
    for i in 0..<width { value = value << 8 | UInt64(bytes[offset + i]) }
    offset += width
    return value
}
