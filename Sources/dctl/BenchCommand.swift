import BenchKit

/// `dctl bench ...`: the load generator of `dbench` (BenchKit), registered as a dctl subcommand.
typealias Bench = BenchCommand
