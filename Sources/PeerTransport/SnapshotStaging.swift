import Foundation
import NIOConcurrencyHelpers
import RaftCore

/// Decides, chunk by chunk, what the receiver of one sender's snapshot transfer does (see ``SnapshotChunk``). Pure:
/// it tracks offsets only; the bytes go to a file (``SnapshotStaging``). Bounded by `maxTotal`.
///
/// Invariant: `have <= total`, and `have == 0` when no transfer is in progress.
struct SnapshotAssembler {
    enum Decision: Equatable {
        /// Write the chunk's data at `offset` (after emptying the file when `restart`); more chunks to come.
        case write(offset: UInt64, restart: Bool)
        /// Write the chunk's data at `offset` (after emptying the file when `restart`): the image is then whole.
        case complete(offset: UInt64, restart: Bool, Message)
        /// The sender restarted a transfer of which we already hold `0..<offset`: tell it to continue from there.
        case resume(transfer: UInt64, offset: UInt64)
        /// A chunk we already hold (sent again before the sender heard our `resume`): ignore it.
        case duplicate
        /// The chunk does not fit the transfer in progress (or is damaged); the transfer is dropped.
        case rejected(String)
    }

    let maxTotal: UInt64
    private(set) var transfer: UInt64?
    private(set) var total: UInt64 = 0
    /// The checksum of the transfer's first chunk: with the id and total, what identifies it when it restarts.
    private(set) var firstChecksum: UInt64 = 0
    /// Bytes held: `0..<have`.
    private(set) var have: UInt64 = 0

    init(maxTotal: UInt64) {
        self.maxTotal = maxTotal
    }

    mutating func accept(_ chunk: SnapshotChunk) -> Decision {
        let count = UInt64(chunk.data.count)
        var restart = false
        if chunk.offset == 0 {
            if let current = transfer, current == chunk.transfer, chunk.total == total, chunk.checksum == firstChecksum,
                have >= count, have > 0
            {
                return .resume(transfer: current, offset: have)
            }
            reset()
            guard chunk.total <= maxTotal else { return reject("snapshot of \(chunk.total) bytes exceeds \(maxTotal)") }
            transfer = chunk.transfer
            total = chunk.total
            firstChecksum = chunk.checksum
            restart = true
        } else if transfer == chunk.transfer, chunk.total == total, chunk.offset < have {
            return .duplicate
        }
        guard let current = transfer, current == chunk.transfer, chunk.total == total, chunk.offset == have else {
            return reject("chunk \(chunk.transfer)@\(chunk.offset) does not continue the transfer in progress")
        }
        guard SnapshotChunk.fnv1a(chunk.data) == chunk.checksum else {
            return reject("chunk \(chunk.transfer)@\(chunk.offset) fails its checksum")
        }
        guard count <= total - have else {
            return reject("chunk \(chunk.transfer)@\(chunk.offset) runs past the total \(total)")
        }
        let offset = have
        have += count
        switch (have == total, chunk.message) {
        case (false, nil):
            return .write(offset: offset, restart: restart)
        case (true, let message?):
            guard case .installSnapshot = message.body else { return reject("the last chunk carries \(message)") }
            reset()
            return .complete(offset: offset, restart: restart, message)
        case (true, nil):
            return reject("the transfer ended without its message")
        case (false, .some):
            return reject("a message arrived before the last chunk")
        }
    }

    /// Forgets the transfer (after completion, a rejection or a failed write).
    mutating func reset() {
        transfer = nil
        total = 0
        firstChecksum = 0
        have = 0
    }

    private mutating func reject(_ why: String) -> Decision {
        reset()
        return .rejected(why)
    }
}

/// Snapshot transfers being received, one per sender, each staged in a file `from-<sender>.part` under `directory`
/// (the node's `<db_root_dir>/incoming-snapshots`) rather than in memory, so that a transfer survives the
/// connection it started on and resumes where it stopped. The whole image is read back once complete (the state
/// machine decodes it in memory) and the file removed; a dropped transfer's file is removed at once.
///
/// Thread-safe: chunks of one sender arrive on one connection at a time, but a reconnect may bring them on another
/// event loop. Each chunk is one `pwrite` of at most the sender's chunk size (1 MiB) into the page cache, done on
/// the connection's event loop; the staged file is never fsynced (a crash loses the transfer, which then starts over).
final class SnapshotStaging: Sendable {
    enum Outcome: Equatable {
        /// Staged; more to come.
        case incomplete
        /// Tell the sender we hold `0..<offset` of `transfer`: after the first chunk of a transfer (the sender waits
        /// for this before it sends the rest) and when a restarted transfer finds more of itself staged (`resumed`).
        case acknowledge(transfer: UInt64, offset: UInt64, resumed: Bool)
        /// The whole image (tell the sender too).
        case complete(Message, [UInt8])
        case duplicate
        case rejected(String)
    }

    let directory: String
    let maxTotal: UInt64
    private let transfers = NIOLockedValueBox<[NodeID: SnapshotAssembler]>([:])
    private let resumeCount = NIOLockedValueBox(0)

    /// Removes transfers a previous process left behind.
    init(directory: String, maxTotal: UInt64) {
        self.directory = directory
        self.maxTotal = maxTotal
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in names where name.hasSuffix(".part") { try? FileManager.default.removeItem(atPath: directory + "/" + name) }
    }

    func path(for sender: NodeID) -> String { directory + "/from-\(sender).part" }

    /// How many restarted transfers were resumed (answered with a `snapshotAck`), for tests and status.
    var resumes: Int { resumeCount.withLockedValue { $0 } }

    /// The bytes held of `sender`'s transfer in progress (for tests and status).
    func heldBytes(from sender: NodeID) -> UInt64 { transfers.withLockedValue { $0[sender]?.have ?? 0 } }

    func accept(_ chunk: SnapshotChunk, from sender: NodeID) -> Outcome {
        transfers.withLockedValue { transfers in
            var assembler = transfers[sender] ?? SnapshotAssembler(maxTotal: maxTotal)
            let decision = assembler.accept(chunk)
            defer { transfers[sender] = assembler }
            let file = path(for: sender)
            do {
                switch decision {
                case .write(let offset, let restart):
                    try write(chunk.data, at: offset, restart: restart, to: file)
                    return restart ? .acknowledge(transfer: chunk.transfer, offset: assembler.have, resumed: false) : .incomplete
                case .complete(let offset, let restart, let message):
                    try write(chunk.data, at: offset, restart: restart, to: file)
                    let image = try Data(contentsOf: URL(fileURLWithPath: file))
                    try? FileManager.default.removeItem(atPath: file)
                    guard UInt64(image.count) == UInt64(offset) + UInt64(chunk.data.count) else {
                        return .rejected("the staged image has \(image.count) bytes")
                    }
                    return .complete(message, [UInt8](image))
                case .resume(let transfer, let offset):
                    resumeCount.withLockedValue { $0 += 1 }
                    return .acknowledge(transfer: transfer, offset: offset, resumed: true)
                case .duplicate:
                    return .duplicate
                case .rejected(let why):
                    try? FileManager.default.removeItem(atPath: file)
                    return .rejected(why)
                }
            } catch {
                assembler.reset()
                try? FileManager.default.removeItem(atPath: file)
                return .rejected("staging \(file): \(error)")
            }
        }
    }

    private func write(_ data: [UInt8], at offset: UInt64, restart: Bool, to file: String) throws {
        if restart {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            guard FileManager.default.createFile(atPath: file, contents: nil) else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file])
            }
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file))
        defer { try? handle.close() }
        try handle.seek(toOffset: offset)
        try handle.write(contentsOf: data)
    }
}
