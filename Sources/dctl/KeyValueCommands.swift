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

struct Scan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the keys starting with PREFIX, in byte order (prints KEY<tab>VALUE per line).",
        discussion: """
            One page by default (--limit rows, else the node's default of 1000; a page also stops at 4 MiB); when \
            more keys follow, stderr says how to continue (--after). --all reads page after page until the end: each \
            page is consistent on its own, the pages together are not one snapshot.
            """)

    @OptionGroup var global: GlobalOptions
    @Argument(help: "The key prefix (\"\" lists every key).") var prefix: String = ""
    @Option(help: "Rows per page (1-10000).") var limit: Int?
    @Option(help: "Start after this key (exclusive): the 'next' of a previous page.") var after: String?
    @Flag(help: "Read every page, not only the first.") var all = false
    @Option(help: "linearizable, lease or eventual (default: the node's configured policy).")
    var consistency: ReadConsistency?

    func validate() throws {
        if let limit, !(1...10_000).contains(limit) {
            throw ValidationError("--limit must be between 1 and 10000, not \(limit)")
        }
    }

    func run() async throws {
        try await global.execute("scan") { context throws(CommandFailure) in
            let client = try context.client()
            var entries: [KeyValue] = []
            var cursor = after
            var pages = 0
            var last: (ScanResponse, NodeTarget)
            repeat {
                last = try await client.scan(prefix: prefix, limit: limit, after: cursor, consistency: consistency)
                entries += last.0.entries
                pages += 1
                cursor = last.0.next
            } while all && cursor != nil
            let (response, target) = last
            if let next = response.next, !context.json {
                context.warn("more keys follow: dctl scan \(Self.shellQuote(prefix)) --after \(Self.shellQuote(next))")
            }
            var result: [(String, JSONValue)] = [
                ("entries", .array(entries.map { .object([("key", .string($0.key)), ("value", .string($0.value))]) })),
                ("count", .uint(UInt64(entries.count))), ("pages", .uint(UInt64(pages))),
                ("index", .uint(response.index)),
            ]
            if let next = response.next { result.append(("next", .string(next))) }
            result += [("node", .uint(target.id)), ("endpoint", .string(target.client.description))]
            return Outcome(
                result: .object(result), text: entries.map { "\($0.key)\t\($0.value)\n" }.joined())
        }
    }

    private static func shellQuote(_ text: String) -> String {
        text.allSatisfy { $0.isLetter || $0.isNumber || "/._-:".contains($0) } && !text.isEmpty
            ? text : "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'"
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
