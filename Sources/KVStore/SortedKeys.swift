/// An ordered set of byte-string keys: a list of sorted chunks (at most `chunkCapacity` keys each) with each chunk's
/// first key in a separate array.
///
/// Finding a key is a binary search over the chunk heads then inside one chunk: O(log n). Inserting or removing
/// moves at most one chunk's elements: O(log n + chunkCapacity). A prefix scan finds its start in O(log n) and walks
/// forward: O(log n + k).
struct SortedKeys: Sendable {
    static let chunkCapacity = 512

    private var chunks: [[Bytes]] = []
    private(set) var count = 0

    init() {}

    /// Lexicographic byte order (`memcmp`, shorter first on a tie).
    @inline(__always)
    static func less(_ a: Bytes, _ b: Bytes) -> Bool {
        let n = min(a.count, b.count)
        let c = a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in n == 0 ? 0 : memcmpBytes(pa.baseAddress!, pb.baseAddress!, n) }
        }
        return c != 0 ? c < 0 : a.count < b.count
    }

    /// The chunk that holds (or would hold) `key`.
    private func chunkIndex(for key: Bytes) -> Int {
        var lo = 0
        var hi = chunks.count - 1
        // The last chunk whose first key is <= key (or 0).
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if Self.less(key, chunks[mid][0]) { hi = mid - 1 } else { lo = mid }
        }
        return lo
    }

    /// The position of the first key `>= key` in `chunk`.
    private static func lowerBound(_ chunk: [Bytes], _ key: Bytes) -> Int {
        var lo = 0
        var hi = chunk.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if less(chunk[mid], key) { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Inserts `key` if absent.
    mutating func insert(_ key: Bytes) {
        if chunks.isEmpty {
            chunks = [[key]]
            count = 1
            return
        }
        let c = chunkIndex(for: key)
        let i = Self.lowerBound(chunks[c], key)
        if i < chunks[c].count && chunks[c][i] == key { return }
        chunks[c].insert(key, at: i)
        count += 1
        if chunks[c].count > Self.chunkCapacity {
            let half = chunks[c].count / 2
            let upper = Array(chunks[c][half...])
            chunks[c].removeSubrange(half...)
            chunks.insert(upper, at: c + 1)
        }
    }

    /// Removes `key` if present.
    mutating func remove(_ key: Bytes) {
        guard !chunks.isEmpty else { return }
        let c = chunkIndex(for: key)
        let i = Self.lowerBound(chunks[c], key)
        guard i < chunks[c].count, chunks[c][i] == key else { return }
        chunks[c].remove(at: i)
        count -= 1
        if chunks[c].isEmpty { chunks.remove(at: c) }
    }

    /// Keys `>= start` in order, calling `body` until it returns false.
    func forEach(from start: Bytes, _ body: (Bytes) -> Bool) {
        guard !chunks.isEmpty else { return }
        var c = chunkIndex(for: start)
        var i = Self.lowerBound(chunks[c], start)
        while c < chunks.count {
            while i < chunks[c].count {
                if !body(chunks[c][i]) { return }
                i += 1
            }
            c += 1
            i = 0
        }
    }

    /// All keys in order.
    func forEach(_ body: (Bytes) -> Void) {
        for chunk in chunks { for key in chunk { body(key) } }
    }
}

#if canImport(Glibc)
import Glibc
@inline(__always) private func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
    memcmp(a, b, n)
}
#else
@inline(__always) private func memcmpBytes(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
    for i in 0..<n where a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
    return 0
}
#endif
