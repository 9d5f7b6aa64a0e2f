import Linearizability
import Testing

/// The shared-vector file formats, on small inline samples.
@Suite struct ParserTests {
    @Test func jepsenLogMatchesByProcessAndKeepsInfoOpen() throws {
        let log = """
            2014-11-13 some preamble line
            INFO  jepsen.util - 0\t:invoke\t:write\t3
            INFO  jepsen.util - 1\t:invoke\t:cas\t[3 4]
            INFO  jepsen.util - 0\t:ok\t:write\t3
            INFO  jepsen.util - 1   :fail   :cas    [3 4]
            INFO  jepsen.util - 2\t:invoke\t:read\tnil
            INFO  jepsen.util - 2\t:info\t:read\t:timed-out
            INFO  jepsen.util - 2\t:invoke\t:write\t1
            INFO  jepsen.util - 3\t:invoke\t:read\tnil
            INFO  jepsen.util - 3\t:ok\t:read\tnil
            """
        let history = try HistoryParsers.parseJepsenEtcd(log)
        let operations = history.operations
        #expect(operations.map(\.input) == [.write(3), .cas(expected: 3, new: 4), .read, .write(1), .read])
        #expect(operations[0].output == .done && operations[0].invokedAt == 2 && operations[0].returnedAt == 4)
        #expect(operations[1].output == .swapped(false))
        #expect(operations[2].isInfo && operations[2].returnedAt == nil)
        #expect(operations[3].isInfo)  // never completed
        #expect(operations[4].output == .value(nil))

        let dropped = try HistoryParsers.parseJepsenEtcd(log, failedCAS: .dropped)
        #expect(dropped.operations[1].isFail)
    }

    @Test func jepsenLogRejectsMalformedLines() {
        #expect(throws: HistoryParseError.self) {
            try HistoryParsers.parseJepsenEtcd("INFO  jepsen.util - 0\t:invoke\t:cas\t[3]")
        }
        #expect(throws: HistoryParseError.self) {
            try HistoryParsers.parseJepsenEtcd("INFO  jepsen.util - 0\t:ok\t:read\t1")
        }
    }

    @Test func ednKeyValueHistory() throws {
        let text = """
            {:process 0, :type :invoke, :f :append, :key "0", :value "x 0 0 y"}
            {:process 1, :type :invoke, :f :get, :key "0", :value nil}
            {:process 0, :type :ok, :f :append, :key "0", :value "x 0 0 y"}
            {:process 1, :type :ok, :f :get, :key "0", :value "x 0 0 y"}
            {:process 2, :type :invoke, :f :put, :key "q\\"uote", :value ""}
            {:process 2, :type :fail, :f :put, :key "q\\"uote", :value ""}
            """
        let history = try HistoryParsers.parseEDNKeyValue(text)
        let operations = history.operations
        #expect(operations.count == 3)
        #expect(operations[0].input == .append(key: "0", value: "x 0 0 y") && operations[0].output == .done)
        #expect(operations[1].input == .get(key: "0") && operations[1].output == .value("x 0 0 y"))
        #expect(operations[1].invokedAt == 2 && operations[1].returnedAt == 4)
        #expect(operations[2].input == .put(key: "q\"uote", value: "") && operations[2].isFail)
        #expect(throws: HistoryParseError.self) { try HistoryParsers.parseEDNKeyValue("{:process 0, :type :invoke") }
    }

    @Test func labels() throws {
        let labels = try HistoryParsers.parseLabels("a.log\tlinearizable\nb.log\tnot-linearizable\n")
        #expect(labels == ["a.log": true, "b.log": false])
        #expect(throws: HistoryParseError.self) { try HistoryParsers.parseLabels("a.log\tmaybe\n") }
    }
}
