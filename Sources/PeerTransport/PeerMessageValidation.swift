import Foundation
import NIOConcurrencyHelpers
import RaftCore

// MARK: - Who may speak

/// Which nodes this node takes peer traffic from, and who its leader is: published by the node (the shell knows the
/// configuration in force), read by every inbound connection on every frame.
///
/// Until the node publishes (``PeerTransport/admit(members:leader:)``), the transport's peer set stands in for the
/// members; the node's view replaces it for good at its first publication.
public struct PeerAdmission: Sendable, Equatable {
    /// Nodes whose Raft frames are delivered: voters, learners, departing nodes the leader still tells of their
    /// removal, and the leader this node follows (which may have been removed by an entry not yet committed).
    public var members: Set<NodeID>
    /// The leader this node follows, if any: the only node whose snapshot chunks are taken.
    public var leader: NodeID?

    public init(members: Set<NodeID>, leader: NodeID?) {
        self.members = members
        self.leader = leader
    }

    /// Whether non-member `node` may send this tunnelled request: only `POST /join` asking to add `node` itself,
    /// which is how a new node asks to be added before it is a member (from the joiner's outbound connection).
    public static func stranger(_ node: NodeID, mayForward request: TunnelledRequest) -> Bool {
        let path = request.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard request.method == "POST", path == "/join",
            let body = try? JSONSerialization.jsonObject(with: Data(request.body)) as? [String: Any],
            let joining = body["node_id"] as? NSNumber
        else { return false }
        return joining.uint64Value == node && joining.doubleValue == Double(node)
    }
}

/// Why a well-formed frame was refused before reaching the node. Counted by the transport
/// (``PeerTransport/refusals()``); the frame is dropped, and the connection is closed when no correct peer could have
/// sent it (``closesConnection``).
public enum PeerRefusal: Sendable, Hashable, CustomStringConvertible {
    /// A Raft frame or snapshot chunk from a node that is not a member (its hello named `node`).
    case notMember(NodeID)
    /// A Raft message whose `from` is not the node the connection's hello named.
    case spoofedSender(claimed: NodeID, hello: NodeID)
    /// A Raft message no correct node sends (``PeerMessageValidation``).
    case invalidMessage(String)
    /// A tunnelled request from a non-member other than `POST /join` for itself.
    case forwardNotAllowed(NodeID)
    /// A snapshot chunk from a node that is not the leader this node follows.
    case chunkNotFromLeader(NodeID)
    /// A chunk that does not continue the transfer in progress, fails its checksum, or exceeds the size cap: the
    /// transfer is dropped (the leader sends the snapshot again).
    case chunkDropped(String)

    /// A stable machine-readable code.
    public var code: String {
        switch self {
        case .notMember: return "not_member"
        case .spoofedSender: return "spoofed_sender"
        case .invalidMessage: return "invalid_message"
        case .forwardNotAllowed: return "forward_not_allowed"
        case .chunkNotFromLeader: return "chunk_not_from_leader"
        case .chunkDropped: return "chunk_dropped"
        }
    }

    /// A member's connection is kept when the refusal may come from a race with a configuration change (the node
    /// has not applied it yet); a spoofed or malformed message closes the connection.
    public var closesConnection: Bool {
        switch self {
        case .spoofedSender, .invalidMessage: return true
        case .notMember, .forwardNotAllowed, .chunkNotFromLeader, .chunkDropped: return false
        }
    }

    public var description: String {
        switch self {
        case .notMember(let node): return "node \(node) is not a member"
        case .spoofedSender(let claimed, let hello): return "message from \(claimed) on the connection of node \(hello)"
        case .invalidMessage(let why): return "invalid message: \(why)"
        case .forwardNotAllowed(let node): return "node \(node) is not a member and may only ask to join itself"
        case .chunkNotFromLeader(let node): return "snapshot chunk from node \(node), which is not the leader"
        case .chunkDropped(let why): return "snapshot transfer dropped: \(why)"
        }
    }
}

// MARK: - What may be said

