import KVStore
import Testing

@testable import NodeRuntime

/// The watch history is bounded in bytes in memory too, not only in what it serves.
@Suite struct WatchHistoryTests {
    @Test("evicted changes release their values: 200 values of 512 KiB under a 4 MiB history hold about 4 MiB")
    func evictedValuesAreReleased() {
        var hub = WatchHub(settings: WatchHub.Settings(historyEntries: 10_000, historyBytes: 4 << 20), appliedIndex: 0)
        let value = [UInt8](repeating: 0x76, count: 512 << 10)
        for index in 1...200 {
            hub.record([KVChange(kind: .put, key: Array("big/\(index % 32)".utf8), value: value, index: UInt64(index))])
        }
        #expect(hub.historyCount == 7, "changes kept: \(hub.historyCount)")
        #expect(hub.storedBytes <= (4 << 20) + (512 << 10), "the history holds \(hub.storedBytes >> 20) MiB")
    }
}
