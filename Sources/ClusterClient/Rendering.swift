import ClusterAPI
import Foundation

// MARK: - JSON

/// A JSON value written with keys in the order given, so output is stable and reads in a sensible order.
public indirect enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case int(Int64)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])
    /// Already-encoded JSON (a ClusterAPI type through `WireJSON`).
    case raw(String)

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool { lhs.rendered == rhs.rendered }

    public static func uint(_ value: UInt64?) -> JSONValue { value.map { .int(Int64(clamping: $0)) } ?? .null }
    public static func string(_ value: String?) -> JSONValue { value.map { .string($0) } ?? .null }

    /// An `Encodable` through `WireJSON` (sorted keys), or `null` if it cannot be encoded.
    public static func encoded<T: Encodable>(_ value: T?) -> JSONValue {
        guard let value, let data = try? WireJSON.encode(value) else { return .null }
        return .raw(String(decoding: data, as: UTF8.self))
    }

    /// Compact, one line.
    public var rendered: String {
        switch self {
        case .null: return "null"
        case .bool(let value): return value ? "true" : "false"
        case .int(let value): return String(value)
        case .string(let value): return Self.quote(value)
        case .raw(let text): return text
        case .array(let items): return "[" + items.map(\.rendered).joined(separator: ",") + "]"
        case .object(let fields):
            return "{" + fields.map { Self.quote($0.0) + ":" + $0.1.rendered }.joined(separator: ",") + "}"
        }
    }

    /// `text` as a JSON string literal, quotes included.
    public static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let c where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// The one JSON document every `dctl -o json` command prints on stdout, success or failure:
/// `{"api_version":"dctl/v1","command":"status","exit_code":2,"result":{...}|null,"error":{...}|null}`.
/// Its shape never depends on how many results there are; lists are always arrays.
public enum Envelope {
    public static let apiVersion = "dctl/v1"

    public static func render(command: String, exit: ExitStatus, result: JSONValue?, error: CommandFailure?) -> String {
        let errorValue: JSONValue = error.map { failure in
            .object([
                ("code", .string(failure.code)), ("message", .string(failure.message)),
                ("hint", failure.hint.isEmpty ? .null : .string(failure.hint)),
            ])
        } ?? .null
        return JSONValue.object([
            ("api_version", .string(apiVersion)), ("command", .string(command)), ("exit_code", .int(Int64(exit.rawValue))),
            ("result", result ?? .null), ("error", errorValue),
        ]).rendered
    }
}

extension ClusterView {
    /// The `result` of `status`, `health` and `wait` in JSON. `status` per node is the node's Status JSON
    /// (SPEC.md) or `null`, with `error` saying why. With `pids` (`cluster status`), each node gets a `pid` too.
    public func json(pids: [UInt64: Int32]? = nil) -> JSONValue {
        .object([
            ("health", .string(health.rawValue)), ("leader_id", .uint(leaderID)), ("leader_address", .string(leaderAddress)),
            ("term", .uint(term)), ("voters_up", .int(Int64(votersUp))), ("voters", .int(Int64(voterCount))),
            ("tolerates", .int(Int64(tolerates))), ("reasons", .array(reasons.map { .string($0) })),
            (
                "nodes",
                .array(
                    rows.map { row in
                        var fields: [(String, JSONValue)] = [
                            ("id", .uint(row.id)), ("address", .string(row.address)),
                            ("metrics_address", .string(row.metricsAddress)), ("reachable", .bool(row.reachable)),
                            ("error", .string(row.error)), ("health", .string(row.health)),
                            ("lag_entries", .uint(row.lagEntries)), ("last_seen_ms_ago", .uint(row.lastSeenMsAgo)),
                            ("status", .encoded(row.status)),
                        ]
                        if let pids { fields.append(("pid", row.id.flatMap { pids[$0] }.map { .int(Int64($0)) } ?? .null)) }
                        return JSONValue.object(fields)
                    })
            ),
        ])
    }
}

// MARK: - Tables

/// ANSI colours, used only when stdout is a terminal and `NO_COLOR` is unset.
public struct Palette: Sendable {
    public var enabled: Bool

