import Foundation

/// CPU time (user + system) of server processes, read from `/proc/PID/stat`: what a run cost the servers, summed over
/// a system's processes, independent of how busy the rest of the machine was.
public struct ProcessCPU: Sendable, Equatable {
    public var pids: [Int32]

    public init(pids: [Int32]) { self.pids = pids }

    /// `dengine=1,2,3` as (system name, pids); `nil` when malformed.
    public static func parse(_ text: String) -> (system: String, pids: [Int32])? {
        let parts = text.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, !parts[0].isEmpty else { return nil }
        let pids = parts[1].split(separator: ",").map { Int32(String($0).trimmingSpaces) }
        guard !pids.isEmpty, pids.allSatisfy({ ($0 ?? 0) > 0 }) else { return nil }
        return (String(parts[0]), pids.compactMap { $0 })
    }

    /// Seconds of CPU the processes have used so far; `nil` if one of them is gone or unreadable.
    public func seconds() -> Double? {
        var ticks: UInt64 = 0
        for pid in pids {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let used = Self.cpuTicks(statLine: stat)
            else { return nil }
            ticks += used
        }
        return Double(ticks) / Double(Self.ticksPerSecond)
    }

    /// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2) is in parentheses and
    /// may contain spaces, so fields are counted from the last `)`.
    public static func cpuTicks(statLine: String) -> UInt64? {
        guard let close = statLine.lastIndex(of: ")") else { return nil }
        let fields = statLine[statLine.index(after: close)...].split(separator: " ")
        // After ")": state is field 3, so utime (14) and stime (15) are at offsets 11 and 12.
        guard fields.count > 12, let user = UInt64(fields[11]), let system = UInt64(fields[12]) else { return nil }
        return user + system
    }

    static let ticksPerSecond: Int = max(1, sysconf(Int32(_SC_CLK_TCK)))
}
