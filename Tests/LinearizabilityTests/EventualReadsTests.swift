import Linearizability
import Testing

/// The weaker per-node check for eventual reads.
@Suite struct EventualReadsTests {
    typealias Read = EventualReads.Read
    typealias Write = EventualReads.Write

    let writes = [
        Write(key: "k", value: "1", rank: 10),
        Write(key: "k", value: "2", rank: 20),
        Write(key: "k", value: "3", rank: nil),  // an .info write: may have happened, position unknown
    ]

    @Test func monotonicReadsPass() {
        let reads = [
            Read(node: "n1", key: "k", value: nil, id: 0),
            Read(node: "n2", key: "k", value: "2", id: 1),
            Read(node: "n1", key: "k", value: "1", id: 2),
            Read(node: "n1", key: "k", value: "1", id: 3),
            Read(node: "n1", key: "k", value: "2", id: 4),
            Read(node: "n2", key: "k", value: "3", id: 5),
            Read(node: "n1", key: "other", value: nil, id: 6),
        ]
        #expect(EventualReads.check(reads: reads, writes: writes).isEmpty)
    }

    @Test func readGoingBackwardsOnOneNodeIsFlagged() {
        let reads = [
            Read(node: "n1", key: "k", value: "2", id: 0),
            Read(node: "n2", key: "k", value: "1", id: 1),  // another node may lag
            Read(node: "n1", key: "k", value: "1", id: 2),
            Read(node: "n1", key: "k", value: nil, id: 3),
        ]
        let violations = EventualReads.check(reads: reads, writes: writes)
        let expected: [EventualReads.Violation] = [
            .wentBackwards(reads[2], earlier: reads[0]), .wentBackwards(reads[3], earlier: reads[0]),
        ]
        #expect(violations == expected)
        #expect(
            violations.first?.description
                == "#2 n1 get(k) → \"1\": older than the node's earlier read #0 n1 get(k) → \"2\""
        )
    }

    /// Found by a 10-minute chaos run: put "2" (acknowledged at 20), then a delete whose outcome is unknown. A node
    /// that read "2" and then finds the key absent may have applied that delete; the initial absence ranking 0 must
    /// not make the read look stale.
    @Test func valueWithAnUnrankedWriteIsNeverOlder() {
        let withInfoDelete = writes + [Write(key: "k", value: nil, rank: nil)]
        let reads = [Read(node: "n1", key: "k", value: "2", id: 0), Read(node: "n1", key: "k", value: nil, id: 1)]
        #expect(EventualReads.check(reads: reads, writes: withInfoDelete).isEmpty)
        // Without the delete, absence after "2" is stale.
        #expect(EventualReads.check(reads: reads, writes: writes) == [.wentBackwards(reads[1], earlier: reads[0])])
    }

    @Test func neverWrittenValueIsFlagged() {
        let reads = [Read(node: "n1", key: "k", value: "9", id: 0), Read(node: "n1", key: "j", value: "1", id: 1)]
        let violations = EventualReads.check(reads: reads, writes: writes)
        #expect(violations.map(\.read.id) == [0, 1])
        #expect(violations.allSatisfy { if case .neverWritten = $0 { true } else { false } })
    }

    @Test func appliedIndexMustNotDecreasePerNode() {
        let reads = [
            Read(node: "n1", key: "k", value: "1", index: 12, id: 0),
            Read(node: "n1", key: "j", value: nil, index: 11, id: 1),
            Read(node: "n2", key: "k", value: "1", index: 11, id: 2),
        ]
        #expect(EventualReads.check(reads: reads, writes: writes) == [.indexWentBackwards(reads[1], earlier: reads[0])])
    }

    @Test func writeOrderFromIndexesAndFromLinearization() {
        // Two overlapping puts: the log (and the linearization) put "b" first, then "a".
        let history = History([
            kv(0, .put(key: "k", value: "a"), .ok(.done), 0, 10, index: 6),
            kv(1, .put(key: "k", value: "b"), .ok(.done), 1, 9, index: 5),
            kv(2, .get(key: "k"), .ok(.value("a")), 11, 12),
            kv(3, .put(key: "k", value: "c"), .fail, 13, 14),
        ])
        let byIndex = EventualReads.writesByIndex(history)
        #expect(byIndex == [Write(key: "k", value: "a", rank: 6), Write(key: "k", value: "b", rank: 5)])
        let (result, order) = LinearizabilityChecker.linearize(history, model: KVModel())
        #expect(result.isLinearizable)
        let byOrder = EventualReads.writesByLinearization(history, order: order)
        #expect(byOrder == [Write(key: "k", value: "a", rank: 2), Write(key: "k", value: "b", rank: 1)])
        let backwards = [Read(node: "n", key: "k", value: "a", id: 0), Read(node: "n", key: "k", value: "b", id: 1)]
        for writes in [byIndex, byOrder] {
            #expect(EventualReads.check(reads: backwards, writes: writes).count == 1)
            #expect(EventualReads.check(reads: backwards.reversed(), writes: writes).isEmpty)
        }
        // The failed put never happened.
        let failed = [Read(node: "n", key: "k", value: "c", id: 0)]
        #expect(EventualReads.check(reads: failed, writes: byIndex).map(\.read.id) == [0])
    }
}
