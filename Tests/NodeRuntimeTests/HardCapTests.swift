import NodeConfig
import PeerTransport
import RaftStorage
import Testing

@Suite("Hard caps agree")
struct HardCapTests {
    /// The config's value cap is derived from the entry cap: it must be the WAL's record cap and the wire's frame cap.
    @Test func configEntryCapIsTheWALRecordAndPeerFrameCap() {
        #expect(NodeConfig.entryHardCap == WALRecord.maxPayload)
        #expect(NodeConfig.entryHardCap == PeerWire.defaultMaxFrameLength)
    }
}
