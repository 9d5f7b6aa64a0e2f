import Foundation
import NodeRuntime

exit(NodeMain.run(arguments: CommandLine.arguments, environment: ProcessInfo.processInfo.environment))
