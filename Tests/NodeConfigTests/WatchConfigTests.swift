import NodeConfig
import Testing

/// `[watch]` (issue #17): defaults, ranges, and the buffer that must hold one largest change.
@Suite struct WatchConfigTests {
    @Test func defaults() throws {
        let config = try parse(baseTOML)
        #expect(config.watch == WatchConfig())
        #expect(config.watch.historyEntries == 10_000)
        #expect(config.watch.bufferBytes == 4 << 20)
    }

    @Test func keysAreRead() throws {
        let config = try parse(
            baseTOML + "\n[watch]\nhistory_entries = 50\nhistory_bytes = 4096\nbuffer_bytes = 2000000\nprogress_interval_ms = 250\n")
        #expect(config.watch == WatchConfig(historyEntries: 50, historyBytes: 4096, bufferBytes: 2_000_000, progressIntervalMs: 250))
    }

    @Test func unknownKeysAndRangesAreRefused() {
        #expect(loadError(baseTOML + "\n[watch]\nhistory = 5\n")?.kind == .unknownKey)
        #expect(loadError(baseTOML + "\n[watch]\nhistory_entries = 0\n")?.description.contains("watch.history_entries") == true)
        #expect(loadError(baseTOML + "\n[watch]\nprogress_interval_ms = 1\n")?.kind == .invalidValue)
    }

    @Test func theBufferMustHoldTheLargestChange() {
        let error = loadError(baseTOML + "\n[watch]\nbuffer_bytes = 65536\n")
        #expect(error?.kind == .invalidValue)
        #expect(
            error?.description
                == "test.toml: watch.buffer_bytes: must be at least max_value_bytes + max_key_bytes + 65536 = 1118208, got 65536")
    }

    @Test func overridesReachTheSection() throws {
        let config = try parse(baseTOML, environment: ["RAFT__WATCH__HISTORY_ENTRIES": "77"])
        #expect(config.watch.historyEntries == 77)
    }
}
