import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation
import NodeSecurity

extension ClientRole: ExpressibleByArgument {}

/// `dctl certs`: the cluster's certificates and tokens, made without openssl (docs/security.md).
struct Certs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs", abstract: "Create the cluster CA, node and client certificates, and bearer tokens.",
        subcommands: [CertsInit.self, CertsClient.self, CertsToken.self, CertsList.self])
}

/// What `certs` wrote or found: one row per file.
struct IssuedRow {
    var file: String
    var subject: String
    var notAfter: Date
    var created: Bool

    var json: JSONValue {
        .object([
            ("file", .string(file)), ("subject", .string(subject)),
            ("not_after", .string(CertificateChecker.format(notAfter))), ("created", .bool(created)),
        ])
    }

    var line: String {
        "\(created ? "created" : "kept   ")  \(file)  \(subject)  expires \(CertificateChecker.format(notAfter))"
    }
}

enum CertificateDirectory {
    static func path(_ directory: String, _ name: String) -> String { (directory as NSString).appendingPathComponent(name) }

    static func failure(_ message: String) -> CommandFailure {
        CommandFailure(.failed, code: "certs", message)
    }

    /// The CA of `directory`, created if missing.
    static func authority(in directory: String, days: Int, rows: inout [IssuedRow]) throws(CommandFailure) -> IssuedCertificate {
        let base = path(directory, "ca")
        do {
            if FileManager.default.fileExists(atPath: base + ".crt") {
                let ca = try CertificateFactory.load(certificateFile: base + ".crt", keyFile: base + ".key")
                rows.append(IssuedRow(file: base + ".crt", subject: "cluster CA", notAfter: ca.notValidAfter, created: false))
                return ca
            }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let ca = try CertificateFactory.makeAuthority(days: days)
            try CertificateFactory.write(ca, to: base)
            rows.append(IssuedRow(file: base + ".crt", subject: "cluster CA", notAfter: ca.notValidAfter, created: true))
            return ca
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw failure("cannot make or read the CA in \(directory): \(error)")
        }
    }

    /// Writes `make()` to `base.crt|key` unless `base.crt` exists (then reports it as kept).
    static func issue(
        _ base: String, subject: String, make: () throws -> IssuedCertificate, rows: inout [IssuedRow]
    ) throws(CommandFailure) {
        do {
            if FileManager.default.fileExists(atPath: base + ".crt") {
                let existing = try CertificateFactory.load(certificateFile: base + ".crt", keyFile: base + ".key")
                rows.append(IssuedRow(file: base + ".crt", subject: subject, notAfter: existing.notValidAfter, created: false))
                return
            }
            let issued = try make()
            try CertificateFactory.write(issued, to: base)
            rows.append(IssuedRow(file: base + ".crt", subject: subject, notAfter: issued.notValidAfter, created: true))
        } catch {
            throw failure("cannot write \(base).crt: \(error)")
        }
    }

    static func outcome(_ rows: [IssuedRow], extra: [String] = []) -> Outcome {
        Outcome(
            result: .object([("files", .array(rows.map(\.json)))]),
            text: (rows.map(\.line) + extra).joined(separator: "\n") + "\n")
    }
}

/// The node ids and hosts to certify: from the config dir's nN.toml files, else nodes 1-5 on 127.0.0.1.
extension Context {
    func nodesToCertify() -> [(id: UInt64, host: String)] {
        let local = localNodes()
        if local.isEmpty { return (1...5).map { (UInt64($0), "127.0.0.1") } }
        return local.map { ($0.id, $0.listenHost) }
    }
}

struct CertsInit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create certs/: a CA, a certificate per node of --config-dir, clients admin and reader.",
        discussion: """
            Files that exist are kept (a second run only adds what is missing), so it is safe to run again. \
            Node certificates bind the node id (urn:dengine:node:N) and name localhost, 127.0.0.1 and the node's \
            listen host. Keys are written with mode 0600. Also creates an empty tokens file (see `certs token`).
            """)

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("Where to write the files.", valueName: "dir")) var dir = "certs"
    @Option(help: "Validity of node and client certificates, in days (the CA gets 10 years).") var days = 825

    func run() async throws {
        try await global.execute("certs init") { context throws(CommandFailure) in
            CertificateDirectory.outcome(
                try CertificateDirectory.initialize(dir, nodes: context.nodesToCertify(), days: days))
        }
    }
}

