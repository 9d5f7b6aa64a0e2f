/// Settings of one Raft node. All durations are milliseconds of the injected clock (`RaftNode.tick(now:)`).
public struct RaftConfig: Sendable, Equatable {
    /// This node's id (never 0).
    public var id: NodeID
    /// The configuration used until the log or a snapshot says otherwise (static bootstrap).
    public var initialMembership: Membership
    /// Election timeouts are drawn uniformly from `[electionTimeoutMin, electionTimeoutMax)` (Raft §5.2).
    public var electionTimeoutMin: UInt64 = 1000
    public var electionTimeoutMax: UInt64 = 2000
    /// A leader sends heartbeats this often (`rpc_append_entries_clock_in_ms`).
    public var heartbeatInterval: UInt64 = 100
    /// How long a quorum acknowledgement keeps the leader's lease; `0` disables lease reads. Must be shorter than
    /// `electionTimeoutMin - clockDriftMargin` (see `validate()`).
    public var leaseDuration: UInt64 = 500
    /// Allowance for clock-rate differences between nodes over one election timeout.
    public var clockDriftMargin: UInt64 = 100
    /// Batch size of one AppendEntries (`append_entries_max_entries_per_replication`).
    public var maxEntriesPerMessage: Int = 5000
    /// Byte budget of one AppendEntries (payload bytes; at least one entry is always sent).
    public var maxBytesPerMessage: Int = 4 << 20
    /// In-flight AppendEntries per follower in the replicate state (pipelining window).
    public var maxInflightMessages: Int = 256
    /// Pre-vote (thesis §9.6): a candidate first asks whether it could win before it disrupts the term.
    public var preVote: Bool = true
    /// Check-quorum (thesis §6.2): a leader that has not heard from a quorum for `electionTimeoutMin` steps down,
    /// and a node that heard from a leader within `electionTimeoutMin` ignores vote requests. Leases need it.
    public var checkQuorum: Bool = true
    /// Followers (and learners) serve lease and linearizable reads themselves once the leader has given them a read
    /// index (thesis §6.4); without it `readIndex` on a follower fails with `notLeader`.
    public var followerReads: Bool = true
    /// Seed of the node's random number generator (election jitter).
    public var randomSeed: UInt64 = 0
    /// Test only: a deliberate safety bug, to prove that the simulator's checkers catch it. It has an effect only in
    /// builds compiled with `PLANTED_BUGS` (debug builds, and `make sim|chaos PLANT=...`); a release build ignores it.
    public var plantedBug: PlantedBug?

    public init(id: NodeID, initialMembership: Membership) {
        self.id = id
        self.initialMembership = initialMembership
    }

    public var leaseReadsEnabled: Bool { leaseDuration > 0 && checkQuorum }

    /// Whether `bug` is planted; `false` in builds without `PLANTED_BUGS`, where the checks compile away.
    @inline(__always) func planted(_ bug: PlantedBug) -> Bool {
        #if PLANTED_BUGS
            return plantedBug == bug
        #else
            return false
        #endif
    }

    /// Whether this build can plant bugs in the core (compiled with `PLANTED_BUGS`: debug builds and the planted
    /// release builds of `make sim|chaos PLANT=...`).
    public static var plantedBugsCompiled: Bool {
        #if PLANTED_BUGS
            return true
        #else
            return false
        #endif
    }

    /// Throws a `ConfigurationError` naming the first problem.
    public func validate() throws(ConfigurationError) {
        guard id != 0 else { throw ConfigurationError("node id must not be 0") }
        guard electionTimeoutMin > 0, electionTimeoutMin < electionTimeoutMax else {
            throw ConfigurationError("election timeout min (\(electionTimeoutMin)) must be below max (\(electionTimeoutMax))")
        }
        guard heartbeatInterval > 0, heartbeatInterval < electionTimeoutMin else {
            throw ConfigurationError("heartbeat interval (\(heartbeatInterval)) must be below election timeout min")
        }
        if leaseDuration > 0 {
            guard leaseDuration + clockDriftMargin < electionTimeoutMin else {
                throw ConfigurationError(
                    "lease duration (\(leaseDuration)) must be below election timeout min (\(electionTimeoutMin)) "
                        + "minus the clock drift margin (\(clockDriftMargin))")
            }
        }
        guard maxEntriesPerMessage > 0, maxBytesPerMessage > 0, maxInflightMessages > 0 else {
            throw ConfigurationError("message limits must be positive")
        }
    }
}

/// Deliberate bugs the simulation must catch (see `RaftConfig.plantedBug`).
public enum PlantedBug: String, Sendable, Equatable, CaseIterable {
    /// Commit by counting replicas of an entry from an earlier term (violates Raft §5.4.2, Figure 8).
    case commitOldTermEntries = "commit-old-term"
    /// Confirm ReadIndex reads without the quorum round (violates thesis §6.4 step 3).
    case readIndexWithoutQuorum = "read-without-quorum"
    /// Grant votes without the up-to-date check (violates Raft §5.4.1).
    case voteWithoutLogCheck = "vote-without-log-check"
    /// Judge the lease by the clock of the last tick instead of the request's (a paused process trusts an expired
    /// lease; thesis §6.4.1 assumes the clock is read when the read is served).
    case leaseWithStaleClock = "lease-stale-clock"
    /// Answer a follower's read-index request at once, with neither a valid lease nor a quorum round (a deposed
    /// leader that has not noticed hands its stale commit index to a follower, which serves a stale read).
    case followerReadWithoutConfirmation = "follower-read-unconfirmed"
    /// Storage bugs, planted in the simulator's disk model (the core is unchanged): the WAL's fsync does nothing,
    /// so acknowledged entries live only in the page cache and a power cut drops them.
    case skipWALFsync = "skip-wal-fsync"
    /// Renames and file creations are not made durable by a directory fsync: a power cut forgets a saved snapshot
    /// file while the (fsynced) log already refers to it.
    case skipDirFsync = "skip-dir-fsync"
    /// MemFirst as it was before issue #15: a follower acknowledges entries after write(2), before fsync, so a power
    /// cut of a follower that was counted toward commit loses an acknowledged write.
    case memFirstAckBeforeFsync = "memfirst-ack-before-fsync"

    /// Bugs planted in the storage model rather than the core.
    public var isStorageBug: Bool {
        switch self {
        case .skipWALFsync, .skipDirFsync, .memFirstAckBeforeFsync: return true
        default: return false
        }
    }
}

public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Random numbers

/// SplitMix64: a tiny, fast, seedable generator. Deterministic for a given seed on every platform.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
