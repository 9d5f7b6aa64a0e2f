import Foundation
import RaftCore
import Testing

@testable import PeerTransport

/// A fresh directory for one staging area (removed by the OS's temp cleaning; each test uses its own).
func temporaryStagingDirectory() -> String {
    NSTemporaryDirectory() + "dengine-staging-test-\(getpid())-\(UInt64.random(in: 0..<UInt64.max))"
}

/// Whether a chunk was staged (acknowledged when it starts a transfer, silently otherwise).
func isStaged(_ outcome: SnapshotStaging.Outcome) -> Bool {
    switch outcome {
    case .incomplete, .acknowledge(_, _, resumed: false): return true
    default: return false
    }
}

/// Issue #14 (c): chunked snapshots are staged on disk, capped, and a restarted transfer resumes.
@Suite("Snapshot staging")
struct SnapshotStagingTests {
    let message = Message(
        from: 1, to: 2, term: 2, body: .installSnapshot(SnapshotMetadata(index: 9, term: 2, membership: Membership(voters: [1, 2]))))
    let image = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 1) }
    var chunks: [SnapshotChunk] { SnapshotChunk.split(image, message: message, transfer: 5, size: 3000) }

    @Test("chunks go to a file, not to memory, and the file is gone once the image is delivered")
    func stagedOnDisk() throws {
        let staging = SnapshotStaging(directory: temporaryStagingDirectory(), maxTotal: 1 << 20)
        // The first chunk is acknowledged: the sender waits for that before it sends the rest.
        #expect(staging.accept(chunks[0], from: 1) == .acknowledge(transfer: 5, offset: 3000, resumed: false))
        #expect(staging.accept(chunks[1], from: 1) == .incomplete)
        let file = staging.path(for: 1)
        let staged = try #require(FileManager.default.contents(atPath: file))
        #expect([UInt8](staged) == Array(image.prefix(6000)))
        #expect(staging.heldBytes(from: 1) == 6000)
        #expect(isStaged(staging.accept(chunks[2], from: 1)))
        #expect(staging.accept(chunks[3], from: 1) == .complete(message, image))
        #expect(!FileManager.default.fileExists(atPath: file))
        #expect(staging.heldBytes(from: 1) == 0)
    }

    @Test("a transfer restarted at offset 0 is answered with the offset held, and duplicates are ignored")
    func resumes() {
        let staging = SnapshotStaging(directory: temporaryStagingDirectory(), maxTotal: 1 << 20)
        for chunk in chunks.prefix(3) { #expect(isStaged(staging.accept(chunk, from: 1))) }
        // The connection broke; the sender starts again at 0 and sends ahead before it hears the answer.
        #expect(staging.accept(chunks[0], from: 1) == .acknowledge(transfer: 5, offset: 9000, resumed: true))
        #expect(staging.accept(chunks[1], from: 1) == .duplicate)
        #expect(staging.accept(chunks[3], from: 1) == .complete(message, image))
        // Another sender's transfer is independent of this one.
        #expect(isStaged(staging.accept(chunks[0], from: 3)))
        #expect(staging.heldBytes(from: 1) == 0 && staging.heldBytes(from: 3) == 3000)
    }

    @Test("a restart of a different snapshot under the same id starts over")
    func differentImageStartsOver() {
        let staging = SnapshotStaging(directory: temporaryStagingDirectory(), maxTotal: 1 << 20)
        for chunk in chunks.prefix(2) { #expect(isStaged(staging.accept(chunk, from: 1))) }
        let otherImage = image.map { $0 ^ 0xFF }
        let other = SnapshotChunk.split(otherImage, message: message, transfer: 5, size: 3000)
        #expect(isStaged(staging.accept(other[0], from: 1)), "same id and total, different first chunk")
        for chunk in other.dropFirst().dropLast() { #expect(isStaged(staging.accept(chunk, from: 1))) }
        #expect(staging.accept(other[3], from: 1) == .complete(message, otherImage))
    }

    @Test("the size cap is checked at the first chunk; leftovers of an earlier process are removed")
    func capAndLeftovers() throws {
        let directory = temporaryStagingDirectory()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: directory + "/from-7.part", contents: Data([1, 2, 3]))
        let staging = SnapshotStaging(directory: directory, maxTotal: 9999)
        #expect(!FileManager.default.fileExists(atPath: directory + "/from-7.part"))
        guard case .rejected = staging.accept(chunks[0], from: 1) else {
            Issue.record("a 10000-byte transfer passed a 9999-byte cap")
            return
        }
        #expect(!FileManager.default.fileExists(atPath: staging.path(for: 1)))
        var huge = chunks[0]
        huge.total = .max
        guard case .rejected = staging.accept(huge, from: 1) else {
            Issue.record("a transfer announcing 2^64 - 1 bytes was accepted")
            return
        }
    }

    @Test("the connection state machines carry the resume: stage on the acceptor, resumeTransfer on the dialer")
    func connectionActions() {
        let admission = PeerAdmission(members: [1], leader: 1)
        var acceptor = PeerConnectionStateMachine(role: .acceptor)
        _ = acceptor.received(.hello(PeerHello(nodeID: 1)), admission: admission)
        #expect(acceptor.received(.snapshotChunk(chunks[0]), admission: admission) == .stageChunk(chunks[0], sender: 1))
        guard case .close = acceptor.received(.snapshotAck(transfer: 5, offset: 3000), admission: admission) else {
            Issue.record("an ack on an accepted connection must close it")
            return
        }
        var dialer = PeerConnectionStateMachine(role: .dialer(expected: 2))
        _ = dialer.received(.hello(PeerHello(nodeID: 2)), admission: admission)
        #expect(dialer.received(.snapshotAck(transfer: 5, offset: 3000), admission: admission) == .resumeTransfer(transfer: 5, offset: 3000))
    }
}
