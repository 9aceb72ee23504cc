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
        usage: "kvmd-pstrun [--socket <path>] [--timeout <seconds>] [--log-level <level>] -- <command> [<argument> ...]",
        discussion: """
            The command gets the environment plus KVMD_PST_DATA, the writable data \
            directory. It runs in its own process group and is stopped (SIGTERM, then \
            SIGKILL) if write access goes away. The exit status is the command's, \
            128+N if signal N killed it, 127 if it does not exist, 126 if it cannot be \
            executed, or 1 if it never ran (no daemon, write refused).
            """
    )

    @Option(help: ArgumentHelp("The PST daemon's socket.", valueName: "path"))
    var socket = "/run/kvmd/pst.sock"

    @Option(help: ArgumentHelp("Seconds to wait for the daemon to answer and to make the storage writable.", valueName: "seconds"))
    var timeout: Double = 5

    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: Logger.Level = .info

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command to run and its arguments, after --.", valueName: "command"))
    var command: [String] = []

    mutating func validate() throws {
        // Passthrough parsing hands a leading --help to the command; only
        // after `--` does it belong to the command.
        if let first = command.first, first == "--help" || first == "-h" { throw CleanExit.helpRequest(self) }
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
