import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One network namespace per node, joined by a bridge in a hub namespace, with the harness on the host side.
///
/// ```
///   host (harness, clients)  10.A.B.254 --veth-- [hub ns: bridge] --veth-- [node ns i: eth0 10.A.B.i]
/// ```
///
/// Every name starts with `dch-<pid>-` (namespaces) or `dch<pid>` (the host's veth end), so concurrent runs never
/// collide and a later run can remove what a dead one left. Partitions are iptables DROP rules inside each node's
/// namespace (INPUT from and OUTPUT to the peers on the other side); the host's address is never blocked, so
/// clients reach every node whatever the partition. Deleting the namespaces removes everything: the bridge, the
/// veth pairs (the host end goes with its peer) and the rules. `teardown()` does it; `ChaosCleanup` does it at exit
/// or on a signal; `removeStale()` does it for runs whose process is gone.
// @unchecked Sendable: `up` and `blocked` are read and written under `lock`; the rest are `let`s.
public final class ChaosNetwork: @unchecked Sendable {
    public let prefix: String
    public let nodeIDs: [Int]
    /// The /24 the nodes live in, e.g. `10.213.77`.
    public let subnet: String
    private let hostLink: String
    private let lock = NSLock()
    private var up = false
    private var blocked: [Int: Set<Int>] = [:]

    /// Why netns partitions cannot run here, or nil when they can (root, `ip netns`, `iptables-restore`).
    public static func unavailableReason() -> String? {
        if geteuid() != 0 { return "not root (network namespaces and iptables need CAP_NET_ADMIN)" }
        for tool in ["ip", "iptables-restore", "iptables"] where !Command.exists(tool) {
            return "`\(tool)` not installed (apt-get install iproute2 iptables)"
        }
        let probe = "dch-probe-\(getpid())"
        do {
            try Command.run(["ip", "netns", "add", probe])
            defer { _ = try? Command.run(["ip", "netns", "del", probe]) }
            try Command.run(["ip", "netns", "exec", probe, "iptables", "-w", "-L", "INPUT", "-n"])
        } catch {
            return "network namespaces unusable: \(error)"
        }
        return nil
    }

    public init(nodeIDs: [Int]) {
        let pid = Int(getpid())
        self.prefix = "dch-\(pid)-"
        self.hostLink = "dch\(pid)h"
        self.nodeIDs = nodeIDs
        self.subnet = "10.\(200 + (pid / 256) % 50).\(pid % 256)"
    }

    public func namespace(_ id: Int) -> String { prefix + "n\(id)" }
    public var hub: String { prefix + "hub" }
    public func address(_ id: Int) -> String { "\(subnet).\(id)" }
    public var hostAddress: String { "\(subnet).254" }

    /// The script that removes everything this network created (idempotent).
    private var teardownScript: String {
        let names = ([hub] + nodeIDs.map(namespace)).map { "ip netns del \($0) 2>/dev/null" }
        return (names + ["ip link del \(hostLink) 2>/dev/null", "true"]).joined(separator: "; ")
    }

    /// Creates the namespaces, bridge and links. On any failure removes what it made and throws.
    public func setUp() throws {
        Self.removeStale()
        ChaosCleanup.setScript(teardownScript)
        do {
            try Command.run(["ip", "netns", "add", hub])
            try nsRun(hub, ["ip", "link", "set", "lo", "up"])
            try nsRun(hub, ["ip", "link", "add", "br0", "type", "bridge"])
            try nsRun(hub, ["ip", "link", "set", "br0", "up"])
            // The host's leg.
            try Command.run(["ip", "link", "add", hostLink, "type", "veth", "peer", "name", "host", "netns", hub])
            try nsRun(hub, ["ip", "link", "set", "host", "master", "br0", "up"])
            try Command.run(["ip", "addr", "add", "\(hostAddress)/24", "dev", hostLink])
            try Command.run(["ip", "link", "set", hostLink, "up"])
            for id in nodeIDs {
                let ns = namespace(id)
                try Command.run(["ip", "netns", "add", ns])
                try nsRun(ns, ["ip", "link", "set", "lo", "up"])
                try nsRun(hub, ["ip", "link", "add", "n\(id)", "type", "veth", "peer", "name", "eth0", "netns", ns])
                try nsRun(hub, ["ip", "link", "set", "n\(id)", "master", "br0", "up"])
                try nsRun(ns, ["ip", "addr", "add", "\(address(id))/24", "dev", "eth0"])
                try nsRun(ns, ["ip", "link", "set", "eth0", "up"])
            }
            lock.withLock { up = true }
        } catch {
            teardown()
            throw error
        }
    }