    public init(enabled: Bool) {
        self.enabled = enabled
    }

    public func green(_ text: String) -> String { wrap(text, "32") }
    public func yellow(_ text: String) -> String { wrap(text, "33") }
    public func red(_ text: String) -> String { wrap(text, "31") }
    public func bold(_ text: String) -> String { wrap(text, "1") }

    private func wrap(_ text: String, _ code: String) -> String { enabled ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
}

/// Left-aligned columns two spaces apart; the last column is not padded. `style` colours a cell after padding.
public func renderTable(
    header: [String], rows: [[String]], style: (_ row: Int, _ column: Int, _ text: String) -> String = { $2 }
) -> String {
    let all = [header] + rows
    let columns = header.count
    var widths = [Int](repeating: 0, count: columns)
    for row in all { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
    return all.enumerated().map { rowIndex, row in
        row.enumerated().map { index, cell in
            let padded = index == columns - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
            return rowIndex == 0 ? padded : style(rowIndex - 1, index, padded)
        }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
    }.joined(separator: "\n") + "\n"
}

/// `850ms`, `4.2s`, `3m10s`.
public func formatAge(milliseconds ms: UInt64) -> String {
    if ms < 1000 { return "\(ms)ms" }
    if ms < 60_000 { return String(format: "%.1fs", Double(ms) / 1000) }
    return "\(ms / 60_000)m\((ms % 60_000) / 1000)s"
}

extension ClusterView {
    /// The first line of `status` and the whole of `health`: the leader is always on it.
    public func summaryLine(palette: Palette = Palette(enabled: false)) -> String {
        let word: String
        switch health {
        case .healthy: word = palette.green(health.rawValue)
        case .degraded: word = palette.yellow(health.rawValue)
        case .unavailable: word = palette.red(health.rawValue)
        }
        let leader = leaderID.map { "leader node \($0) at \(leaderAddress ?? "?")" } ?? "no leader"
        let termText = term.map { ", term \($0)" } ?? ""
        let quorum = voterCount > 0
            ? ", voters up \(votersUp)/\(voterCount) (tolerates \(tolerates) more failure\(tolerates == 1 ? "" : "s"))"
            : ""
        return "cluster \(word): \(leader)\(termText)\(quorum)"
    }

    /// `dctl status` as a table: the summary line, then one row per node.
    /// With `pids` (`cluster status`), a PID column follows ID.
    public func table(palette: Palette = Palette(enabled: false), pids: [UInt64: Int32]? = nil) -> String {
        var header = ["ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAG", "LAST SEEN", "HEALTH"]
        if pids != nil { header.insert("PID", at: 1) }
        let shift = pids != nil ? 1 : 0
        let cells: [[String]] = rows.map { row in
            let status = row.status
            let dash = "-"
            let role: String = status?.role.rawValue ?? dash
            let term: String = status.map { String($0.term) } ?? dash
            let commit: String = status.map { String($0.commitIndex) } ?? dash
            let applied: String = status.map { String($0.appliedIndex) } ?? dash
            let lag: String = row.lagEntries.map { String($0) } ?? dash
            let seen: String = row.lastSeenMsAgo.map { formatAge(milliseconds: $0) + " ago" } ?? dash
            let id: String = row.id.map { String($0) } ?? "?"
            var cells: [String] = [id, row.address, role, term, commit, applied, lag, seen, row.health]
            if let pids {
                let pid: String = row.id.flatMap { pids[$0] }.map { String($0) } ?? dash
                cells.insert(pid, at: 1)
            }
            return cells
        }
        let table = renderTable(header: header, rows: cells) { rowIndex, column, text in
            let row = rows[rowIndex]
            switch column - shift {
            case 2 where row.status?.nodeID == leaderID: return palette.bold(palette.green(text))
            case 8 where !row.reachable: return palette.red(text)
            case 8 where row.health != "ok": return palette.yellow(text)
            default: return text
            }
        }
        return summaryLine(palette: palette) + "\n" + table
    }
}
