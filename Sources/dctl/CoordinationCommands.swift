import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation
import KVStore
import NodeConfig
import RaftCore
import RaftStorage

// MARK: - watch

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Follow the changes of a key or a prefix (one line per event).",
        discussion: """
            Prints `INDEX put KEY VALUE`, `INDEX delete KEY` or `INDEX expire KEY` per event (-o json: one WatchEvent \
            object per line). Any node serves a watch from its applied state. When the node dies or drops the watch, \
            dctl reconnects to the next endpoint with since = the last complete index + 1: no event is lost or \
            printed twice. A since older than the node's history exits 1 (410 compacted, with the oldest index). \
            Runs until interrupted, or until --count events were printed. Plaintext clusters only.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The key to watch (or use --prefix).") var key: String?
    @Option(help: "Watch every key starting with this prefix.") var prefix: String?
    @Option(help: "Start at this log index (default: changes from now on).") var since: UInt64?
    @Option(help: "Exit after this many events.") var count: Int?

    func validate() throws {
        guard (key == nil) != (prefix == nil) else { throw ValidationError("give a key or --prefix, not both") }
        if let since, since == 0 { throw ValidationError("--since must be a positive index") }
        if let count, count <= 0 { throw ValidationError("--count must be positive") }
    }

    func run() async throws {
        try await global.execute("watch") { context throws(CommandFailure) in
            guard ClientSecurity.current.tls == nil else {
                throw CommandFailure(.usage, code: "usage", "dctl watch does not speak TLS yet; use curl with --cacert")
            }
            let selector = key.map { "key=\(ClusterClient.queryEscapeValue($0))" }
                ?? "prefix=\(ClusterClient.queryEscapeValue(prefix ?? ""))"
            var watch = ResumingWatch(targets: try context.targets(), selector: selector, since: since)
            let json = context.json
            let limit = count
            let outcome = await Self.follow(&watch, json: json, limit: limit, warn: context.warn)
            switch outcome {
            case .success:
                return Outcome(text: "", streamed: true)
            case .failure(let failure):
                throw failure
            }
        }
    }

    /// Runs the watch on its own thread (it blocks on sockets), printing each event as it comes.
    private static func follow(
        _ watch: inout ResumingWatch, json: Bool, limit: Int?, warn: @escaping @Sendable (String) -> Void
    ) async -> Result<Int, CommandFailure> {
        let start = watch
        let (result, _) = await withCheckedContinuation { (continuation: CheckedContinuation<(Result<Int, CommandFailure>, UInt64?), Never>) in
            let thread = Thread {
                var watch = start
                var printed = 0
                do {
                    try watch.run(
                        onEvent: { event in
                            let line: String
                            if json {
                                line = (try? WireJSON.encode(event)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
                            } else {
                                switch event.type {
                                case .put: line = "\(event.index) put \(event.key) \(event.value ?? "")"
                                case .delete, .expire: line = "\(event.index) \(event.type.rawValue) \(event.key)"
                                }
                            }
                            FileHandle.standardOutput.write(Data((line + "\n").utf8))
                            printed += 1
                            return limit.map { printed < $0 } ?? true
                        },
                        onNote: { warn($0) })
                    continuation.resume(returning: (.success(printed), watch.next))
                } catch let error as APIError {
                    var message = "watch: \(error.message)"
                    if let oldest = error.oldestIndex { message += " (oldest index available: \(oldest))" }
                    continuation.resume(
                        returning: (.failure(CommandFailure(ExitStatus(error.code), code: error.code.rawValue, message)), nil))
                } catch {
                    continuation.resume(
                        returning: (
                            .failure(CommandFailure(.unavailable, code: "unreachable", "watch: no node could serve it: \(error)")),
                            nil
                        ))
                }
            }
            thread.start()
        }
        return result
    }
}

extension ClusterClient {
    /// Percent-escapes a query value (everything but unreserved characters).
    static func queryEscapeValue(_ text: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

// MARK: - txn

struct Txn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a transaction read as JSON from a file or stdin.",
        discussion: """
            The JSON is POST /txn's body: {"compare":[{"key","op":"value|index|exists","cmp":"=|!=|<|>","target"}], \
            "success":[{"op":"put|delete|get","key","value"}],"failure":[...]}. Prints SUCCEEDED or FAILED (which \
            branch ran), then one line per operation result. Exit 0 either way.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var idempotency: IdempotencyOptions
    @Argument(help: "The JSON file, or '-' (default) for stdin.") var file: String = "-"

    func run() async throws {
        try await global.execute("txn") { context throws(CommandFailure) in
            let data: Data
            if file == "-" {
                data = FileHandle.standardInput.readDataToEndOfFile()
            } else {
                guard let read = FileManager.default.contents(atPath: file) else {
                    throw CommandFailure(.usage, code: "usage", "cannot read \(file)")
                }
                data = read
            }
            let request: TxnRequest
            do {
                request = try WireJSON.decode(TxnRequest.self, from: data)
            } catch {
                throw CommandFailure(.usage, code: "usage", "the transaction is not valid JSON of POST /txn's shape: \(error)")
            }
            let (response, target) = try await idempotency.configure(context.client())
                .txn(request, idempotencyKey: idempotency.key)
            var lines = [response.succeeded ? "SUCCEEDED" : "FAILED"]
            for result in response.results {
                switch result.op {
                case .put: lines.append("put \(result.key)")
                case .delete: lines.append("delete \(result.key) \(result.deleted == true ? 1 : 0)")
                case .get:
                    lines.append(
                        result.value.map { "get \(result.key) \($0) (mod_index \(result.modIndex ?? 0))" }
                            ?? "get \(result.key) (absent)")
                }
            }
            let encoded = (try? WireJSON.encode(response)).map { JSONValue.raw(String(decoding: $0, as: UTF8.self)) }
            return Outcome(
                result: .object([
                    ("txn", encoded ?? .null), ("node", .uint(target.id)), ("endpoint", .string(target.client.description)),
                ]),
                text: lines.joined(separator: "\n") + "\n")
        }
    }
}

