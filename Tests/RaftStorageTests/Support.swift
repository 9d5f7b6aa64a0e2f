import Foundation
import RaftCore
@testable import RaftStorage

/// RaftCore's SplitMix64: every randomised test names its seed and replays exactly from it.
typealias SeededRNG = SplitMix64

/// A fresh directory under the system temporary directory, removed by `cleanup()`.
struct TempDir {
    let path: String
    init(_ label: String = "raftstorage") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
    /// A path inside the directory that does not exist yet (a data directory to be created).
    var dataDir: String { path + "/db" }
}

/// A deterministic entry for index and term: tests compare what was read back against it.
func makeEntry(_ index: LogIndex, term: Term, size: Int = 16) -> Entry {
    var data = Array("e\(index)t\(term)-".utf8)
    while data.count < size { data.append(UInt8(truncatingIfNeeded: index &* 31 &+ UInt64(data.count))) }
    return Entry(term: term, index: index, kind: .normal, clientID: index % 5, sequence: index, data: data)
}

func makeEntries(_ range: ClosedRange<LogIndex>, term: Term, size: Int = 16) -> [Entry] {
    range.map { makeEntry($0, term: term, size: size) }
}

/// Reads a whole file.
func readFile(_ path: String) -> [UInt8] { Array(FileManager.default.contents(atPath: path) ?? Data()) }

func writeFile(_ path: String, _ bytes: [UInt8]) {
    FileManager.default.createFile(atPath: path, contents: Data(bytes))
}

/// The segment files of a data directory's WAL, oldest first.
func segmentPaths(_ dataDir: String) -> [String] {
    let wal = dataDir + "/wal"
    return ((try? FileManager.default.contentsOfDirectory(atPath: wal)) ?? []).filter { $0.hasSuffix(".seg") }.sorted()
        .map { wal + "/" + $0 }
}

/// The directory holding the test bundle and the package's other built products (`.build-*/<triple>/debug`).
func productsDirectory() -> URL {
    let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var dir = exe.deletingLastPathComponent()
    // On Linux the test runner is `<products>/<Package>PackageTests.xctest`; on macOS a bundle inside it.
    while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("storagebench").path)
        && dir.path != "/"
    {
        dir = dir.deletingLastPathComponent()
    }
    return dir
}
