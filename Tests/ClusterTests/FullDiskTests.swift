import ClusterAPI
import Foundation
import HTTPClient
import Testing
@testable import ClusterTestSupport

#if canImport(Glibc)
import Glibc
#endif

/// `true` when this process may mount a tmpfs (root with CAP_SYS_ADMIN, as in CI), checked by mounting one.
private let canMountTmpfs: Bool = {
    let probe = FileManager.default.temporaryDirectory.appendingPathComponent("tmpfs-probe-\(getpid())").path
    try? FileManager.default.createDirectory(atPath: probe, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: probe) }
    guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", probe]) == 0 else { return false }
    _ = run("/bin/umount", [probe])
    return true
}()

@discardableResult
private func run(_ path: String, _ arguments: [String]) -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    guard (try? process.run()) != nil else { return -1 }
    process.waitUntilExit()
    return process.terminationStatus
}

/// A node whose data directory is a small tmpfs: the quota, then a real ENOSPC (issue "Bounded under overload and
/// exhaustion", part 4).
@Suite(
    "dnode on a full disk (processes, tmpfs)", .serialized, .tags(.cluster),
    // The stall it once showed (a put or /status unanswered for 5 s, about 1 run in 4) was /status hashing the whole
    // state on the Raft loop; the hash is computed off the loop now (RaftServerTests.statusHashesTheStateOffTheLoop).
    .enabled(if: canMountTmpfs, "skipped: mounting a tmpfs needs root (CAP_SYS_ADMIN) and a kernel that allows it")
)
struct FullDiskTests {
    @Test("a 64 MiB tmpfs: quota then ENOSPC give 507 with reads served; space back and disarm: writes again, none lost")
    func quotaThenENOSPCOnTmpfs() async throws {
        var options = LocalCluster.Options()
        options.requestTimeoutMs = 3000
        // Phase 1: the quota (24 MiB) is reached before the disk (64 MiB) is full.
        options.environment = ["RAFT__RAFT__PERSISTENCE__QUOTA_BACKEND_BYTES": "\(24 << 20)"]
        try await withLocalCluster(nodes: 1, options: options, start: false) { cluster in
            let data = cluster.node(1).dataDirectory
            try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
            #expect(run("/bin/mount", ["-t", "tmpfs", "-o", "size=64m", "tmpfs", data]) == 0)
            // Lazily: the node may still hold files there (withLocalCluster stops it afterwards).
            defer { run("/bin/umount", ["-l", data]) }
            try await cluster.start()
            _ = try await cluster.waitForLeader()
            let client = cluster.client(1).withTimeout(.seconds(5))
            let value = String(repeating: "v", count: 512 << 10)
            var acknowledged: [String] = []

            /// Writes 512 KiB values until one is refused with 507; returns how many went through.
            func fillUntilRefused(_ label: String) async throws -> Int {
                for n in 0..<400 {
                    let key = "\(label)/\(n)"
                    let response = try await client.put(key, value)
                    switch response.status {
                    case 200: acknowledged.append(key)
                    case 507:
                        #expect(try response.decode(LooseErrorEnvelope.self).error.code == "no_space")
                        return n
                    case 504: continue  // a write that met the full disk waits for space: its outcome is unknown
                    default: Issue.record("put \(key): \(response.status) \(String(decoding: response.body, as: UTF8.self))")
                    }
                }
                Issue.record("\(label): 400 writes of 512 KiB and never 507")
                return 400
            }

            let beforeQuota = try await fillUntilRefused("quota")
            #expect(beforeQuota > 10)
            // Reads, status and alarms keep working; disarm is refused while the directory is over the quota.
            #expect(try await client.get(acknowledged[0]).status == 200)
            #expect(try await client.status().alarms?.map(\.type) == ["NOSPACE"])
            #expect(try await client.send("POST", "/alarm/disarm").status == 409)

            // Phase 2: a quota far above the disk: the file system's ENOSPC is what stops writes.
            let pid = cluster.pid(1)
            cluster.signal(1, SIGKILL)
            _ = try await cluster.waitForExit(1, timeout: .seconds(5))
            try cluster.launch(1, environment: ["RAFT__RAFT__PERSISTENCE__QUOTA_BACKEND_BYTES": "\(8 << 30)"])
            try await cluster.waitReady(1)
            _ = try await cluster.waitForLeader()
            #expect(cluster.pid(1) != pid)
            let beforeENOSPC = try await fillUntilRefused("enospc")
            #expect(beforeENOSPC >= 1)
            let status = try await client.status()
            #expect(status.alarms?.first?.reason.contains("disk is full") == true, "\(status.alarms ?? [])")
            #expect(cluster.isRunning(1), "the node must not exit on ENOSPC")
            #expect(try await client.get(acknowledged.last!).status == 200)

            // Space comes back: the waiting write goes through, disarm succeeds, writes work again.
            #expect(run("/bin/mount", ["-o", "remount,size=256m", data]) == 0)
            try await waitFor("disarm to succeed once the disk has room", timeout: .seconds(15)) {
                try await client.send("POST", "/alarm/disarm").status == 200
            }
            let after = try await client.put("after/1", "ok")
            #expect(after.status == 200)
            if after.status == 200 { acknowledged.append("after/1") }

            // Nothing acknowledged was lost, across a restart too.
            try await cluster.restart(1)
            _ = try await cluster.waitForLeader()
            for key in acknowledged {
                let response = try await client.get(key, consistency: .linearizable)
                #expect(response.status == 200, "acknowledged \(key) is gone")
            }
        }
    }
}