// MARK: - snapshot

struct Snapshot: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back the cluster up and restore it (save, status, restore).",
        subcommands: [SnapshotSave.self, SnapshotStatus.self, SnapshotRestore.self])
}

/// A backup file: `SnapshotHeader.magicLine`, the header as one JSON line, the state-machine image.
enum BackupFile {
    struct Verified {
        var header: SnapshotHeader
        var image: [UInt8]
        var machine: KVStateMachine
        var meta: SnapshotMetadata
    }

    /// Parses and checks everything: the magic, the header, the image's checksum, that it restores, and that its
    /// index, term, key count and state hash are the header's.
    static func verify(_ data: Data) throws(CommandFailure) -> Verified {
        let bytes = [UInt8](data)
        func bad(_ why: String) -> CommandFailure {
            CommandFailure(.failed, code: "bad_snapshot", "not a valid snapshot backup: \(why)")
        }
        guard let first = bytes.firstIndex(of: 10),
            String(decoding: bytes[..<first], as: UTF8.self) == SnapshotHeader.magicLine
        else { throw bad("the first line is not '\(SnapshotHeader.magicLine)'") }
        guard let second = bytes[(first + 1)...].firstIndex(of: 10) else { throw bad("no header line") }
        let header: SnapshotHeader
        do {
            header = try WireJSON.decode(SnapshotHeader.self, from: Data(bytes[(first + 1)..<second]))
        } catch {
            throw bad("the header does not decode: \(error)")
        }
        let image = Array(bytes[(second + 1)...])
        guard image.count == header.imageBytes else {
            throw bad("the image is \(image.count) bytes, the header says \(header.imageBytes) (truncated?)")
        }
        guard KVStateMachine.checksumText(of: image) == header.checksum else { throw bad("checksum mismatch") }
        let machine: KVStateMachine
        let meta: SnapshotMetadata
        do {
            (machine, meta) = try KVStateMachine.restore(from: image)
        } catch {
            throw bad("the image does not restore: \(error)")
        }
        let hash = hashText(machine.stateHash)
        guard meta.index == header.index, meta.term == header.term, machine.count == header.keyCount,
            hash == header.stateHash
        else {
            throw bad(
                "the image (index \(meta.index), term \(meta.term), \(machine.count) keys, state hash \(hash)) "
                    + "disagrees with its header")
        }
        return Verified(header: header, image: image, machine: machine, meta: meta)
    }

    static func hashText(_ hash: UInt64) -> String {
        let text = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - text.count) + text
    }

    static func read(_ path: String) throws(CommandFailure) -> Verified {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandFailure(.usage, code: "usage", "cannot read \(path)")
        }
        return try verify(data)
    }

    static func result(_ header: SnapshotHeader, file: String) -> JSONValue {
        .object([
            ("file", .string(file)), ("index", .uint(header.index)), ("term", .uint(header.term)),
            ("voters", .array(header.voters.map { .uint($0) })), ("learners", .array(header.learners.map { .uint($0) })),
            ("key_count", .uint(UInt64(header.keyCount))), ("state_hash", .string(header.stateHash)),
            ("checksum", .string(header.checksum)), ("image_bytes", .uint(UInt64(header.imageBytes))),
            ("node", .uint(header.nodeID)),
        ])
    }

    static func text(_ header: SnapshotHeader) -> String {
        """
        index       \(header.index)
        term        \(header.term)
        voters      \(header.voters.map(String.init).joined(separator: ","))
        learners    \(header.learners.map(String.init).joined(separator: ","))
        keys        \(header.keyCount)
        state_hash  \(header.stateHash)
        checksum    \(header.checksum)
        bytes       \(header.imageBytes)
        served_by   node \(header.nodeID)

        """
    }
}

