/// Majority arithmetic (Raft §5.2, §5.4): tiny pure functions with table tests.
public enum Quorum {
    /// The number of votes that makes a majority of `voters` voters.
    public static func majority(_ voters: Int) -> Int { voters / 2 + 1 }

    /// The highest index that a majority of `voters` have reached, given each voter's acknowledged index
    /// (missing voters count as 0). Learners are never passed in. `nil` for an empty voter set.
    public static func committedIndex(voters: Set<NodeID>, acked: (NodeID) -> UInt64) -> UInt64? {
        guard !voters.isEmpty else { return nil }
        // Called after every acknowledgement: sorted in a stack buffer (insertion sort; clusters are small), no heap.
        return withUnsafeTemporaryAllocation(of: UInt64.self, capacity: voters.count) { buffer in
            var count = 0
            for voter in voters {
                var slot = count
                let value = acked(voter)
                while slot > 0, buffer[slot - 1] < value {
                    buffer[slot] = buffer[slot - 1]
                    slot -= 1
                }
                buffer[slot] = value
                count += 1
            }
            return buffer[majority(count) - 1]
        }
    }

    /// The outcome of an election given the voters' answers so far.
    public enum VoteResult: Sendable, Equatable { case pending, won, lost }

    public static func voteResult(voters: Set<NodeID>, votes: [NodeID: Bool]) -> VoteResult {
        let needed = majority(voters.count)
        var granted = 0
        var rejected = 0
        for voter in voters {
            switch votes[voter] {
            case true?: granted += 1
            case false?: rejected += 1
            case nil: break
            }
        }
        if granted >= needed { return .won }
        if voters.count - rejected < needed { return .lost }
        return .pending
    }
}
