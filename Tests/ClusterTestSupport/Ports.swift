import Chaos
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Hands out TCP ports for test nodes.
///
/// Ports come from 20000..<32000: far from the example cluster's 8081-8085 / 9081-9085 and below Linux's ephemeral
/// range (32768-60999), so an outgoing connection of this or another process cannot be holding a port between the
/// check and the node's bind. The walk starts at a per-process offset (two `swift test` runs in other clones do not
/// start at the same place), never hands out a port twice in one process, and skips any port that cannot be bound
/// right now on 127.0.0.1 and on 0.0.0.0.
enum PortAllocator {
    static let range = 20000..<32000
    private static let lock = NSLock()
    private nonisolated(unsafe) static var cursor: Int = {
        let seed = Int(getpid()) &* 7919 &+ Int(time(nil) % 997) &* 13
        return range.lowerBound + abs(seed) % range.count
    }()

    /// `count` distinct ports that were free when checked.
    static func allocate(_ count: Int) throws -> [Int] {
        lock.lock()
        defer { lock.unlock() }
        var ports: [Int] = []
        var tried = 0
        while ports.count < count {
            guard tried < range.count else { throw PortError.exhausted }
            let port = cursor
            cursor = cursor + 1 >= range.upperBound ? range.lowerBound : cursor + 1
            tried += 1
            if isFree(port, host: "127.0.0.1") && isFree(port, host: "0.0.0.0") {
                ports.append(port)
            }
        }
        return ports
    }

    enum PortError: Error, CustomStringConvertible {
        case exhausted
        var description: String { "no free TCP port in \(PortAllocator.range)" }
    }

    /// Whether a listening socket could bind `host:port` now (with SO_REUSEADDR, as the node's server does).
    static func isFree(_ port: Int, host: String) -> Bool { PortProbe.isFree(port, host: host) }
}