struct SnapshotSave: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "save",
        abstract: "Stream a consistent snapshot from the leader into FILE, and verify it.",
        discussion: """
            The leader confirms its leadership, copies its state (copy-on-write, on its Raft loop) and serialises it \
            on another thread: the cluster keeps taking writes. FILE is written under a temporary name, verified \
            (checksum, restore, key count, state hash) and renamed into place.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "Where to write the backup.") var file: String

    func run() async throws {
        try await global.execute("snapshot save") { context throws(CommandFailure) in
            let (data, _) = try await context.client(timeout: .seconds(60)).snapshotBackup()
            let verified = try BackupFile.verify(data)
            let temporary = file + ".part"
            guard FileManager.default.createFile(atPath: temporary, contents: data), rename(temporary, file) == 0 else {
                throw CommandFailure(.failed, code: "io", "cannot write \(file)")
            }
            return Outcome(
                result: BackupFile.result(verified.header, file: file),
                text: "saved snapshot at index \(verified.header.index) (\(verified.header.keyCount) keys, "
                    + "\(data.count) bytes) to \(file)\n")
        }
    }
}

struct SnapshotStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Verify a backup file and print its header.")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The backup file.") var file: String

    func run() async throws {
        try await global.execute("snapshot status") { _ throws(CommandFailure) in
            let verified = try BackupFile.read(file)
            return Outcome(result: BackupFile.result(verified.header, file: file), text: BackupFile.text(verified.header))
        }
    }
}

struct SnapshotRestore: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Write fresh data directories for a new cluster from a backup.",
        discussion: """
            For every nN.toml in --config-dir, creates its db_root_dir (which must be missing or empty) holding the \
            backup's state as a snapshot, with the membership of those config files (voters and learners of \
            initial_cluster, their addresses). Start the nodes afterwards (`dctl cluster start`); they elect a \
            leader and serve the restored keys. The old cluster's data directories are never touched.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The backup file.") var file: String

    func run() async throws {
        try await global.execute("snapshot restore") { context throws(CommandFailure) in
            let verified = try BackupFile.read(file)
            let nodes = context.localNodes()
            guard !nodes.isEmpty else {
                throw CommandFailure(.usage, code: "usage", "no nN.toml files in \(context.configDirectory)")
            }
            var configs: [(UInt64, NodeConfig)] = []
            for node in nodes {
                do {
                    configs.append((node.id, try NodeConfig.load(path: node.configPath)))
                } catch {
                    throw CommandFailure(.usage, code: "usage", "\(node.configPath): \(error)")
                }
            }
            let members = configs[0].1.cluster.initialCluster
            var membership = Membership()
            for member in members {
                if member.isVoter { membership.voters.insert(member.id) } else { membership.learners.insert(member.id) }
                membership.addresses[member.id] = member.address.description
            }
            let meta = SnapshotMetadata(index: verified.meta.index, term: verified.meta.term, membership: membership)
            let image = verified.machine.snapshot(membership: membership)
            // A new cluster id: the restored nodes refuse the old cluster's nodes (and the other way round).
            let clusterID = UInt64.random(in: 1...UInt64.max)
            var written: [String] = []
            for (id, config) in configs {
                let path = config.cluster.dbRootDir
                if let names = try? FileManager.default.contentsOfDirectory(atPath: path), !names.isEmpty {
                    throw CommandFailure(
                        .failed, code: "conflict",
                        "\(path) (node \(id)) is not empty: restore writes fresh data directories only"
                            + (written.isEmpty ? "" : "; already written: \(written.joined(separator: ", "))"))
                }
                do {
                    let opened = try DataDirectory.open(path: path, nodeID: id, clusterID: clusterID)
                    _ = try opened.snapshots.save(metadata: meta, data: image)
                    let writer = LogWriter(wal: opened.wal, strategy: .diskFirst)
                    try writer.persist(
                        entries: [], hardState: HardState(term: meta.term, vote: nil, commit: meta.index), snapshot: meta)
                } catch {
                    throw CommandFailure(.failed, code: "io", "cannot write the data directory \(path): \(error)")
                }
                written.append(path)
            }
            return Outcome(
                result: .object([
                    ("index", .uint(meta.index)), ("term", .uint(meta.term)),
                    ("key_count", .uint(UInt64(verified.header.keyCount))),
                    ("state_hash", .string(verified.header.stateHash)),
                    ("cluster_id", .string(String(clusterID, radix: 16))),
                    ("data_dirs", .array(written.map { .string($0) })),
                ]),
                text: "restored index \(meta.index) (\(verified.header.keyCount) keys) into "
                    + "\(written.joined(separator: ", ")) as cluster \(String(clusterID, radix: 16))\n")
        }
    }
}
