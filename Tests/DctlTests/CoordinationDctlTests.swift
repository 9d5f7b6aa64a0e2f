import ClusterAPI
import ClusterClient
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue #17 through dctl and real node processes: `dctl watch` resuming after its node dies, and the backup round
/// trip (`snapshot save` under write load, cluster destroyed, `snapshot restore`, every key back).
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["SKIP_CLUSTER_TESTS"] == nil))
struct CoordinationDctlTests {
    private func client(_ cluster: ClusterDirectory) -> ClusterClient {
        let targets = (1...cluster.clientPorts.count).map { id in
            NodeTarget(
                id: UInt64(id), client: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[id - 1]),
                metrics: Endpoint(host: "127.0.0.1", port: cluster.metricsPorts[id - 1]))
        }
        return ClusterClient(targets: targets, timeout: .seconds(10), probeTimeout: .seconds(1))
    }

    private func status(_ cluster: ClusterDirectory, _ id: Int) async throws -> NodeStatus {
        let response = try await httpExchange(
            method: "GET", endpoint: Endpoint(host: "127.0.0.1", port: cluster.metricsPorts[id - 1]), path: "/status",
            timeout: .seconds(2))
        return try WireJSON.decode(NodeStatus.self, from: response.body)
    }

    /// Polls `condition` every 50 ms until it holds, for at most `timeout`.
    private func waitUntil(_ what: String, timeout: Duration, _ condition: () async -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !(await condition()) {
            guard ContinuousClock.now < deadline else {
                Issue.record("timed out waiting for \(what)")
                throw CancellationError()
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    @Test func watchResumesOnAnotherNodeAfterItsNodeDies() async throws {
        let cluster = try ClusterDirectory()
        defer { cluster.cleanup() }
        let start = try cluster.dctl(["cluster", "start"])
        #expect(start.code == 0, "\(start)")
        let kv = client(cluster)
        let since = try await kv.put(key: "w/start", value: "0").0.index + 1
        let total = 40
        let output = cluster.root + "/watch.out"
        let endpoints = (1...3).map { cluster.endpoint($0) }.joined(separator: ",")
        let watch = try ChildProcess.launch(
            Dctl.binary,
            arguments: ["watch", "--prefix", "w/k", "--since", String(since), "--count", String(total), "-o", "json",
                "--endpoints", endpoints],
            environment: ["NO_COLOR": "1", "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin"],
            workingDirectory: cluster.root, stdout: .truncate(output), stderr: .truncate(output + ".err"),
            newProcessGroup: false)
        defer { if watch.isRunning { watch.signal(SIGKILL) } }
        func lines() -> [String] {
            (try? String(contentsOfFile: output, encoding: .utf8))?.split(separator: "\n").map(String.init) ?? []
        }
        var indexes: [String: UInt64] = [:]
        for i in 0..<(total / 2) { indexes["w/k\(i)"] = try await kv.put(key: "w/k\(i)", value: "v\(i)").0.index }
        try await waitUntil("dctl watch to print the first half", timeout: .seconds(10)) { lines().count == total / 2 }
        // The watch follows node 1 (the first endpoint): kill it.
        let pid = try #require(cluster.pid(1))
        kill(pid, SIGKILL)
        try await waitUntil("node 1 to die", timeout: .seconds(5)) { !cluster.isRunning(1) }
        for i in (total / 2)..<total { indexes["w/k\(i)"] = try await kv.put(key: "w/k\(i)", value: "v\(i)").0.index }
        let ended = watch.waitUntilExit(timeout: .seconds(20))
        #expect(ended?.shellCode == 0, "dctl watch: \((try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? "")")
        let events = try lines().map { try WireJSON.decode(WatchEvent.self, from: Data($0.utf8)) }
        #expect(events.map(\.key) == (0..<total).map { "w/k\($0)" })
        #expect(events.allSatisfy { $0.type == .put && indexes[$0.key] == $0.index })
        let notes = (try? String(contentsOfFile: output + ".err", encoding: .utf8)) ?? ""
        #expect(notes.contains("resuming from index"), "\(notes)")
    }

    @Test func backupRoundTrip() async throws {
        let keyCount = Int(ProcessInfo.processInfo.environment["BACKUP_TEST_KEYS"] ?? "") ?? 10_000
        let cluster = try ClusterDirectory()
        defer { cluster.cleanup() }
        let started = try cluster.dctl(["cluster", "start"])
        #expect(started.code == 0, "\(started)")
        let kv = client(cluster)

        // The keys, 100 per transaction (one log entry each).
        for batch in stride(from: 0, to: keyCount, by: 100) {
            let ops = (batch..<min(batch + 100, keyCount)).map { TxnOp(op: .put, key: "bk/\($0)", value: "value-\($0)") }
            let (response, _) = try await kv.txn(TxnRequest(success: ops))
            #expect(response.succeeded)
        }
        let termBefore = try await status(cluster, 1).term

        // Save while a writer keeps writing: the writes go on during the save.
        let load = LoadCounter()
        let writer = Task.detached {
            while !load.stopped {
                if (try? await kv.put(key: "load/\(load.count % 100)", value: "\(load.count)")) != nil { load.add() }
            }
        }
        try await waitUntil("the writer to start", timeout: .seconds(5)) { load.count > 0 }
        let before = load.count
        let save = try cluster.dctl(["snapshot", "save", "backup.snap", "--timeout", "60s"])
        let during = load.count - before
        load.stop()
        await writer.value
        #expect(save.code == 0, "\(save)")
        #expect(during > 0, "no write succeeded while the snapshot was saved")
        #expect(try await status(cluster, 1).term == termBefore, "the save caused an election")

        let inspected = try cluster.dctl(["snapshot", "status", "backup.snap", "-o", "json"])
        #expect(inspected.code == 0, "\(inspected)")
        let headerLine = try #require(
            try String(contentsOfFile: cluster.root + "/backup.snap", encoding: .isoLatin1).split(separator: "\n").dropFirst().first)
        let header = try WireJSON.decode(SnapshotHeader.self, from: Data(headerLine.utf8))
        #expect(header.keyCount >= keyCount)
        #expect(inspected.stdout.contains("\"state_hash\":\"\(header.stateHash)\""), "\(inspected)")

        // Destroy the cluster, restore into fresh data directories, start again.
        let stopped = try cluster.dctl(["cluster", "stop"])
        #expect(stopped.code == 0, "\(stopped)")
        try FileManager.default.moveItem(atPath: cluster.root + "/db", toPath: cluster.root + "/db.old")
        let restored = try cluster.dctl(["snapshot", "restore", "backup.snap"])
        #expect(restored.code == 0, "\(restored)")
        let again = try cluster.dctl(["snapshot", "restore", "backup.snap"])
        #expect(again.code == 1 && again.stderr.contains("not empty"), "\(again)")
        let restarted = try cluster.dctl(["cluster", "start"])
        #expect(restarted.code == 0, "\(restarted)")

        // Every node's state is the snapshot's, and every key is there.
        for id in 1...3 {
            try await waitUntil("node \(id) to apply the restored state", timeout: .seconds(10)) {
                (try? await status(cluster, id).stateHash) == header.stateHash
            }
        }
        if keyCount <= 10_000 {
            // The restored state is applied at boot, before a leader may be known: the scan waits for one.
            var response: HTTPResponse?
            try await waitUntil("node 1 to answer a scan", timeout: .seconds(10)) {
                response = try? await httpExchange(
                    method: "GET", endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[0]),
                    path: "/scan?prefix=bk%2F&limit=10000", timeout: .seconds(10))
                return response?.status == 200
            }
            let scan = try WireJSON.decode(ScanResponse.self, from: try #require(response).body)
            #expect(scan.entries.count == keyCount)
            #expect(Set(scan.entries.map(\.key)) == Set((0..<keyCount).map { "bk/\($0)" }))
            #expect(scan.entries.allSatisfy { $0.value == "value-\($0.key.dropFirst(3))" })
        }
        for i in stride(from: 0, to: keyCount, by: max(1, keyCount / 50)) {
            #expect(try await kv.get(key: "bk/\(i)", consistency: .linearizable).0.value == "value-\(i)")
        }
        // And it takes writes.
        _ = try await kv.put(key: "after-restore", value: "1")

        // An old node started by mistake (node 3 on its old data directory) is refused by the restored cluster: it
        // never learns the new writes, and the restored nodes go on without it.
        let killed = try cluster.dctl(["node", "kill", "3"])
        #expect(killed.code == 0, "\(killed)")
        let configPath = cluster.root + "/config/n3.toml"
        let config = try String(contentsOfFile: configPath, encoding: .utf8)
        try config.replacingOccurrences(of: "./db/3", with: "./db.old/3").write(toFile: configPath, atomically: true, encoding: .utf8)
        _ = try cluster.dctl(["node", "start", "3", "--timeout", "5s"])
        try await waitUntil("the old node 3 to answer /status", timeout: .seconds(10)) {
            (try? await status(cluster, 3)) != nil
        }
        try await waitUntil("nodes 1 and 2 to elect a leader among themselves", timeout: .seconds(10)) {
            let one = try? await status(cluster, 1)
            return one?.leaderID == 1 || one?.leaderID == 2
        }
        _ = try await kv.put(key: "after-old-node", value: "1")
        try await Task.sleep(for: .seconds(1))  // room for replication to the old node, which must not happen
        let read = try await httpExchange(
            method: "GET", endpoint: Endpoint(host: "127.0.0.1", port: cluster.clientPorts[2]),
            path: "/get?key=after-old-node&consistency=eventual", timeout: .seconds(2))
        #expect(read.status == 404, "the old node learned the restored cluster's write")
        let old = try await status(cluster, 3)
        #expect(old.stateHash != header.stateHash)
        #expect(old.role != .leader || old.leaderID == 3)
        let identity = (try? String(contentsOfFile: cluster.root + "/db/1/DENGINE", encoding: .utf8)) ?? ""
        #expect(identity.contains("cluster_id = "), "\(identity)")
    }
}

/// Writes done by the load task, and when to stop it.
// @unchecked Sendable: every access to the two fields holds `lock`.
final class LoadCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var written = 0
    private var done = false

    var count: Int { lock.withLock { written } }
    var stopped: Bool { lock.withLock { done } }
    func add() { lock.withLock { written += 1 } }
    func stop() { lock.withLock { done = true } }
}
