import ClusterAPI
import Foundation
import HTTPClient
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Membership with real processes: learners that join on start, promotion once caught up, removal (of the leader
/// too), leadership transfer, and the single-node bootstrap grown to three. Every test ends by reading back each
/// acknowledged write.
@Suite(
    "dnode membership (processes)", .serialized, .tags(.cluster),
    .enabled(if: ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"].map { $0.isEmpty || $0 == "0" } ?? true)
)
struct MembershipTests {
    @Test("3 nodes, join 4 and 5 while writes stream in, promote both, kill any two: writes continue", .tags(.faults))
    func growToFiveAndSurviveTwoFailures() async throws {
        var options = LocalCluster.Options()
        options.joiners = [4, 5]
        try await withLocalCluster(nodes: 5, options: options, start: false) { cluster in
            try await cluster.start([1, 2, 3])
            try await cluster.waitForLeader(among: [1, 2, 3], requireMajority: true)
            let writes = WriteLog()
            let writer = Task { await runWriter(cluster: cluster, log: writes, prefix: "g", among: [1, 2, 3]) }
            try await waitFor("the first acknowledged writes", timeout: .seconds(5)) { writes.ackCount >= 20 }

            try await cluster.start([4, 5])
            for id in [4, 5] {
                try await waitForMember(cluster, id, role: .learner, via: 1)
                let index = try await promoteWhenCaughtUp(cluster, id, via: 2)
                #expect(index > 0)
            }
            let voters = try await waitFor("five voters everywhere", timeout: .seconds(5)) { () async -> [UInt64]? in
                let all = await cluster.statuses()
                let views = Set(all.values.map(\.voters))
                return all.count == 5 && views == [[1, 2, 3, 4, 5]] ? [1, 2, 3, 4, 5] : nil
            }
            #expect(voters == [1, 2, 3, 4, 5])

            // Kill two, the leader among them: three of five voters remain, a quorum.
            let leader = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let other = [1, 2, 3, 4, 5].first { $0 != leader }!
            try await cluster.crash(leader)
            try await cluster.crash(other)
            let survivors = [1, 2, 3, 4, 5].filter { $0 != leader && $0 != other }
            let acksAtKill = writes.ackCount
            var probe = 0
            try await waitFor("a write through the survivors \(survivors)", timeout: .seconds(8)) { () async -> Bool in
                probe += 1
                let key = "g-probe-\(probe)"
                let client = cluster.client(survivors[probe % survivors.count]).withTimeout(.seconds(1))
                guard let response = try? await client.put(key, "p"), response.status == 200 else { return false }
                writes.recordAck(key: key, value: "p", node: client.nodeID)
                return true
            }
            writes.requestStop()
            await writer.value
            #expect(writes.ackCount > acksAtKill)
            try await expectNoLostWrites(writes, cluster: cluster, readers: survivors)
        }
    }

    @Test("a learner joining after the log was compacted catches up by a chunked snapshot, then by log")
    func learnerCatchesUpBySnapshot() async throws {
        var options = LocalCluster.Options()
        options.joiners = [4]
        options.maxLogEntriesBeforeSnapshot = 100
        options.retainedLogEntries = 20
        try await withLocalCluster(nodes: 4, options: options, start: false) { cluster in
            try await cluster.start([1, 2, 3])
            let leader = Int(try await cluster.waitForLeader(among: [1, 2, 3], requireMajority: true).nodeID)
            // 4 KiB values: the snapshot (about 1.6 MiB) is larger than one chunk, so it travels in pieces.
            let padding = String(repeating: "x", count: 4096)
            for i in 0..<400 { _ = try await cluster.client(leader).putOK("s\(i)", "v\(i)" + padding) }
            let compacted = try await waitFor("the leader to compact its log", timeout: .seconds(5)) {
                () async throws -> NodeStatus? in
                let status = try await cluster.status(leader)
                return status.snapshotIndex >= 100 ? status : nil
            }

            try await cluster.start([4])
            try await waitForMember(cluster, 4, role: .learner, via: leader)
            let target = try await cluster.status(leader).commitIndex
            let learner = try await waitFor("node 4 to apply up to \(target)", timeout: .seconds(10)) {
                () async throws -> NodeStatus? in
                let status = try await cluster.status(4)
                return status.appliedIndex >= target ? status : nil
            }
            // It could not have got the compacted prefix from the log: a snapshot was installed.
            #expect(learner.snapshotIndex >= compacted.snapshotIndex, "node 4: \(learner)")
            #expect(learner.role == .learner)
            #expect(try await cluster.client(4).value(of: "s0", consistency: .eventual) == "v0" + padding)
            #expect(try await cluster.client(4).value(of: "s399", consistency: .eventual) == "v399" + padding)

            // Then by log: later writes reach it without another snapshot.
            for i in 400..<430 { _ = try await cluster.client(leader).putOK("s\(i)", "v\(i)") }
            let after = try await cluster.status(leader).commitIndex
            try await waitFor("node 4 to apply the new entries", timeout: .seconds(5)) {
                try await cluster.status(4).appliedIndex >= after
            }
            #expect(try await cluster.client(4).value(of: "s429", consistency: .eventual) == "v429")
        }
    }

    @Test("promote before catch-up is refused with progress; retried until caught up it succeeds", .tags(.faults))
    func promoteRefusedUntilCaughtUp() async throws {
        var options = LocalCluster.Options()
        options.joiners = [4]
        try await withLocalCluster(nodes: 4, options: options, start: false) { cluster in
            try await cluster.start([1, 2, 3])
            let leader = Int(try await cluster.waitForLeader(among: [1, 2, 3], requireMajority: true).nodeID)
            try await cluster.start([4])
            try await waitForMember(cluster, 4, role: .learner, via: leader)
            // Freeze the learner, and let the log run away from it.
            cluster.pause(4)
            for i in 0..<300 { _ = try await cluster.client(leader).putOK("p\(i)", "v\(i)") }
            let refused = try await membershipChange(cluster, "/promote", node: 4, via: leader)
            #expect(refused.status == 409, "\(refused)")
            let error = try #require(try? WireJSON.decode(APIErrorEnvelope.self, from: refused.body).error)
            #expect(error.code == .notCaughtUp)
            let progress = try #require(error.progress, "not_caught_up carries the learner's progress")
            #expect(progress.lagEntries >= 300, "\(progress)")
            #expect(progress.leaderLastIndex >= progress.matchIndex + 300)

            cluster.resume(4)
            _ = try await promoteWhenCaughtUp(cluster, 4, via: leader)
            let status = try await waitFor("node 4 to know it is a voter", timeout: .seconds(5)) {
                () async throws -> NodeStatus? in
                let status = try await cluster.status(4)
                return status.voters.contains(4) ? status : nil
            }
            #expect(status.role == .follower || status.role == .leader)
            // Promoting a voter again is a no-op success.
            #expect(try await membershipChange(cluster, "/promote", node: 4, via: leader).status == 200)
        }
    }

    @Test("transfer leadership to a chosen node; remove the leader; remove a follower; the last voter stays")
    func transferAndRemove() async throws {
        try await withLocalCluster(nodes: 3) { cluster in
            let first = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let writes = WriteLog()
            for i in 0..<20 { try await ackedPut(cluster, writes, "t\(i)", via: cluster.ids[i % 3]) }

            // Transfer to a chosen follower, asked through the other follower.
            let chosen = cluster.ids.first { $0 != first }!
            let asker = cluster.ids.first { $0 != first && $0 != chosen }!
            let transfer = try await cluster.client(asker).send(
                "POST", "/transfer-leader", body: try WireJSON.encode(TransferLeaderRequest(nodeID: UInt64(chosen))))
            #expect(transfer.status == 200, "\(transfer)")
            let leader = try await cluster.waitForLeader(requireMajority: true)
            #expect(Int(leader.nodeID) == chosen)

            // Remove the leader itself: it answers once the change commits, then steps down. A leader that has not
            // heard from its followers yet refuses (409: it cannot tell that the change would commit; nothing was
            // proposed), more often now that MemFirst followers answer after their fsync: ask again then.
            let removeLeader = try await waitFor("node \(chosen) to accept its own removal", timeout: .seconds(5)) {
                () async throws -> HTTPResponse? in
                let response = try await membershipChange(cluster, "/remove", node: chosen, via: chosen)
                return response.status == 409 && response.bodyText.contains("reachable") ? nil : response
            }
            #expect(removeLeader.status == 200, "\(removeLeader)")
            let remaining = cluster.ids.filter { $0 != chosen }
            let next = try await cluster.waitForLeader(timeout: .seconds(5), among: remaining, requireMajority: true)
            #expect(next.voters.map(Int.init).sorted() == remaining.sorted())
            let removed = try await waitFor("node \(chosen) to say it was removed", timeout: .seconds(3)) {
                () async throws -> NodeStatus? in
                let status = try await cluster.status(chosen)
                return status.role == .removed ? status : nil
            }
            #expect(!removed.voters.contains(UInt64(chosen)))
            let refusedWrite = try await cluster.client(chosen).put("t-x", "x")
            #expect(refusedWrite.status == 503, "a removed node serves nothing: \(refusedWrite)")
            let health = try await cluster.client(chosen).health()
            #expect(health.status != 200)
            for i in 20..<30 { try await ackedPut(cluster, writes, "t\(i)", via: remaining[i % 2]) }

            // Remove a follower: two voters left, then one; the last voter cannot be removed.
            let follower = remaining.first { $0 != Int(next.nodeID) }!
            let removeFollower = try await membershipChange(cluster, "/remove", node: follower, via: Int(next.nodeID))
            #expect(removeFollower.status == 200, "\(removeFollower)")
            try await waitFor("node \(follower) to learn it was removed", timeout: .seconds(3)) {
                try await cluster.status(follower).role == .removed
            }
            let last = Int(next.nodeID)
            for i in 30..<40 { try await ackedPut(cluster, writes, "t\(i)", via: last) }
            // The removed nodes may know the leader by now; they still forward nothing.
            for removedNode in [chosen, follower] {
                let response = try await cluster.client(removedNode).put("t-removed", "x")
                #expect(response.status == 503, "node \(removedNode): \(response)")
            }
            let refused = try await membershipChange(cluster, "/remove", node: last, via: last)
            #expect(refused.status == 409, "\(refused)")
            try await expectNoLostWrites(writes, cluster: cluster, readers: [last])

            // Membership survives a restart: the last voter comes back alone and leads.
            try await cluster.restart(last)
            let alone = try await cluster.waitForLeader(timeout: .seconds(5), among: [last])
            #expect(alone.voters == [UInt64(last)])
            try await expectNoLostWrites(writes, cluster: cluster, readers: [last])
        }
    }

    @Test("single-node bootstrap grown to three without restarting node 1; then node 1 can fail")
    func singleNodeGrowsToThree() async throws {
        var options = LocalCluster.Options()
        options.initialClusterSize = 1
        try await withLocalCluster(nodes: 3, options: options, start: false) { cluster in
            try await cluster.start([1])
            let solo = try await cluster.waitForLeader(among: [1])
            #expect(solo.voters == [1])
            let writes = WriteLog()
            for i in 0..<30 { try await ackedPut(cluster, writes, "b\(i)", via: 1) }
            let pid = cluster.pid(1)

            // Nodes 2 and 3 are not bootstrap voters: they join as learners on start.
            try await cluster.start([2, 3])
            for id in [2, 3] {
                try await waitForMember(cluster, id, role: .learner, via: 1)
                _ = try await promoteWhenCaughtUp(cluster, id, via: 1)
                for i in 0..<10 { try await ackedPut(cluster, writes, "b\(id)-\(i)", via: id) }
            }
            #expect(cluster.pid(1) == pid, "node 1 was never restarted")
            let three = try await cluster.waitForLeader(requireMajority: true)
            #expect(three.voters == [1, 2, 3])

            // Restart everything: the membership came from the log, not the files.
            for id in cluster.ids { cluster.sigkill(id) }
            for id in cluster.ids { _ = try await cluster.waitForExit(id, timeout: .seconds(5)) }
            try await cluster.start()
            let again = try await cluster.waitForLeader(timeout: .seconds(10), requireMajority: true)
            #expect(again.voters == [1, 2, 3])

            // Node 1 is no longer special.
            try await cluster.crash(1)
            try await cluster.waitForLeader(timeout: .seconds(5), among: [2, 3], requireMajority: true)
            for i in 0..<10 { try await ackedPut(cluster, writes, "b-after-\(i)", via: 2 + i % 2) }
            try await expectNoLostWrites(writes, cluster: cluster, readers: [2, 3])
        }
    }

    // MARK: - Helpers

    func membershipChange(_ cluster: LocalCluster, _ path: String, node: Int, via: Int) async throws -> HTTPResponse {
        let body: Data
        switch path {
        case "/promote": body = try WireJSON.encode(PromoteRequest(nodeID: UInt64(node)))
        case "/remove": body = try WireJSON.encode(RemoveRequest(nodeID: UInt64(node)))
        default: body = try WireJSON.encode(JoinRequest(nodeID: UInt64(node), address: cluster.node(node).clientAddress))
        }
        return try await cluster.client(via).withTimeout(.seconds(5)).send("POST", path, body: body)
    }

    /// Waits until `/cluster` on node `via` lists `id` with `role`.
    func waitForMember(_ cluster: LocalCluster, _ id: Int, role: NodeRole, via: Int) async throws {
        try await waitFor("node \(id) to be listed as a \(role.rawValue)", timeout: .seconds(10)) {
            let members = try await cluster.client(via).clusterOK().members
            return members.contains { $0.id == UInt64(id) && $0.role == role }
        }
    }

    /// `POST /promote` until it succeeds, retrying while the learner is behind or another change is committing
    /// (what `dctl promote --wait` does). Returns the configuration entry's index.
    func promoteWhenCaughtUp(_ cluster: LocalCluster, _ id: Int, via: Int) async throws -> UInt64 {
        try await waitFor("node \(id) to be promoted", timeout: .seconds(15), interval: .milliseconds(100)) {
            () async throws -> UInt64? in
            let response = try await membershipChange(cluster, "/promote", node: id, via: via)
            if response.status == 200 { return try WireJSON.decode(MembershipChangeResponse.self, from: response.body).index }
            let code = (try? WireJSON.decode(APIErrorEnvelope.self, from: response.body))?.error.code
            guard response.status == 409 || response.status == 503 || response.status == 504 else {
                throw NodeClient.UnexpectedResponse(what: "promote \(id)", response: response)
            }
            guard code != .conflict else { throw NodeClient.UnexpectedResponse(what: "promote \(id)", response: response) }
            return nil
        }
    }

    func ackedPut(_ cluster: LocalCluster, _ writes: WriteLog, _ key: String, via: Int) async throws {
        let value = "v-\(key)"
        _ = try await cluster.client(via).putOK(key, value)
        writes.recordAck(key: key, value: value, node: via)
    }

    func expectNoLostWrites(_ writes: WriteLog, cluster: LocalCluster, readers: [Int]) async throws {
        var lost: [String] = []
        for (index, write) in writes.acked.enumerated() {
            let client = cluster.client(readers[index % readers.count])
            let value = try await client.value(of: write.key, consistency: .linearizable)
            if value != write.value { lost.append("\(write.key): got \(value ?? "404")") }
        }
        #expect(lost.isEmpty, "lost \(lost.count) of \(writes.ackCount) acknowledged writes: \(lost.prefix(20))")
    }
}
