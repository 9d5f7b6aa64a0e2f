import ClusterAPI
import Foundation
import NIOCore

/// A snapshot backup as `GET /snapshot` sends it and `dctl snapshot save` stores it: the magic line
/// (`SnapshotHeader.magicLine`), the header as one JSON line, then the state-machine image.
public struct SnapshotBackup: Sendable {
    public var header: SnapshotHeader
    public var image: [UInt8]

    public init(header: SnapshotHeader, image: [UInt8]) {
        self.header = header
        self.image = image
    }

    static func write(_ backup: SnapshotBackup, into buffer: inout ByteBuffer) {
        buffer.writeString(SnapshotHeader.magicLine)
        buffer.writeStaticString("\n")
        if let json = try? WireJSON.encode(backup.header) { buffer.writeBytes(json) }
        buffer.writeStaticString("\n")
        buffer.writeBytes(backup.image)
    }
}
