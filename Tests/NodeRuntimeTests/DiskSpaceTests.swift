import ClusterAPI
import Glibc
import Testing

@testable import NodeRuntime
@testable import RaftStorage

@Suite struct DiskSpaceTests {
    @Test func theDirectoryIsMeasuredOneAtATimeAndAtMostOncePerInterval() {
        var space = DiskSpace(quotaBytes: 1000, checkEveryMs: 100)
        let started = space.startMeasurement(now: 100)
        #expect(started)
        // One in flight: no second one, however late.
        let second = space.startMeasurement(now: 500)
        #expect(!second)
        #expect(space.measured(400) == nil && space.backendBytes == 400)
        // The interval counts from the start of the last one.
        let early = space.startMeasurement(now: 199)
        let onTime = space.startMeasurement(now: 200)
        #expect(!early && onTime)
        // A failed measurement keeps the last size.
        #expect(space.measured(nil) == nil && space.backendBytes == 400)
    }

    @Test func theAlarmIsRaisedOverTheQuotaAndOnlyOnce() throws {
        var space = DiskSpace(quotaBytes: 1000, checkEveryMs: 0)
        // At the quota is within it.
        _ = space.startMeasurement(now: 0)
        #expect(space.measured(1000) == nil)
        _ = space.startMeasurement(now: 1)
        let over = space.measured(1001)
        let reason = try #require(over)
        #expect(reason.contains("1001 bytes") && reason.contains("(1000)"))
        #expect(!space.raised)
        let raised = space.raise(reason, atMs: 77)
        let alarm = try #require(raised)
        #expect(alarm == NodeAlarm(type: "NOSPACE", reason: reason, raisedAtMs: 77))
        #expect(space.raised && space.alarm == alarm)
        // Raised already: nothing new to publish, and the first reason stays.
        #expect(space.raise("the disk is full", atMs: 78) == nil)
        #expect(space.alarm?.reason == reason)
        let response = space.response(nodeID: 3)
        #expect(response.alarms == [alarm] && response.backendBytes == 1001 && response.quotaBytes == 1000)
        let refusal = DiskSpace.refusal(alarm, nodeID: 3)
        #expect(refusal.code == .noSpace && refusal.message.contains("node 3 has the NOSPACE alarm (\(reason))"))
    }

    @Test func disarmClearsTheAlarmOnlyWithinTheQuotaAndWithNoWriteWaiting() {
        var space = DiskSpace(quotaBytes: 1000, checkEveryMs: 0)
        // Nothing raised: nothing to clear, the size is still updated.
        #expect(space.disarm(used: 5, path: "/db") == .success(false) && space.backendBytes == 5)
        _ = space.raise("over", atMs: 1)
        guard case .failure(let over) = space.disarm(used: 1001, path: "/db") else {
            Issue.record("disarmed over the quota")
            return
        }
        #expect(over.code == .conflict && over.message.contains("still uses 1001 bytes"))
        #expect(space.raised && space.backendBytes == 1001)
        // A log write waiting for space keeps it raised even below the quota.
        #expect(space.writeFailed(StorageNoSpaceError(message: "ENOSPC")) != nil)
        guard case .failure(let waiting) = space.disarm(used: 10, path: "/db") else {
            Issue.record("disarmed with a write waiting for space")
            return
        }
        #expect(waiting.code == .conflict && waiting.message.contains("a log write is waiting for space"))
        let hadWaited = space.writeSucceeded()
        #expect(hadWaited)
        // At the quota, nothing waiting: cleared.
        #expect(space.disarm(used: 1000, path: "/db") == .success(true))
        #expect(!space.raised && space.response(nodeID: 1).alarms.isEmpty)
    }

    @Test func aFullDiskRetriesTheLogWriteAndRaisesTheAlarm() throws {
        var space = DiskSpace(quotaBytes: 1000, checkEveryMs: 0)
        let full = StorageNoSpaceError(message: "write failed (ENOSPC)")
        let firstRetry = space.writeFailed(full)
        let first = try #require(firstRetry)
        #expect(first.raise == "the disk is full: write failed (ENOSPC)" && first.afterMs == 200)
        #expect(first.logLine?.contains("retried until there is space") == true)
        #expect(space.writeWaiting)
        // Retried again and again, logged once.
        let againRetry = space.writeFailed(full)
        let again = try #require(againRetry)
        #expect(again.logLine == nil && again.raise != nil)
        // It goes through: says it had waited, once.
        let wentThrough = space.writeSucceeded()
        #expect(wentThrough && !space.writeWaiting)
        let secondSuccess = space.writeSucceeded()
        #expect(!secondSuccess)
    }

    @Test func noDescriptorRetriesWithoutTheAlarmAndOtherErrorsAreFatal() throws {
        var space = DiskSpace(quotaBytes: 1000, checkEveryMs: 0)
        let noDescriptors = StorageNoDescriptorsError(
            StorageIOError(errno: EMFILE, operation: "open", path: "/db/snap"), context: "saving a snapshot")
        let retried = space.writeFailed(noDescriptors)
        let retry = try #require(retried)
        #expect(retry.raise == nil && retry.logLine?.contains("the write is retried") == true && space.writeWaiting)
        #expect(DiskSpace.setback(noDescriptors) == .noDescriptors)
        let fsync = StorageFatalError(code: .other, message: "fsync failed")
        #expect(space.writeFailed(fsync) == nil)
        #expect(DiskSpace.setback(fsync) == .fatal)
        #expect(DiskSpace.setback(StorageNoSpaceError(message: "m")) == .diskFull(reason: "the disk is full: m"))
    }
}
