import ClusterAPI
import Foundation
import Synchronization
import Testing
@testable import ClusterTestSupport

/// Follower reads on real processes: followers answer lease and linearizable reads themselves (a read index from the
/// leader, then their own state machine), and an answer is never older than a write acknowledged before the read
/// began, while a writer keeps changing the key.
@Suite(
    "follower reads (processes)", .serialized, .tags(.cluster),
    .enabled(if: clusterTestsEnabled, "SKIP_CLUSTER_TESTS is set")
)
struct FollowerReadProcessTests {
    @Test("followers serve strong reads themselves and never return a value older than an acknowledged write")
    func followersServeFreshReads() async throws {
        try await withLocalCluster { cluster in
            let leaderID = Int(try await cluster.waitForLeader(requireMajority: true).nodeID)
            let leader = cluster.client(leaderID)
            let followers = cluster.ids.filter { $0 != leaderID }.map { cluster.client($0) }
            let before = try await followers.asyncMap { try await CoordinationTests.gauge($0, "dengine_follower_reads_total") }

            // Read-after-write across nodes: a write acknowledged by the leader is seen at once by either follower.
            for i in 1...30 {
                _ = try await leader.putOK("raw", "v\(i)")
                let follower = followers[i % 2]
                let consistency: ReadConsistency = i % 3 == 0 ? .linearizable : .lease
                #expect(try await follower.value(of: "raw", consistency: consistency) == "v\(i)", "read \(i)")
            }

            // Concurrently: a writer raises a counter through the leader; readers on both followers check that each
            // answer is at least the last value acknowledged before their read began.
            let state = ReadCheck()
            let writer = Task {
                for n in 1...150 {
                    guard (try? await leader.putOK("counter", String(n))) != nil else { continue }
                    state.value.withLock { $0.acked = n }
                }
                state.value.withLock { $0.done = true }
            }
            await withTaskGroup(of: Void.self) { group in
                for (index, follower) in followers.enumerated() {
                    group.addTask {
                        while !state.value.withLock({ $0.done }) {
                            let floor = state.value.withLock { $0.acked }
                            let consistency: ReadConsistency = index == 0 ? .lease : .linearizable
                            guard let response = try? await follower.get("counter", consistency: consistency),
                                response.status == 200 || response.status == 404
                            else { continue }
                            let value = response.status == 404
                                ? 0 : (try? response.decode(GetResponse.self)).flatMap { Int($0.value) } ?? -1
                            state.value.withLock {
                                $0.served += 1
                                if value < floor { $0.stale += 1 }
                            }
                        }
                    }
                }
                await writer.value
            }
            let outcome = state.value.withLock { $0 }
            #expect(outcome.stale == 0, "reads older than an acknowledged write")
            #expect(outcome.served > 50)

            // They were served by the followers themselves (a read index each), not tunnelled to the leader.
            let after = try await followers.asyncMap { try await CoordinationTests.gauge($0, "dengine_follower_reads_total") }
            for (b, a) in zip(before, after) { #expect(a - b >= 15, "follower reads \(b) -> \(a)") }
        }
    }

}

/// What the concurrent phase saw, shared by the writer and the readers.
final class ReadCheck: Sendable {
    struct State {
        var acked = 0
        var done = false
        var served = 0
        var stale = 0
    }
    let value = Mutex(State())
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for element in self { out.append(try await transform(element)) }
        return out
    }
}
