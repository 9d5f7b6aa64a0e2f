import ArgumentParser
import Chaos
import Foundation

/// `dchaos`: the fault-injection torture test against real `dnode` processes (docs/chaos.md).
@main
struct DChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dchaos",
        abstract:
            "Run a dnode cluster under faults with concurrent clients, then check linearizability and convergence.",
        discussion:
            "Exit 0: valid. Exit 1: a safety violation or a liveness/convergence problem. Exit 2: checker gave up.")

    @Option(help: "Seconds of workload under faults.") var duration: Int = 60
    @Option(help: "Seed of the workload and nemesis schedule.") var seed: UInt64 = 1
    @Option(help: "Cluster size (3 or 5).") var nodes: Int = 3
    static let plantHelp = "Test-only: plant a bug in every node (read-without-quorum, lease-stale-clock, "
        + "commit-old-term, vote-without-log-check)."
    static let faultsHelp = "Comma-separated fault kinds (\(FaultKind.allCases.map(\.rawValue).joined(separator: ", "))); "
        + "default all of them."
    @Option(help: ArgumentHelp(plantHelp)) var plant: String?
    @Option(help: ArgumentHelp(faultsHelp)) var faults: String?
    @Option(help: "The dnode binary (default: next to dchaos).") var dnode: String?
    @Option(help: "Directory for run files.") var workDir: String?
    @Option(help: "Keys in use at a time.") var keys: Int = 4
    @Option(help: "Clients per key.") var clientsPerKey: Int = 3
    @Option(help: "election_timeout_min of the nodes, ms.") var electionMin: Int = 300
    @Option(help: "election_timeout_max of the nodes, ms.") var electionMax: Int = 600
    @Flag(help: "Run on loopback without network namespaces (no partitions).") var noNetwork = false
    @Flag(help: "Keep the run directory even when valid.") var keep = false

    func run() async throws {
        var options = ChaosRun.Options(dnodeBinary: try locateDnode())
        options.nodes = nodes
        options.seed = seed
        options.duration = .seconds(duration)
        options.useNetwork = !noNetwork
        options.keepFiles = keep
        options.cluster.plantedBug = plant.flatMap { $0.isEmpty ? nil : $0 }
        options.cluster.electionTimeoutMinMs = electionMin
        options.cluster.electionTimeoutMaxMs = electionMax
        options.workload.keys = keys
        options.workload.clientsPerKey = clientsPerKey
        if let workDir { options.workDirectory = URL(fileURLWithPath: workDir) }
        if let faults, !faults.isEmpty {
            var kinds: [FaultKind] = []
            for name in faults.split(separator: ",") {
                guard let kind = FaultKind(rawValue: String(name)) else {
                    throw ValidationError("unknown fault kind \(name); known: \(FaultKind.allCases.map(\.rawValue))")
                }
                kinds.append(kind)
            }
            options.nemesis.kinds = kinds
        }
        let report = try await ChaosRun(options: options).run { line in
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
        print(report.summary)
        if !report.valid {
            throw ExitCode(report.violations.isEmpty && report.problems.isEmpty ? 2 : 1)
        }
    }

    private func locateDnode() throws -> String {
        if let dnode { return dnode }
        if let environment = ProcessInfo.processInfo.environment["DNODE_BIN"], !environment.isEmpty {
            return environment
        }
        let me = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        let sibling = me.deletingLastPathComponent().appendingPathComponent("dnode").path
        guard FileManager.default.isExecutableFile(atPath: sibling) else {
            throw ValidationError("no dnode next to dchaos (\(sibling)); build it or pass --dnode")
        }
        return sibling
    }
}