extension CertificateDirectory {
    /// `certs init`: the CA, one certificate per node, clients admin and reader, an empty tokens file; files that
    /// exist are kept.
    static func initialize(
        _ dir: String, nodes: [(id: UInt64, host: String)], days: Int
    ) throws(CommandFailure) -> [IssuedRow] {
        var rows: [IssuedRow] = []
        let ca = try authority(in: dir, days: 3650, rows: &rows)
        for (id, host) in nodes {
            let hosts = host == "0.0.0.0" || host == "::" ? [] : [host]
            try issue(
                path(dir, "node.\(id)"), subject: "node \(id)",
                make: { try CertificateFactory.makeNode(id: id, hosts: hosts, authority: ca, days: days) },
                rows: &rows)
        }
        for (name, role) in [("admin", ClientRole.admin), ("reader", ClientRole.readonly)] {
            try issue(
                path(dir, "client.\(name)"), subject: "client \(name) (\(role))",
                make: {
                    try CertificateFactory.makeClient(
                        name: name, role: role, authority: ca, notValidBefore: Date().addingTimeInterval(-300),
                        notValidAfter: Date().addingTimeInterval(Double(days) * 86_400))
                }, rows: &rows)
        }
        let tokens = path(dir, "tokens")
        if !FileManager.default.fileExists(atPath: tokens) {
            do {
                try CertificateFactory.writeText(
                    tokens, "# Bearer tokens, stored hashed: NAME ROLE sha256:HEX (dctl certs token NAME --role R)\n",
                    mode: 0o600)
            } catch {
                throw failure("cannot write \(tokens): \(error)")
            }
        }
        return rows
    }
}

struct CertsClient: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client", abstract: "Create certs/client.NAME.crt|key for a role (readonly, readwrite, admin).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The client's name (the certificate's common name).") var name: String
    @Option(help: "readonly, readwrite or admin.") var role: ClientRole
    @Option(help: ArgumentHelp("The directory of ca.crt and ca.key.", valueName: "dir")) var dir = "certs"
    @Option(help: "Validity in days.") var days = 365

    func validate() throws {
        guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." })
        else { throw ValidationError("a client name is letters, digits, '-', '_' or '.'") }
        guard days > 0 else { throw ValidationError("--days must be positive") }
    }

    func run() async throws {
        try await global.execute("certs client") { context throws(CommandFailure) in
            var rows: [IssuedRow] = []
            let ca = try CertificateDirectory.authority(in: dir, days: 3650, rows: &rows)
            try CertificateDirectory.issue(
                CertificateDirectory.path(dir, "client.\(name)"), subject: "client \(name) (\(role))",
                make: {
                    try CertificateFactory.makeClient(
                        name: name, role: role, authority: ca, notValidBefore: Date().addingTimeInterval(-300),
                        notValidAfter: Date().addingTimeInterval(Double(days) * 86_400))
                }, rows: &rows)
            return CertificateDirectory.outcome(Array(rows.dropFirst()))
        }
    }
}

struct CertsToken: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Create a bearer token for a role: prints the token once, appends its hash to the tokens file.",
        discussion: "Nodes reload the tokens file within reload_interval_ms (or at once on SIGHUP).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The token's name (shown as the caller).") var name: String
    @Option(help: "readonly, readwrite or admin.") var role: ClientRole
    @Option(help: ArgumentHelp("The tokens file the nodes read ([security] tokens_file).", valueName: "file"))
    var file = "certs/tokens"

    func validate() throws {
        guard !name.isEmpty, !name.contains(where: { $0 == " " || $0 == "\t" || $0 == "#" || $0 == "\n" }) else {
            throw ValidationError("a token name has no spaces or '#'")
        }
    }

    func run() async throws {
        try await global.execute("certs token") { context throws(CommandFailure) in
            let (token, line) = TokenStore.makeToken(name: name, role: role)
            let existing = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
            do {
                try CertificateFactory.writeText(
                    file, existing + (existing.isEmpty || existing.hasSuffix("\n") ? "" : "\n") + line + "\n", mode: 0o600)
            } catch {
                throw CertificateDirectory.failure("cannot write \(file): \(error)")
            }
            return Outcome(
                result: .object([("name", .string(name)), ("role", .string(role.rawValue)), ("token", .string(token))]),
                text: token + "\n")
        }
    }
}

struct CertsList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "Print every certificate of certs/ with its subject and expiry.")

    @OptionGroup var global: GlobalOptions
    @Option(help: ArgumentHelp("The certificates' directory.", valueName: "dir")) var dir = "certs"

    func run() async throws {
        try await global.execute("certs list") { context throws(CommandFailure) in
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else {
                throw CommandFailure(.notFound, code: "not_found", "no directory \(dir)", hint: "run `dctl certs init`")
            }
            var rows: [IssuedRow] = []
            for name in names.sorted() where name.hasSuffix(".crt") {
                let file = CertificateDirectory.path(dir, name)
                guard let text = try? String(contentsOfFile: file, encoding: .utf8),
                    let summary = try? CertificateFactory.describe(pem: text)
                else { continue }
                rows.append(IssuedRow(file: file, subject: summary.subject, notAfter: summary.notAfter, created: false))
            }
            var outcome = CertificateDirectory.outcome(rows)
            outcome.text = rows.map { "\($0.file)  \($0.subject)  expires \(CertificateChecker.format($0.notAfter))" }
                .joined(separator: "\n") + "\n"
            return outcome
        }
    }
}
