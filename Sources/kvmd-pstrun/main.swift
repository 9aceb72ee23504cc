import ArgumentParser
import Logging
import PersistentStorage
import PersistentStorageRun

/// `kvmd-pstrun`: run a command while the PST is writable.
@main
struct PersistentStorageRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvmd-pstrun",
        abstract: "Run a command while PiKVM's persistent storage is writable.",
        discussion: """
            The command gets the environment plus KVMD_PST_DATA, the writable data \
            directory. It is stopped if write access goes away. The exit status is the \
            command's, 128+N if signal N killed it, or 1 if it never ran.
            """
    )

    @Option(help: "The PST daemon's socket.")
    var socket = "/run/kvmd/pst.sock"

    @Option(help: "Seconds to wait for the daemon.")
    var timeout: Double = 5

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: Logger.Level = .info

    @Argument(parsing: .captureForPassthrough, help: "-- CMD [ARGS...]")
    var command: [String] = []

    mutating func validate() throws {
        if command.first == "--" { command.removeFirst() }
        guard !command.isEmpty else { throw ValidationError("a command to run is required: kvmd-pstrun -- CMD [ARGS...]") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() async throws {
        let level = logLevel
        LoggingSystem.bootstrap { _ in RunLogHandler(logLevel: level) }
        let logger = Logger(label: "kvmd-pstrun")
        let storage = PersistentStorage(socketPath: socket, timeout: .seconds(timeout), logger: logger)
        let code = await ScriptRunner(command: command, storage: storage, logger: logger).run()
        throw ExitCode(code)
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
