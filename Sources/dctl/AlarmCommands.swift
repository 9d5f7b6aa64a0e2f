import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

/// `dctl alarm list|disarm`: the NOSPACE alarm of each node (docs/http-api.md, "Disk space").
struct Alarm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or disarm the nodes' alarms (NOSPACE: writes refused while the disk is full or over quota).",
        subcommands: [AlarmList.self, AlarmDisarm.self])
}

/// One row per node: its alarm or `-`, and the space its data directory uses against its quota.
private func alarmOutcome(_ results: [(NodeTarget, Result<AlarmsResponse, CommandFailure>)], disarming: Bool) -> Outcome {
    var rows: [[String]] = []
    var json: [JSONValue] = []
    var raised = 0
    var failed = 0
    var answered = 0
    for (target, result) in results {
        switch result {
        case .success(let response):
            answered += 1
            raised += response.alarms.count
            let alarm = response.alarms.first
            rows.append([
                String(response.nodeID), target.client.description, alarm?.type ?? "-",
                "\(response.backendBytes)/\(response.quotaBytes)", alarm?.reason ?? "",
            ])
            json.append(
                .object([
                    ("node_id", .uint(response.nodeID)), ("address", .string(target.client.description)),
                    ("alarms", .raw((try? String(decoding: WireJSON.encode(response.alarms), as: UTF8.self)) ?? "[]")),
                    ("backend_bytes", .uint(response.backendBytes)), ("quota_bytes", .uint(response.quotaBytes)),
                ]))
        case .failure(let failure):
            failed += 1
            rows.append([target.id.map(String.init) ?? "-", target.client.description, "?", "-", failure.message])
            json.append(
                .object([
                    ("node_id", .uint(target.id)), ("address", .string(target.client.description)),
                    ("error", .string(failure.message)), ("code", .string(failure.code)),
                ]))
        }
    }
    let exit: ExitStatus
    if answered == 0 {
        exit = .unavailable
    } else if disarming {
        exit = raised > 0 || failed > 0 ? .failed : .ok
    } else {
        exit = raised > 0 || failed > 0 ? .degraded : .ok
    }
    let text = renderTable(header: ["ID", "ADDRESS", "ALARM", "USED/QUOTA", "REASON"], rows: rows)
    return Outcome(exit: exit, result: .array(json), text: text)
}

struct AlarmList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "Each node's alarms; exit 0 none, 2 an alarm is raised or a node did not answer, 4 none answered.")

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.execute("alarm list") { context throws(CommandFailure) in
            let client = try context.client()
            var results: [(NodeTarget, Result<AlarmsResponse, CommandFailure>)] = []
            for target in client.targets { results.append((target, await client.alarms(of: target))) }
            return alarmOutcome(results, disarming: false)
        }
    }
}

struct AlarmDisarm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disarm",
        abstract: "Clear each node's alarms once there is space again (admin); exit 0 when none is left, 1 otherwise.",
        discussion: """
            A node clears NOSPACE only when its data directory is back within quota_backend_bytes and no log write \
            is waiting for the disk; otherwise it answers 409 with what is still wrong. While the alarm is raised \
            the node compacts its log at every applied entry, which is often enough; else free space on the volume \
            or raise quota_backend_bytes (and restart the node), then disarm again.
            """)

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        try await global.execute("alarm disarm") { context throws(CommandFailure) in
            let client = try context.client()
            var results: [(NodeTarget, Result<AlarmsResponse, CommandFailure>)] = []
            for target in client.targets { results.append((target, await client.alarms(of: target, disarm: true))) }
            return alarmOutcome(results, disarming: true)
        }
    }
}
