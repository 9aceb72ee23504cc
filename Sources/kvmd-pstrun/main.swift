import Glibc
import Logging
import PersistentStorage
import PersistentStorageRun
import KvmdLogging
import SystemSupport
import PersistentStorageVersion

// `kvmd-pstrun`: run a command while the PST is writable.

switch RunArguments.parse(Array(CommandLine.arguments.dropFirst())) {
case .help:
    print(RunArguments.helpText, terminator: "")
    exit(0)
case .version:
    print(SwiftPSTVersion.string)
    exit(0)
case .usageError(let message):
    writeToStandardError(RunArguments.usageErrorText(message))
    exit(RunArguments.usageErrorExitCode)
case .run(let arguments):
    let level = arguments.logLevel
    LoggingSystem.bootstrap { _ in KvmdLogHandler(logLevel: level) }
    let logger = Logger(label: "kvmd-pstrun")
    let socketPath: String
    do {
        socketPath = try arguments.effectiveSocketPath()
    } catch {
        logger.error("\(error)")
        exit(1)
    }
    let storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(arguments.timeout), logger: logger)
    exit(ScriptRunner(command: arguments.command, storage: storage, logger: logger).run())
}
