// swift-tools-version:6.0
import PackageDescription

/// Deliberate bugs (`PlantedBug`) that the simulator and the torture test must catch exist only in test builds: debug
/// builds, and the separate release builds of `make sim|chaos PLANT=...` (`-Xswiftc -DPLANTED_BUGS`). A release dnode
/// neither contains them nor reads `DNODE_PLANTED_BUG`.
let plantedBugs: SwiftSetting = .define("PLANTED_BUGS", .when(configuration: .debug))

/// The core and the simulator are optimised even in debug builds: `swift test` runs hundreds of simulated seeds.
let optimizedInTests: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug)), plantedBugs]

let package = Package(
    name: "dengine-swift",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "dnode", targets: ["Node"]),
        .executable(name: "dctl", targets: ["dctl"]),
        .executable(name: "dtop", targets: ["dtop"]),
        .executable(name: "raftsim", targets: ["raftsim"]),
        .executable(name: "dchaos", targets: ["dchaos"]),
        .executable(name: "dbench", targets: ["dbench"]),
        .library(name: "RaftCore", targets: ["RaftCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // TLS (BoringSSL), X.509 certificates and hashes: the secure mode (docs/security.md).
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-crypto", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        // Pure consensus: no Foundation I/O, no clocks, no threads, no logging.
        .target(name: "RaftCore", swiftSettings: optimizedInTests),
        // Simulated network, clock and disk; invariant checkers; golden DSL. Not a product.
        .target(name: "RaftTestKit", dependencies: ["RaftCore"], swiftSettings: optimizedInTests),
        // The shell's one monotonic clock (CLOCK_MONOTONIC); RaftCore never reads a clock. No dependencies.
        .target(name: "SystemClock"),
        // Write-ahead log segments, hard state, snapshot files, recovery.
        .target(name: "RaftStorage", dependencies: ["RaftCore", "SystemClock"]),
        // Deterministic key-value state machine.
        .target(name: "KVStore", dependencies: ["RaftCore"]),
        // Wire types shared by node, dctl and dtop.
        .target(name: "ClusterAPI"),
        // The one HTTP/1.1 client of the tools and tests: endpoint and host:port parsing, response parser, blocking
        // exchange over POSIX sockets with one deadline. Foundation only (TLS is layered on by ClusterClient).
        .target(name: "HTTPClient"),
        // Node configuration: TOML file, env overrides, validation (exit 78 on a bad file).
        .target(
            name: "NodeConfig",
            dependencies: ["ClusterAPI", "HTTPClient", .product(name: "TOMLKit", package: "TOMLKit")]),
        // The tools' client: endpoints (config dir), HTTP over POSIX sockets with deadlines, parallel status probes,
        // cluster health, table and JSON rendering. Never imports RaftCore.
        .target(
            name: "ClusterClient",
            dependencies: [
                "ClusterAPI", "HTTPClient", "NodeConfig", "NodeSecurity",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Secure mode: certificate authority and certificates (dctl certs), TLS contexts with reloading, peer and
        // client identities bound in certificates, roles, bearer tokens stored hashed.
        .target(
            name: "NodeSecurity",
            dependencies: [
                "ClusterAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        // Peer protocol: binary codec, shared-port detection, outbound/inbound peer connections (NIO).
        .target(
            name: "PeerTransport",
            dependencies: [
                "RaftCore",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Client HTTP API and metrics port (NIOHTTP1): decoding, validation, error envelope, hand-written JSON.
        .target(
            name: "HTTPAPI",
            dependencies: [
                "ClusterAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The shell: drives RaftCore (ticks, ready loop, proposals, reads), storage, transport, HTTP, metrics.
        .target(
            name: "NodeRuntime",
            dependencies: [
                "RaftCore", "RaftStorage", "KVStore", "ClusterAPI", "NodeConfig", "PeerTransport", "HTTPAPI",
                "NodeSecurity", "SystemClock",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: [plantedBugs]
        ),
        // Linearizability checker (Wing & Gong / Lowe, porcupine-style) for the torture test; the seeded RNG and clock only.
        .target(name: "Linearizability", dependencies: ["RaftCore", "SystemClock"], swiftSettings: optimizedInTests),
        // Fault-injection torture test: real dnode processes, network namespaces, nemesis, workload, checks.
        .target(name: "Chaos", dependencies: ["Linearizability", "ClusterAPI", "ClusterClient", "RaftCore"]),
        .executableTarget(
            name: "dchaos",
            dependencies: ["Chaos", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "Node", dependencies: ["NodeRuntime"]),
        .executableTarget(
            name: "dctl",
            dependencies: [
                "ClusterAPI", "ClusterClient", "NodeConfig", "BenchKit", "NodeSecurity",
                // `snapshot status|restore` read the state-machine image and write data directories.
                "KVStore", "RaftCore", "RaftStorage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // dtop's pure view model: (previous model, polled statuses) -> rows, events, health; frame layout.
        .target(name: "DashboardCore", dependencies: ["ClusterAPI", "HTTPClient"]),
        // ncursesw, with static inline shims for the A_* / ACS_* macros (libncurses-dev).
        .systemLibrary(name: "CNcurses", path: "Sources/CNcurses", providers: [.apt(["libncurses-dev"])]),
        .executableTarget(
            name: "dtop",
            dependencies: [
                "ClusterAPI", "DashboardCore", "CNcurses", "ClusterClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Load generator for dengine and etcd: HdrHistogram, NIO keep-alive client, scenarios, reports (dbench, dctl bench).
        .target(
            name: "BenchKit",
            dependencies: [
                // RaftCore for its SplitMix64 only (pure: no I/O, clocks or threads).
                "ClusterClient", "RaftCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "dbench", dependencies: ["BenchKit"]),
        // Storage benchmark (make bench-storage) and the crash tests' child process.
        .executableTarget(name: "storagebench", dependencies: ["RaftCore", "RaftStorage", "SystemClock"]),
        .executableTarget(
            name: "raftsim",
            dependencies: ["RaftCore", "RaftTestKit", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "RaftCoreTests", dependencies: ["RaftCore", "RaftTestKit"], exclude: ["testdata"]),
        .testTarget(name: "RaftStorageTests", dependencies: ["RaftCore", "RaftStorage", "RaftTestKit"]),
        .testTarget(name: "KVStoreTests", dependencies: ["RaftCore", "KVStore"]),
        .testTarget(name: "ClusterAPITests", dependencies: ["ClusterAPI"]),
        .testTarget(
            name: "BenchKitTests",
            dependencies: ["BenchKit", "HTTPClient", .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .testTarget(name: "LinearizabilityTests", dependencies: ["Linearizability"]),
        // Checks that the docs agree with the repository (the targets in docs/architecture.md, links in README.md).
        .testTarget(name: "RepositoryTests"),
        .testTarget(name: "DashboardCoreTests", dependencies: ["DashboardCore", "ClusterAPI"], exclude: ["testdata"]),
        // Runs the built `dtop` in tmux against real `dnode` processes (never linked in).
        .testTarget(
            name: "DtopTests", dependencies: ["Chaos", "ClusterAPI", "ClusterClient", "DashboardCore", "ClusterTestSupport"],
            exclude: ["testdata"]),
        .testTarget(name: "NodeConfigTests", dependencies: ["NodeConfig", "ClusterAPI"]),
        // Process-level tests: run the built `dnode` binaries (never linked in) as a local cluster.
        // Shared by the process-level suites: LocalCluster (real dnode processes on free ports), HTTP client, waits.
        .target(
            name: "ClusterTestSupport", dependencies: ["ClusterAPI", "Chaos", "ClusterClient", "HTTPClient", "NodeSecurity"],
            path: "Tests/ClusterTestSupport"),
        .testTarget(
            name: "ClusterTests",
            dependencies: [
                "ClusterAPI", "ClusterTestSupport", "ClusterClient", "HTTPClient", "NodeSecurity", "PeerTransport", "RaftCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        // Certificates, identities, tokens, TLS contexts (no processes).
        .testTarget(
            name: "NodeSecurityTests",
            dependencies: [
                "NodeSecurity", "ClusterAPI",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
            ]
        ),
        // The torture test (short runs), the planted-bug check, and fuzzing of the HTTP layer and peer decoder.
        .testTarget(
            name: "ChaosTests",
            dependencies: [
                "Chaos", "Linearizability", "ClusterAPI", "ClusterClient", "ClusterTestSupport", "PeerTransport",
                "RaftCore", "KVStore",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "ClusterClientTests", dependencies: ["ClusterClient", "ClusterAPI"]),
        // The node's shell in process: pending requests, membership checks, status, the Raft server on a real data
        // directory (no processes).
        .testTarget(
            name: "NodeRuntimeTests",
            dependencies: [
                "NodeRuntime", "RaftCore", "RaftStorage", "KVStore", "ClusterAPI", "PeerTransport", "NodeConfig",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Runs the built `dctl` (and `dnode`) binaries; golden files in Tests/DctlTests/testdata.
        .testTarget(name: "DctlTests", dependencies: ["ClusterClient", "ClusterAPI", "Chaos"], exclude: ["testdata"]),
        .testTarget(
            name: "HTTPAPITests",
            dependencies: [
                "HTTPAPI", "ClusterAPI", "HTTPClient",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "PeerTransportTests",
            dependencies: [
                "PeerTransport",
                "RaftCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
