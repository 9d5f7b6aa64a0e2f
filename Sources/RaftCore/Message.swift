/// A message between two Raft nodes. Every message carries the sender's term (Raft §5.1).
public struct Message: Sendable, Equatable, CustomStringConvertible {
    public var from: NodeID
    public var to: NodeID
    public var term: Term
    public var body: Body

    public init(from: NodeID, to: NodeID, term: Term, body: Body) {
        self.from = from
        self.to = to
        self.term = term
        self.body = body
    }

    public enum Body: Sendable, Equatable {
        /// RequestVote (Raft §5.2) or, with `preVote`, the pre-vote probe (thesis §9.6), whose `term` is the term the
        /// candidate *would* use. `transfer` marks an election started by TimeoutNow: it bypasses check-quorum's
        /// leader stickiness (thesis §3.10).
        case requestVote(lastIndex: LogIndex, lastTerm: Term, preVote: Bool, transfer: Bool)
        case voteResponse(granted: Bool, preVote: Bool)
        /// AppendEntries (Raft §5.3). `round` is the leader's read/lease round, echoed in the response.
        case appendEntries(prevIndex: LogIndex, prevTerm: Term, entries: [Entry], commit: LogIndex, round: UInt64)
        case appendResponse(AppendResult, round: UInt64)
        /// An empty AppendEntries that carries no consistency check: it asserts leadership, advances the follower's
        /// commit (never beyond what the leader knows the follower has) and confirms read rounds.
        case heartbeat(commit: LogIndex, round: UInt64)
        case heartbeatResponse(round: UInt64)
        /// InstallSnapshot (Raft §7). The bulk data travels beside the message; the shell attaches and stages it.
        case installSnapshot(SnapshotMetadata)
        /// Tells the recipient to start an election at once (leadership transfer, thesis §3.10).
        case timeoutNow
        /// Follower reads (thesis §6.4): a follower asks the leader for a read index on behalf of a batch of reads.
        /// With `lease` the leader may answer at once under a valid lease; otherwise it confirms its leadership with
        /// a heartbeat round first. The shell ticks the leader's clock before stepping one (a paused process must not
        /// trust a lease that expired while it slept).
        case readIndex(batch: UInt64, lease: Bool)
        /// The leader's answer: serve the batch once the follower has applied `index`; `nil` refuses it (not the
        /// leader, a transfer in progress, or the sender is not a member).
        case readIndexResponse(batch: UInt64, index: LogIndex?)
    }

    public enum AppendResult: Sendable, Equatable {
        /// The follower's log matches the leader's through `matchIndex`.
        case success(matchIndex: LogIndex)
        /// The consistency check failed at `rejectedIndex`. Fast backtracking hints (thesis §5.3): the follower's
        /// term at that index (`nil` when its log is shorter) and the first index it holds of that term, or its
        /// `lastIndex + 1` when shorter.
        case reject(rejectedIndex: LogIndex, conflictTerm: Term?, conflictIndex: LogIndex)
    }

    /// A stable one-line description, used by logs and golden tests.
    public var description: String {
        let head = "\(from)->\(to) t\(term)"
        switch body {
        case .requestVote(let li, let lt, let pre, let transfer):
            return "\(head) \(pre ? "PreVote" : "Vote") last=\(lt)/\(li)\(transfer ? " transfer" : "")"
        case .voteResponse(let granted, let pre):
            return "\(head) \(pre ? "PreVoteResp" : "VoteResp") \(granted ? "granted" : "rejected")"
        case .appendEntries(let pi, let pt, let entries, let commit, let round):
            let list = entries.map { "[\($0.description)]" }.joined(separator: " ")
            return "\(head) App prev=\(pt)/\(pi) commit=\(commit) r\(round) entries=\(entries.count)"
                + (list.isEmpty ? "" : " \(list)")
        case .appendResponse(.success(let match), let round):
            return "\(head) AppResp match=\(match) r\(round)"
        case .appendResponse(.reject(let index, let ct, let ci), let round):
            return "\(head) AppResp reject=\(index) hint=\(ct.map(String.init) ?? "-")/\(ci) r\(round)"
        case .heartbeat(let commit, let round):
            return "\(head) Heartbeat commit=\(commit) r\(round)"
        case .heartbeatResponse(let round):
            return "\(head) HeartbeatResp r\(round)"
        case .installSnapshot(let meta):
            return "\(head) Snapshot \(meta)"
        case .timeoutNow:
            return "\(head) TimeoutNow"
        case .readIndex(let batch, let lease):
            return "\(head) ReadIndex b\(batch)\(lease ? " lease" : "")"
        case .readIndexResponse(let batch, let index):
            return "\(head) ReadIndexResp b\(batch) \(index.map { "index=\($0)" } ?? "refused")"
        }
    }
}
