import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

// MARK: - join

struct Join: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start node N from <config-dir>/nN.toml and wait until the cluster lists it as a learner.",
        discussion: """
            A node that is not a voter of its bootstrap configuration (role = 4 in its own initial_cluster entry) \
            asks the leader to add it when it starts; dctl starts it (unless it is already running) and waits up \
            to --timeout (default 30s) until /cluster lists it. With --address, dctl starts nothing and sends \
            POST /join {"node_id":N,"address":A} itself, for a node on another host. Promote it with \
            `dctl promote N --wait` once it has caught up.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var local: LocalOptions
    @Option(help: ArgumentHelp("Add a node that runs elsewhere, reachable at host:port; start nothing.", valueName: "host:port"))
    var address: String?
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("join") { context throws(CommandFailure) in
            let clock = ContinuousClock()
            let deadline = clock.now + context.timeout(default: .seconds(30))
            var pid: Int32?
            if let address {
                _ = try await context.client(timeout: clock.now.duration(to: deadline)).join(id: node, address: address)
            } else {
                let all = context.localNodes()
                let selected = try context.selectNodes([node], local: all)
                pid = local.processes.livePID(node)
                if pid == nil {
                    _ = try await context.start(selected, local: all, options: local, needLeader: false)
                    pid = local.processes.livePID(node)
                }
            }
            let client = try context.client(timeout: .seconds(2))
            var last = "no answer yet"
            while clock.now < deadline {
                do throws(CommandFailure) {
                    let (cluster, _) = try await client.cluster()
                    if let member = cluster.members.first(where: { $0.id == node }) {
                        let role = member.role == .learner ? "a learner" : "a \(member.role.rawValue)"
                        return Outcome(
                            result: .object([
                                ("node", .uint(node)), ("address", .string(member.address)),
                                ("role", .string(member.role.rawValue)), ("pid", pid.map { .int(Int64($0)) } ?? .null),
                            ]),
                            text: "node \(node) joined as \(role) at \(member.address)"
                                + (member.role == .learner ? "; promote it with `dctl promote \(node) --wait`\n" : "\n"))
                    }
                    last = "members are \(cluster.members.map(\.id))"
                } catch {
                    last = error.message
                }
                try? await Task.sleep(for: .milliseconds(100))
            }
            throw CommandFailure(
                .timeout, code: "timeout", "node \(node) is not a member yet (\(last))",
                hint: "look at logs/\(node)/d.log (the node logs each join attempt); a longer --timeout waits longer")
        }
    }
}

// MARK: - promote

struct Promote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make learner N a voter (refused with its progress while it is not caught up).",
        discussion: """
            A learner is caught up when it is not receiving a snapshot, answered the leader within an election \
            timeout, and is at most 100 entries behind the leader's last index. Without --wait a learner that is \
            behind is refused (exit 1, code not_caught_up, with match index and lag). With --wait dctl retries \
            until it is promoted or --timeout (default 30s) passes (exit 5), reporting the lag on stderr.
            """)

    @OptionGroup var global: GlobalOptions
    @Flag(help: "Retry until the learner has caught up and is promoted.") var wait = false
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("promote") { context throws(CommandFailure) in
            let clock = ContinuousClock()
            let deadline = clock.now + context.timeout(default: wait ? .seconds(30) : .seconds(5))
            var lastReport = clock.now - .seconds(10)
            var lastFailure: CommandFailure?
            repeat {
                let remaining = clock.now.duration(to: deadline)
                do throws(CommandFailure) {
                    let (response, _) = try await context.client(timeout: min(remaining, .seconds(5))).promote(id: node)
                    return Outcome(
                        result: .object([("node", .uint(node)), ("index", .uint(response.index))]),
                        text: "node \(node) is a voter (configuration index \(response.index))\n")
                } catch {
                    let retryable = error.code == APIErrorCode.notCaughtUp.rawValue
                        || error.code == APIErrorCode.membershipChangeInProgress.rawValue
                        || error.exit == .unavailable
                    guard wait, retryable else { throw error }
                    lastFailure = error
                    if clock.now - lastReport >= .seconds(1) {
                        lastReport = clock.now
                        context.warn("waiting: \(error.message)")
                    }
                }
                try? await Task.sleep(for: .milliseconds(200))
            } while clock.now < deadline
            throw CommandFailure(
                .timeout, code: "timeout",
                "node \(node) was not promoted within the timeout: \(lastFailure?.message ?? "no answer")",
                hint: "`dctl status` shows its lag; a longer --timeout waits longer")
        }
    }
}

// MARK: - remove

struct Remove: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove member N (a removed leader steps down; the last voter cannot be removed).",
        discussion: """
            Answers once the change has committed. The removed node stays up but takes no part: it answers every \
            request with 503 and reports role "removed" in its status; stop it with `dctl node stop N --force`.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("remove") { context throws(CommandFailure) in
            let (response, _) = try await context.client(timeout: .seconds(10)).remove(id: node)
            return Outcome(
                result: .object([("node", .uint(node)), ("index", .uint(response.index))]),
                text: "node \(node) removed (configuration index \(response.index))\n")
        }
    }
}

// MARK: - transfer-leader

struct TransferLeader: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer-leader", abstract: "Hand leadership to voter N; waits until it leads.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The node id.") var node: UInt64

    func run() async throws {
        try await global.execute("transfer-leader") { context throws(CommandFailure) in
            let (response, _) = try await context.client(timeout: .seconds(10)).transferLeader(to: node)
            return Outcome(
                result: .object([("leader", .uint(response.nodeID)), ("commit_index", .uint(response.index))]),
                text: "node \(response.nodeID) is the leader\n")
        }
    }
}
