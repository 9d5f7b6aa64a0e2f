/// One standard benchmark scenario: what to send and with how many connections.
public struct Scenario: Sendable, Equatable {
    public var name: String
    public var operation: BenchOperation
    public var conns: Int
    public var keySpace: Int
    /// Send everything to the first endpoint (the scripts put the leader first, for both systems).
    public var firstEndpointOnly: Bool

    public init(name: String, operation: BenchOperation, conns: Int, keySpace: Int, firstEndpointOnly: Bool = false) {
        self.name = name
        self.operation = operation
        self.conns = conns
        self.keySpace = keySpace
        self.firstEndpointOnly = firstEndpointOnly
    }

    /// The standard scenarios, in the order they run: the same shapes as `../shared/bench/compare.sh`.
    ///
    /// - write-1: one client, one connection, to the first endpoint.
    /// - write-hc: `conns` clients on `conns` connections spread over every endpoint.
    /// - read-linearizable, read-lease, read-eventual: the same spread; keys from the preloaded key space.
    /// - hotkey: 10 keys, 50 % put / 50 % linearizable get.
    public static func standard(conns: Int = 120, keySpace: Int = 100_000) -> [Scenario] {
        [
            Scenario(name: "write-1", operation: .put, conns: 1, keySpace: keySpace, firstEndpointOnly: true),
            Scenario(name: "write-hc", operation: .put, conns: conns, keySpace: keySpace),
            Scenario(name: "read-linearizable", operation: .get(.linearizable), conns: conns, keySpace: keySpace),
            Scenario(name: "read-lease", operation: .get(.lease), conns: conns, keySpace: keySpace),
            Scenario(name: "read-eventual", operation: .get(.eventual), conns: conns, keySpace: keySpace),
            Scenario(
                name: "hotkey", operation: .mixed(writePercent: 50, readConsistency: .linearizable), conns: conns,
                keySpace: 10),
        ]
    }

    /// What etcd runs for this scenario, in words (it has no lease read).
    public func etcdNote() -> String? {
        switch operation {
        case .get(.lease), .get(.eventual): "etcd: serializable range"
        default: nil
        }
    }
}
