import Glibc
import Logging
import PersistentStorage
import PersistentStorageRun
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
    let text = Array(RunArguments.usageErrorText(message).utf8)
    _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    exit(RunArguments.usageErrorExitCode)
case .run(let arguments):
    let level = arguments.logLevel
    LoggingSystem.bootstrap { _ in RunLogHandler(logLevel: level) }
    let logger = Logger(label: "kvmd-pstrun")
    let socketPath: String
    do {
        socketPath = try arguments.effectiveSocketPath()
    } catch {
        logger.error("\(error)")
        exit(1)
    }
    let storage = PersistentStorage(socketPath: socketPath, timeout: .seconds(arguments.timeout), logger: logger)
    exit(ScriptRunner(command: arguments.command, storage: storage, logger: logger).run())
}