/// Stateless checks of a decoded Raft message, run on the connection before the node sees it: everything a correct
/// sender always satisfies, so that no hostile but well-formed message reaches arithmetic or preconditions in the
/// core (which checks the state-dependent rules itself: see `RaftNode.acceptsTerm`).
public enum PeerMessageValidation {
    /// Why `message` (with `snapshotData` beside it) cannot come from a correct node, or `nil` if it could.
    public static func problem(with message: Message, snapshotData: [UInt8]?) -> String? {
        let term = message.term
        guard term < RaftNode.maxTerm else { return "term \(term) is beyond any real cluster's" }
        guard message.from != message.to else { return "a message from node \(message.from) to itself" }
        if case .installSnapshot = message.body {
            guard snapshotData != nil else { return "installSnapshot without its data" }
        } else if snapshotData != nil {
            return "snapshot data beside a \(message.body.kindName)"
        }
        let maxIndex = RaftNode.maxIndex
        switch message.body {
        case .requestVote(let lastIndex, let lastTerm, _, _):
            guard lastIndex < maxIndex, lastTerm <= term else { return "vote request with last entry \(lastTerm)/\(lastIndex)" }
        case .appendEntries(let prevIndex, let prevTerm, let entries, let commit, _):
            guard RaftNode.isWellFormedAppend(prevIndex: prevIndex, prevTerm: prevTerm, entries: entries, commit: commit, term: term)
            else {
                return "AppendEntries prev=\(prevTerm)/\(prevIndex) commit=\(commit) with \(entries.count) entries that "
                    + "do not follow it contiguously within term \(term)"
            }
        case .appendResponse(.success(let matchIndex), _):
            guard matchIndex < maxIndex else { return "append response match=\(matchIndex)" }
        case .appendResponse(.reject(let rejectedIndex, let conflictTerm, let conflictIndex), _):
            guard rejectedIndex < maxIndex, conflictIndex <= maxIndex, (conflictTerm ?? 0) <= term else {
                return "append rejection at \(rejectedIndex) hint \(conflictTerm.map(String.init) ?? "-")/\(conflictIndex)"
            }
        case .heartbeat(let commit, _):
            guard commit < maxIndex else { return "heartbeat commit=\(commit)" }
        case .installSnapshot(let meta):
            guard RaftNode.isWellFormedSnapshot(meta, term: term) else { return "snapshot metadata \(meta) in term \(term)" }
        case .readIndexResponse(_, let index?):
            guard index < maxIndex else { return "read index response index=\(index)" }
        case .voteResponse, .heartbeatResponse, .timeoutNow, .readIndex, .readIndexResponse:
            break
        }
        return nil
    }
}

extension Message.Body {
    /// The case name, for refusals and the fuzzer's counts.
    public var kindName: String {
        switch self {
        case .requestVote: return "requestVote"
        case .voteResponse: return "voteResponse"
        case .appendEntries: return "appendEntries"
        case .appendResponse: return "appendResponse"
        case .heartbeat: return "heartbeat"
        case .heartbeatResponse: return "heartbeatResponse"
        case .installSnapshot: return "installSnapshot"
        case .timeoutNow: return "timeoutNow"
        case .readIndex: return "readIndex"
        case .readIndexResponse: return "readIndexResponse"
        }
    }
}

/// The admission view shared by the transport and its inbound connections, and the refusal counts.
final class PeerAdmissionBox: Sendable {
    private struct State {
        var admission: PeerAdmission
        /// Whether the node has published its view; before that the transport's peer set stands in.
        var published = false
        var refusals: [String: Int] = [:]
    }

    private let state: NIOLockedValueBox<State>

    init(peers: Set<NodeID>) {
        state = NIOLockedValueBox(State(admission: PeerAdmission(members: peers, leader: nil)))
    }

    var current: PeerAdmission { state.withLockedValue { $0.admission } }

    func publish(_ admission: PeerAdmission) {
        state.withLockedValue {
            $0.admission = admission
            $0.published = true
        }
    }

    /// The transport's peer set changed: it stands in for the members until the node publishes.
    func peersChanged(_ peers: Set<NodeID>) {
        state.withLockedValue { if !$0.published { $0.admission.members = peers } }
    }

    func count(_ refusal: PeerRefusal) {
        state.withLockedValue { $0.refusals[refusal.code, default: 0] += 1 }
    }

    var refusals: [String: Int] { state.withLockedValue { $0.refusals } }
}
