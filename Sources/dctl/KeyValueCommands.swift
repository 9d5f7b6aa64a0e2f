import ArgumentParser
import ClusterAPI
import ClusterClient
import Foundation

extension ReadConsistency: ExpressibleByArgument {
    public init?(argument: String) {
        self.init(parsing: argument)
    }
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a key (prints OK).",
        discussion: """
            V is stored exactly as given; with '-' it is read from stdin to the end (a trailing newline is kept). \
            Every write carries an Idempotency-Key. A write that times out exits 5; with --retry it is resent with \
            the same key (to any node, until --timeout) and applies at most once.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var idempotency: IdempotencyOptions
    @Argument(help: "The key.") var key: String
    @Argument(help: "The value, or '-' to read it from stdin.") var value: String

    func run() async throws {
        try await global.execute("put") { context throws(CommandFailure) in
            let text = try readValue()
            let (response, target) = try await idempotency.configure(context.client())
                .put(key: key, value: text, idempotencyKey: idempotency.key)
            return Outcome(
                result: .object([
                    ("key", .string(response.key)), ("index", .uint(response.index)), ("node", .uint(target.id)),
                    ("endpoint", .string(target.client.description)),
                ]),
                text: "OK\n")
        }
    }

    private func readValue() throws(CommandFailure) -> String {
        guard value == "-" else { return value }
        let data = FileHandle.standardInput.readDataToEndOfFile()
        guard let text = String(data: data, encoding: .utf8) else {
            throw CommandFailure(.usage, code: "usage", "the value read from stdin is not valid UTF-8")
        }
        return text
    }
}

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read a key (prints only its value; exit 3 if absent).")

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The key.") var key: String
    @Option(help: "linearizable, lease or eventual (default: the node's configured policy).")
    var consistency: ReadConsistency?

    func run() async throws {
        try await global.execute("get") { context throws(CommandFailure) in
            let (response, target) = try await context.client().get(key: key, consistency: consistency)
            return Outcome(
                result: .object([
                    ("key", .string(response.key)), ("value", .string(response.value)), ("index", .uint(response.index)),
                    ("node", .uint(target.id)), ("endpoint", .string(target.client.description)),
                ]),
                text: response.value + "\n")
        }
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete a key (prints 1 if it existed, 0 if not; both exit 0).")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var idempotency: IdempotencyOptions
    @Argument(help: "The key.") var key: String

    func run() async throws {
        try await global.execute("delete") { context throws(CommandFailure) in
            let (response, target) = try await idempotency.configure(context.client())
                .delete(key: key, idempotencyKey: idempotency.key)
            return Outcome(
                result: .object([
                    ("key", .string(response.key)), ("index", .uint(response.index)), ("deleted", .bool(response.deleted)),
                    ("node", .uint(target.id)), ("endpoint", .string(target.client.description)),
                ]),
                text: response.deleted ? "1\n" : "0\n")
        }
    }
}

/// `--retry` and `--idempotency-key` of the write commands.
struct IdempotencyOptions: ParsableArguments {
    @Flag(help: "Resend the write with the same Idempotency-Key after a timeout or a dropped connection, until --timeout.")
    var retry = false
    @Option(help: "The Idempotency-Key to send (default: a fresh UUID); the same key makes a repeated command a no-op.")
    var idempotencyKey: String?

    var key: String? { idempotencyKey }

    func configure(_ client: ClusterClient) -> ClusterClient {
        var client = client
        client.retryWrites = retry
        return client
    }
}
