import ClusterAPI
import RaftCore
import RaftStorage

/// The disk-space side of a node (issue #16): the data directory measured against `quota_backend_bytes`, the
/// `NOSPACE` alarm, and what a storage error that left the log usable (a full disk, no descriptor left) means for the
/// operation that met it. A value confined to the Raft loop; it performs no I/O and reads no clock: `RaftServer`
/// measures, publishes the alarm, retries and logs as it says.
struct DiskSpace {
    /// `quota_backend_bytes`: above it the alarm is raised and writes are refused (`507 no_space`).
    let quotaBytes: UInt64
    /// How often the data directory is measured (ms).
    let checkEveryMs: UInt64
    /// The data directory's size at the last measurement.
    private(set) var backendBytes: UInt64 = 0
    private var lastCheck: UInt64 = 0
    private var measuring = false
    /// The `NOSPACE` alarm, if raised (the loop's copy of what `RaftServer` publishes to the HTTP threads).
    private(set) var alarm: NodeAlarm?
    /// A Ready's log write found the disk full (or no descriptor left) and is being retried.
    private(set) var writeWaiting = false

    /// How long a log write that found no space waits before it is tried again.
    static let writeRetryMs: Int64 = 200
    /// How long after a snapshot that found no space (or no descriptor) the next one is tried.
    static let snapshotRetryMs: UInt64 = 1000

    init(quotaBytes: UInt64, checkEveryMs: UInt64) {
        self.quotaBytes = quotaBytes
        self.checkEveryMs = checkEveryMs
    }

    var raised: Bool { alarm != nil }

    // MARK: Measuring

    /// Whether to measure the data directory now (one measurement at a time, one per `checkEveryMs`); if so it counts
    /// as started.
    mutating func startMeasurement(now: UInt64) -> Bool {
        guard !measuring, now >= lastCheck + checkEveryMs else { return false }
        measuring = true
        lastCheck = now
        return true
    }

    /// A measurement came back (`nil`: it failed): the reason to raise the alarm when the directory is over the quota.
    mutating func measured(_ used: UInt64?) -> String? {
        measuring = false
        guard let used else { return nil }
        backendBytes = used
        guard used > quotaBytes else { return nil }
        return "the data directory uses \(used) bytes, over quota_backend_bytes (\(quotaBytes))"
    }

    // MARK: The alarm

    /// Raises the alarm: the alarm to publish, `nil` when it is already raised (the first reason stays).
    mutating func raise(_ reason: String, atMs: UInt64) -> NodeAlarm? {
        guard alarm == nil else { return nil }
        let raised = NodeAlarm(type: NodeAlarm.noSpace, reason: reason, raisedAtMs: atMs)
        alarm = raised
        return raised
    }

    /// `POST /alarm/disarm` with the directory measured now at `used` bytes: `true` when the alarm was cleared, `false`
    /// when none was raised; `409 conflict` while a log write waits for space or the directory is still over the quota.
    mutating func disarm(used: UInt64, path: String) -> Result<Bool, APIError> {
        backendBytes = used
        guard alarm != nil else { return .success(false) }
        if writeWaiting {
            return .failure(
                APIError(
                    code: .conflict, message: "the disk is still full: a log write is waiting for space; free space on "
                        + "the volume of \(path) and disarm again"))
        }
        guard used <= quotaBytes else {
            return .failure(
                APIError(
                    code: .conflict,
                    message: "the data directory still uses \(used) bytes, over quota_backend_bytes "
                        + "(\(quotaBytes)): the log is compacted while the alarm is raised; if that "
                        + "is not enough, raise quota_backend_bytes (and restart) or free space, then disarm again"))
        }
        alarm = nil
        return .success(true)
    }

    /// The refusal of a write while `alarm` is raised (`507`: nothing proposed).
    static func refusal(_ alarm: NodeAlarm, nodeID: NodeID) -> APIError {
        APIError(
            code: .noSpace,
            message: "node \(nodeID) has the NOSPACE alarm (\(alarm.reason)); the write was not proposed. "
                + "Free space or raise quota_backend_bytes, then `dctl alarm disarm`")
    }

    /// The alarms and the space used (`GET /alarms`).
    func response(nodeID: NodeID) -> AlarmsResponse {
        AlarmsResponse(nodeID: nodeID, alarms: alarm.map { [$0] } ?? [], backendBytes: backendBytes, quotaBytes: quotaBytes)
    }

    // MARK: Storage errors

    /// A storage error, as the node takes it.
    enum Setback: Equatable {
        /// The disk is full (ENOSPC, EDQUOT): nothing was written; the alarm goes up with this reason.
        case diskFull(reason: String)
        /// No descriptor left (EMFILE, ENFILE): nothing was written; tried again as connections close.
        case noDescriptors
        /// Anything else: the node stops (exit 74).
        case fatal
    }

    static func setback(_ error: any Error) -> Setback {
        if let full = error as? StorageNoSpaceError { return .diskFull(reason: "the disk is full: \(full.message)") }
        if error is StorageNoDescriptorsError { return .noDescriptors }
        return .fatal
    }

    /// What to do about a Ready's log write that failed.
    struct WriteRetry: Equatable {
        /// Logged once, when the write starts waiting.
        var logLine: String?
        /// The alarm's reason (a full disk).
        var raise: String?
        var afterMs: Int64 = DiskSpace.writeRetryMs
    }

    /// A Ready's log write failed with `error`: the retry (the write was undone and the log is usable), or `nil` when
    /// the error is fatal.
    mutating func writeFailed(_ error: any Error) -> WriteRetry? {
        let first = !writeWaiting
        switch Self.setback(error) {
        case .fatal:
            return nil
        case .diskFull(let reason):
            writeWaiting = true
            return WriteRetry(
                logLine: first ? "\(error); writes are refused and the write is retried until there is space" : nil,
                raise: reason)
        case .noDescriptors:
            writeWaiting = true
            return WriteRetry(logLine: first ? "\(error); the write is retried" : nil, raise: nil)
        }
    }

    /// A Ready's log write went through: `true` when it had been waiting for space.
    mutating func writeSucceeded() -> Bool {
        defer { writeWaiting = false }
        return writeWaiting
    }
}