    /// Removes the namespaces (and with them the bridge, links and rules). Idempotent.
    public func teardown() {
        _ = try? Command.run(["sh", "-c", teardownScript])
        ChaosCleanup.setScript(nil)
        lock.withLock {
            up = false
            blocked = [:]
        }
    }

    /// Removes `dch-<pid>-*` namespaces and `dch<pid>h` links of processes that no longer exist.
    public static func removeStale() {
        guard let listing = try? Command.run(["ip", "netns", "list"]) else { return }
        for line in listing.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            let parts = name.split(separator: "-")
            guard parts.count == 3, parts[0] == "dch", let pid = Int32(parts[1]), pid != getpid() else { continue }
            if kill(pid, 0) != 0 && errno == ESRCH {
                _ = try? Command.run(["ip", "netns", "del", name])
                _ = try? Command.run(["ip", "link", "del", "dch\(pid)h"])
            }
        }
    }

    /// The argv that runs `command` inside node `id`'s namespace (`ip netns exec` execs, so the pid is the node's).
    public func wrap(_ id: Int, _ command: [String]) -> [String] {
        [Command.resolve("ip"), "netns", "exec", namespace(id)] + command
    }

    private func nsRun(_ ns: String, _ command: [String]) throws {
        try Command.run(["ip", "netns", "exec", ns] + command)
    }

    // MARK: Partitions

    /// Cuts the network so that only nodes in the same group talk to each other; a node in no group is isolated.
    /// Each node's rules are replaced atomically (`iptables-restore`).
    public func partition(_ groups: [[Int]]) throws {
        var reach: [Int: Set<Int>] = [:]
        for group in groups { for id in group { reach[id, default: []].formUnion(group) } }
        var plan: [Int: Set<Int>] = [:]
        for id in nodeIDs { plan[id] = Set(nodeIDs).subtracting(reach[id] ?? [id]).subtracting([id]) }
        try apply(plan)
    }

    /// Blocks exactly the given links (both directions); others stay open. Used for bridges.
    public func block(links: [(Int, Int)]) throws {
        var plan: [Int: Set<Int>] = Dictionary(uniqueKeysWithValues: nodeIDs.map { ($0, Set<Int>()) })
        for (a, b) in links {
            plan[a, default: []].insert(b)
            plan[b, default: []].insert(a)
        }
        try apply(plan)
    }

    /// Removes every rule.
    public func heal() throws {
        try apply(Dictionary(uniqueKeysWithValues: nodeIDs.map { ($0, Set<Int>()) }))
    }

    /// Which peers each node currently drops.
    public var currentBlocks: [Int: Set<Int>] { lock.withLock { blocked } }

    private func apply(_ plan: [Int: Set<Int>]) throws {
        for id in nodeIDs {
            var rules = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            for peer in (plan[id] ?? []).sorted() {
                rules += "-A INPUT -s \(address(peer))/32 -j DROP\n"
                rules += "-A OUTPUT -d \(address(peer))/32 -j DROP\n"
            }
            rules += "COMMIT\n"
            try Command.run(["ip", "netns", "exec", namespace(id), "iptables-restore", "-w"], input: rules)
        }
        lock.withLock { blocked = plan }
    }
}
