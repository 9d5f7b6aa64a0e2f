import RaftCore
import Testing

/// The order `ReadyExecutor` runs a Ready in, as the node and the simulator both see it.
@Suite struct ReadyExecutorTests {
    final class Host: ReadyHost {
        var core: RaftNode
        var steps: [String] = []
        var completion: ((LogIndex?) -> Void)?

        init(_ core: RaftNode) { self.core = core }

        func readyTaken(_ rd: Ready) {
            if let soft = rd.softState { steps.append("role \(soft.role.rawValue)") }
        }
        func send(_ messages: [Message]) {
            if !messages.isEmpty { steps.append("send \(messages.count)") }
        }
        func persist(_ rd: Ready, _ kind: ReadyPersistence, completion: @escaping (LogIndex?) -> Void) {
            steps.append("persist \(kind == .full ? "full" : "commit") \(rd.entries.map(\.index))")
            if kind == .full { self.completion = completion }
        }
        func apply(_ rd: Ready) {
            guard !rd.committedEntries.isEmpty || !rd.readStates.isEmpty else { return }
            steps.append("apply \(rd.committedEntries.map(\.index)) synced \(core.syncedIndex)")
        }
        func readyDone() { steps.append("done") }

        func completePersist() {
            let completion = self.completion
            self.completion = nil
            completion?(nil)
        }
    }

    private func candidate() throws -> Host {
        var config = RaftConfig(id: 1, initialMembership: Membership(voters: [1, 2, 3]))
        config.preVote = false
        config.randomSeed = 1
        var core = try RaftNode(config: config, storage: MemoryStorage(), now: 0)
        core.campaign()
        return Host(core)
    }

    @Test func votesGoOutOnlyAfterTheTermAndVoteArePersisted() throws {
        let executor = ReadyExecutor()
        let host = try candidate()
        #expect(executor.run(host))
        #expect(host.steps == ["role candidate", "persist full []"])
        #expect(executor.persisting)
        // One Ready at a time: nothing is taken while the first is being persisted.
        #expect(!executor.run(host))
        host.completePersist()
        #expect(!executor.persisting)
        #expect(host.steps == ["role candidate", "persist full []", "send 2", "done"])
    }

    @Test func aLeaderReplicatesBeforeItsOwnWriteAndAppliesEarlyWhatWasAlreadyOnDisk() throws {
        let executor = ReadyExecutor()
        let host = try candidate()
        executor.run(host)
        host.completePersist()
        let term = host.core.term
        host.core.step(Message(from: 2, to: 1, term: term, body: .voteResponse(granted: true, preVote: false)))
        host.steps.removeAll()
        executor.run(host)
        // The new leader's empty entry goes to the followers before its own disk has it (early messages).
        #expect(host.steps == ["role leader", "send 2", "persist full [1]"])
        host.completePersist()
        #expect(host.steps.last == "done" && host.core.syncedIndex == 1, "step 4 reported the write")

        // Entry 1 acknowledged by a follower while entry 2 is proposed: 1 is committed and already on disk, so it
        // is applied before entry 2's write completes.
        _ = host.core.propose([RaftNode.Proposal(data: [1])])
        host.core.step(Message(from: 2, to: 1, term: term, body: .appendResponse(.success(matchIndex: 1), round: 0)))
        host.steps.removeAll()
        executor.run(host)
        #expect(host.steps.first == "send 2" || host.steps.first == "send 1")
        #expect(host.steps.contains("apply [1] synced 1"))
        let persistAt = try #require(host.steps.firstIndex { $0.hasPrefix("persist full [2]") })
        let applyAt = try #require(host.steps.firstIndex { $0.hasPrefix("apply [1]") })
        #expect(applyAt < persistAt && !host.steps.contains("done"), "applied early, before the write is even issued")
        host.completePersist()
        #expect(host.steps.last == "done")
        #expect(host.steps.filter { $0.hasPrefix("apply") }.count == 1, "not applied twice")
    }

    @Test func aCommitIndexMoveIsWrittenWithoutWaiting() throws {
        let executor = ReadyExecutor()
        let host = try candidate()
        executor.run(host)
        host.completePersist()
        let term = host.core.term
        host.core.step(Message(from: 2, to: 1, term: term, body: .voteResponse(granted: true, preVote: false)))
        executor.run(host)
        host.completePersist()
        host.steps.removeAll()
        host.core.step(Message(from: 2, to: 1, term: term, body: .appendResponse(.success(matchIndex: 1), round: 0)))
        executor.run(host)
        #expect(host.steps.contains("persist commit []"))
        #expect(host.steps.contains("apply [1] synced 1") && host.steps.last == "done")
        #expect(!executor.persisting)
    }
}
