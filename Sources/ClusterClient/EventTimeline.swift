import ClusterAPI
import Foundation

/// One node's answer to `GET /events?follow=false`, or why there is none.
public struct NodeEventsProbe: Sendable {
    public var target: NodeTarget
    public var response: NodeEventsResponse?
    public var error: String?

    public init(target: NodeTarget, response: NodeEventsResponse?, error: String?) {
        self.target = target
        self.response = response
        self.error = error
    }
}

/// `dctl events`: every node's own events merged into one timeline (docs/dctl.md, "events"). Pure but for `fetch`.
public enum EventTimeline {
    /// `GET /events?follow=false&after=ID` of every target at once, in target order.
    public static func fetch(_ targets: [NodeTarget], after: [UInt64: UInt64] = [:], timeout: Duration) async
        -> [NodeEventsProbe]
    {
        await withTaskGroup(of: (Int, NodeEventsProbe).self) { group in
            for (index, target) in targets.enumerated() {
                group.addTask {
                    let since = target.id.flatMap { after[$0] } ?? 0
                    return (index, await fetch(target, after: since, timeout: timeout))
                }
            }
            var probes = [NodeEventsProbe?](repeating: nil, count: targets.count)
            for await (index, probe) in group { probes[index] = probe }
            return probes.compactMap { $0 }
        }
    }

    static func fetch(_ target: NodeTarget, after: UInt64, timeout: Duration) async -> NodeEventsProbe {
        guard let metrics = target.metrics else {
            return NodeEventsProbe(target: target, response: nil, error: "no metrics address known")
        }
        do {
            let response = try await httpExchange(
                method: "GET", endpoint: metrics, path: "/events?follow=false&after=\(after)", timeout: timeout)
            guard response.status == 200 else {
                let why = response.status == 404 ? " (a node without /events: older version?)" : ""
                return NodeEventsProbe(
                    target: target, response: nil, error: "HTTP \(response.status) from \(metrics)/events\(why)")
            }
            let decoded = try WireJSON.decode(NodeEventsResponse.self, from: response.body)
            var known = target
            known.id = decoded.nodeID
            return NodeEventsProbe(target: known, response: decoded, error: nil)
        } catch let error as TransportError {
            return NodeEventsProbe(target: target, response: nil, error: error.reason)
        } catch {
            return NodeEventsProbe(target: target, response: nil, error: "unreadable /events: \(error)")
        }
    }

    /// Every answered event in one timeline: by the node's time, then node id, then sequence. Each node stamps its
    /// own events, so two nodes' events are ordered only as well as their clocks agree (`dctl doctor` shows the
    /// offsets).
    public static func merge(_ probes: [NodeEventsProbe]) -> [NodeEvent] {
        probes.compactMap(\.response).flatMap(\.events).sorted(by: NodeEvent.timelineOrder)
    }

    /// `2026-12-05T05:13:27.123Z  node 1  term 7  election_won  won the election for term 7 with 2 of 3 votes`.
    public static func line(_ event: NodeEvent) -> String {
        "\(timestamp(event.atMs))  node \(event.nodeID)  term \(event.term)  "
            + "\(event.kind.rawValue.padding(toLength: 18, withPad: " ", startingAt: 0))  \(event.message)"
    }

    /// RFC 3339 UTC with milliseconds, without Foundation's formatters (stable across locales).
    public static func timestamp(_ ms: UInt64) -> String {
        let seconds = Int64(ms / 1000)
        let days = seconds / 86_400
        let rest = seconds % 86_400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = doy - (153 * mp + 2) / 5 + 1
        let month = mp < 10 ? mp + 3 : mp - 9
        let year = yoe + era * 400 + (month <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let millis = ms % 1000
        let m = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(year)-\(two(month))-\(two(day))T\(two(rest / 3600)):\(two(rest % 3600 / 60)):\(two(rest % 60)).\(m)Z"
    }

    /// The unreachable nodes as lines (they appear in every output).
    public static func failures(_ probes: [NodeEventsProbe]) -> [String] {
        probes.compactMap { probe in probe.error.map { "\(probe.target.label): unreachable: \($0)" } }
    }
}
