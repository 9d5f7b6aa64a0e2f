import ArgumentParser
import BenchKit

/// `dbench`: the load generator (the same commands as `dctl bench`). docs/dbench.md is the manual.
@main
struct DBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dbench",
        abstract: BenchCommand.configuration.abstract,
        discussion: BenchCommand.configuration.discussion.replacingOccurrences(of: "  bench ", with: "  dbench "),
        subcommands: BenchCommand.subcommandTypes)
}
