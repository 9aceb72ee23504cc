import ArgumentParser
import Glibc
import Logging
import PersistentStorageDaemon
import PersistentStorageMount
import PersistentStorageVersion

/// `kvmd-pst`: the persistent-storage daemon. Parses options, then hands
/// over to ``PersistentStorageDaemon``.
@main
struct KvmdPst: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvmd-pst",
        abstract: "Keeps the PiKVM persistent storage read-only except while a client holds a session.",
        version: SwiftPSTVersion.string)

    @Flag(name: .long, help: "Start the daemon. Without it kvmd-pst checks its options and configuration and stops, as kvmd's own daemons do, so that typing its name does not remount the storage.")
    var run = false

    @Option(name: .long, help: ArgumentHelp("Read the pst: section of this kvmd-style YAML file; options given here win.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The Unix socket to listen on (default \(DaemonConfiguration.defaultSocketPath)).", valueName: "path"))
    var socket: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("The socket's file mode, octal, at most 0777 (default 0660).", valueName: "mode"))
    var socketMode: String?

    @Option(name: .long, help: ArgumentHelp("The socket's group; its members may use the daemon (default \(DaemonConfiguration.conventionalSocketGroup) if it exists; \"\" for none).", valueName: "group"))
    var socketGroup: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Seconds between WebSocket pings: \(SettingRange.heartbeat.allowed) (default 15).", valueName: "seconds"))
    var heartbeat: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Seconds between attempts to remount read-only while it is busy: \(SettingRange.readOnlyRetryDelay.allowed) (default 10).", valueName: "seconds"))
    var roRetriesDelay: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Seconds clients get at shutdown before the remount to read-only: \(SettingRange.readOnlyCleanupDelay.allowed) (default 3).", valueName: "seconds"))
    var roCleanupDelay: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Seconds shutdown keeps retrying a busy read-only remount before it exits non-zero, saying the storage is left read-write: \(SettingRange.stopTimeout.allowed) (default 10).", valueName: "seconds"))
    var stopTimeout: String?

    @Option(name: .long, help: ArgumentHelp("Remount by running this command, {mode} replaced by rw or ro (split on spaces), instead of in-process.", valueName: "command"))
    var remountCommand: String?

    @Option(name: .long, help: ArgumentHelp("The fstab that names the partition (default /etc/fstab).", valueName: "path"))
    var fstab: String?

    @Option(name: .long, help: ArgumentHelp("What clients get as the data path: 'root' (ROOT, as kvmd since 4.8) or 'data' (ROOT/data, the PST document's layout) (default root).", valueName: "layout"))
    var dataLayout: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("The most sessions open at once: \(SettingRange.maxSessions.allowed) (default 100).", valueName: "count"))
    var maxSessions: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("The most connections open at once that are not sessions; past it the oldest is closed: \(SettingRange.maxConnections.allowed) (default 1000).", valueName: "count"))
    var maxConnections: String?

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("Seconds a connection may take to send a whole request, or stay idle, before it is closed: \(SettingRange.httpTimeout.allowed) (default 30).", valueName: "seconds"))
    var httpTimeout: String?

    @Option(name: .long, help: ArgumentHelp("trace, debug, info, notice, warning, error or critical.", valueName: "level"))
    var logLevel: String = "info"

    /// The exit status of every usage error, a bad option or a configuration
    /// value out of range: 2, as for kvmd-pstrun and kvmd-helper-pst-remount
    /// (Documentation/Configuration.md), rather than ArgumentParser's 64.
    static let usageErrorExitCode: Int32 = 2

    static func main() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            guard exitCode(for: error) == .validationFailure else { exit(withError: error) }
            let bytes = Array((fullMessage(for: error) + "\n").utf8)
            _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            Glibc.exit(usageErrorExitCode)
        }
    }

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("--log-level: '\(logLevel)' is not one of trace, debug, info, notice, warning, error, critical")
        }
        LoggingSystem.bootstrap { _ in KvmdLogHandler(logLevel: level) }
        let logger = Logger(label: "kvmd-pst")

        let configuration: DaemonConfiguration
        do {
            configuration = try makeConfiguration()
        } catch {
            logger.critical("\(error)")
            throw ExitCode(Self.usageErrorExitCode)
        }
        guard run else {
            // Checked after the configuration, as kvmd does: without --run,
            // kvmd-pst is a check of the options and the config.
            let text = "kvmd-pst: not started: --run is needed to start the daemon (kvmd's daemons ask for it too, against an accidental start); see kvmd-pst --help\n"
            _ = Array(text.utf8).withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
            throw ExitCode(Self.usageErrorExitCode)
        }
        do {
            try await PersistentStorageDaemon(configuration: configuration, logger: logger).runUntilTerminated()
        } catch {
            logger.critical("\(error)")
            throw ExitCode.failure
        }
    }

    /// Defaults, then the file, then the command line.
    private func makeConfiguration() throws(DaemonConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.socketGroup = DaemonConfiguration.defaultSocketGroup
        if let config {
            configuration.apply(try KvmdConfigurationFile.read(path: config))
        }
        var flags = ConfigurationOverrides()
        flags.socketPath = socket
        flags.socketMode = try socketMode.map { text throws(DaemonConfigurationError) in
            do { return try ConfigurationValue.octalMode(text) } catch { throw DaemonConfigurationError("--socket-mode: \(error)") }
        }
        flags.socketGroup = socketGroup
        flags.heartbeat = try heartbeat.map { text throws(DaemonConfigurationError) in try SettingRange.heartbeat.seconds(from: text, name: "--heartbeat") }
        flags.readOnlyRetryDelay = try roRetriesDelay.map { text throws(DaemonConfigurationError) in try SettingRange.readOnlyRetryDelay.seconds(from: text, name: "--ro-retries-delay") }
        flags.readOnlyCleanupDelay = try roCleanupDelay.map { text throws(DaemonConfigurationError) in try SettingRange.readOnlyCleanupDelay.seconds(from: text, name: "--ro-cleanup-delay") }
        flags.stopTimeout = try stopTimeout.map { text throws(DaemonConfigurationError) in try SettingRange.stopTimeout.seconds(from: text, name: "--stop-timeout") }
        flags.remountCommand = remountCommand.map(ConfigurationValue.commandLine)
        flags.fstabPath = fstab
        flags.dataLayout = try dataLayout.map { text throws(DaemonConfigurationError) in
            guard let layout = DataLayout(rawValue: text) else {
                throw DaemonConfigurationError("--data-layout: '\(text)' is neither 'data' nor 'root'")
            }
            return layout
        }
        flags.maxSessions = try maxSessions.map { text throws(DaemonConfigurationError) in try SettingRange.maxSessions.count(from: text, name: "--max-sessions") }
        flags.maxConnections = try maxConnections.map { text throws(DaemonConfigurationError) in try SettingRange.maxConnections.count(from: text, name: "--max-connections") }
        flags.httpTimeout = try httpTimeout.map { text throws(DaemonConfigurationError) in try SettingRange.httpTimeout.seconds(from: text, name: "--http-timeout") }
        configuration.apply(flags)
        try configuration.validate()
        return configuration
    }
}
