import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

/// `dctl events [--follow]`: every node's own events (`GET /events` on its metrics port) as one timeline.
struct Events: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Every node's own events (elections, leaders, membership, snapshots, slow fsyncs, alarms) merged.",
        discussion: """
            Reads GET /events?follow=false on each node's metrics port (the node's recent history, stamped with its \
            own clock) and prints one timeline ordered by time, then node. Unreachable nodes are listed (stderr, \
            and "unreachable" in JSON). Exit 0 when every node answered, 2 when some did not, 4 when none did. \
            With --follow, asks every --interval for newer events and prints them as they come, one line each \
            (-o json: one event object per line), until interrupted (130).
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(name: .shortAndLong, help: "Keep printing new events until interrupted.") var follow = false
    @Option(help: ArgumentHelp("With --follow, time between reads.", valueName: "duration"))
    var interval = DurationArgument(.milliseconds(500))

    func run() async throws {
        try await global.execute("events") { context throws(CommandFailure) in
            let (client, local) = try context.statusClient()
            // Members the config dir knows beyond the endpoints are asked too (the status survey finds them).
            let probes = await client.survey(extra: local)
            let targets = probes.map(\.target)
            let timeout = context.probeTimeout
            var answers = await EventTimeline.fetch(targets, timeout: timeout)
            let failures = EventTimeline.failures(answers)
            let events = EventTimeline.merge(answers)
            guard follow else {
                for failure in failures { context.warn(failure) }
                let answered = answers.filter { $0.response != nil }.count
                let exit: ExitStatus = answered == 0 ? .unavailable : failures.isEmpty ? .ok : .degraded
                let json = JSONValue.object([
                    ("events", .array(events.map { JSONValue.encoded($0) })),
                    ("unreachable", .array(answers.filter { $0.error != nil }.map { probe in
                        .object([
                            ("node_id", .uint(probe.target.id)), ("address", .string(probe.target.client.description)),
                            ("error", .string(probe.error)),
                        ])
                    })),
                ])
                let text = events.map(EventTimeline.line).joined(separator: "\n") + (events.isEmpty ? "" : "\n")
                return Outcome(exit: exit, result: json, text: text)
            }
            // Follow: print what is there, then poll each node for events after the last one seen from it.
            var last: [UInt64: UInt64] = [:]
            var reported = Set<String>()
            while true {
                for failure in EventTimeline.failures(answers) where !reported.contains(failure) {
                    context.warn(failure)
                    reported.insert(failure)
                }
                for probe in answers {
                    if let response = probe.response, let newest = response.events.last {
                        last[response.nodeID] = newest.seq
                    }
                }
                for event in EventTimeline.merge(answers) {
                    let line = context.json
                        ? (try? String(decoding: WireJSON.encode(event), as: UTF8.self)) ?? "{}"
                        : EventTimeline.line(event)
                    FileHandle.standardOutput.write(Data((line + "\n").utf8))
                }
                try? await Task.sleep(for: interval.duration)
                answers = await EventTimeline.fetch(targets, after: last, timeout: timeout)
            }
        }
    }
}
