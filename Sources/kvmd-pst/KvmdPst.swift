import ArgumentParser
import Glibc
import KvmdConfiguration
import KvmdLogging
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
        version: SwiftPSTVersion.string,
        subcommands: [StatusCommand.self])

    @Flag(name: .long, help: "Start the daemon. Without it kvmd-pst checks its options and configuration and stops, as kvmd's own daemons do, so that typing its name does not remount the storage.")
    var run = false

    @Option(name: .long, help: ArgumentHelp("kvmd's main configuration file (default \(KvmdConfigTree.defaultMainConfig), if it exists).", valueName: "file"))
    var mainConfig: String?

    @Option(name: .long, help: ArgumentHelp("kvmd's directory of partial overrides, every file in name order (default \(KvmdConfigTree.defaultOverrideDirectory), if it exists).", valueName: "dir"))
    var overrideDir: String?

    @Option(name: .long, help: ArgumentHelp("kvmd's override file, read last (default \(KvmdConfigTree.defaultOverrideConfig), if it exists).", valueName: "file"))
    var overrideConfig: String?

    @Option(name: .long, help: ArgumentHelp("One more kvmd-style YAML file, read after kvmd's (may be given more than once, read in order); options given here win over all files.", valueName: "file"))
    var config: [String] = []

    @Flag(name: [.customShort("m"), .long], help: "Print the pst: configuration in effect (files and options) and exit.")
    var dumpConfig = false

    @Option(name: .customLong(DaemonSetting.socket.option!), parsing: .unconditional, help: DaemonSetting.socket.argumentHelp)
    var socket: String?

    @Option(name: .customLong(DaemonSetting.socketMode.option!), parsing: .unconditional, help: DaemonSetting.socketMode.argumentHelp)
    var socketMode: String?

    @Option(name: .customLong(DaemonSetting.socketGroup.option!), parsing: .unconditional, help: DaemonSetting.socketGroup.argumentHelp)
    var socketGroup: String?

    @Option(name: .customLong(DaemonSetting.heartbeat.option!), parsing: .unconditional, help: DaemonSetting.heartbeat.argumentHelp)
    var heartbeat: String?

    @Option(name: .customLong(DaemonSetting.readOnlyRetryDelay.option!), parsing: .unconditional, help: DaemonSetting.readOnlyRetryDelay.argumentHelp)
    var roRetriesDelay: String?

    @Option(name: .customLong(DaemonSetting.readOnlyCleanupDelay.option!), parsing: .unconditional, help: DaemonSetting.readOnlyCleanupDelay.argumentHelp)
    var roCleanupDelay: String?

    @Option(name: .customLong(DaemonSetting.stopTimeout.option!), parsing: .unconditional, help: DaemonSetting.stopTimeout.argumentHelp)
    var stopTimeout: String?

    @Option(name: .customLong(DaemonSetting.remountCommand.option!), parsing: .unconditional, help: DaemonSetting.remountCommand.argumentHelp)
    var remountCommand: String?

    @Option(name: .customLong(DaemonSetting.fstab.option!), parsing: .unconditional, help: DaemonSetting.fstab.argumentHelp)
    var fstab: String?

    @Option(name: .customLong(DaemonSetting.dataLayout.option!), parsing: .unconditional, help: DaemonSetting.dataLayout.argumentHelp)
    var dataLayout: String?

    @Option(name: .customLong(DaemonSetting.maxSessions.option!), parsing: .unconditional, help: DaemonSetting.maxSessions.argumentHelp)
    var maxSessions: String?

    @Option(name: .customLong(DaemonSetting.maxConnections.option!), parsing: .unconditional, help: DaemonSetting.maxConnections.argumentHelp)
    var maxConnections: String?

    @Option(name: .customLong(DaemonSetting.httpTimeout.option!), parsing: .unconditional, help: DaemonSetting.httpTimeout.argumentHelp)
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
            configuration = try makeConfiguration(logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(Self.usageErrorExitCode)
        }
        if dumpConfig {
            // Output that did not arrive (a full disk, a closed stdout) is a failure.
            var bytes = Array(configuration.dumped.utf8)[...]
            while !bytes.isEmpty {
                let count = bytes.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else {
                    logger.critical("cannot write the configuration to stdout: \(String(cString: strerror(errno)))")
                    throw ExitCode.failure
                }
                bytes = bytes.dropFirst(count)
            }
            return
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

    /// The socket and fstab `status` uses: the daemon's, from the same sources.
    func configurationForStatus() throws -> DaemonConfiguration {
        try makeConfiguration(logger: Logger(label: "kvmd-pst status"))
    }

    /// Defaults, then kvmd's configuration tree, then the command line.
    private func makeConfiguration(logger: Logger) throws(DaemonConfigurationError) -> DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.socketGroup = DaemonConfiguration.defaultSocketGroup
        let tree = KvmdConfigTree(
            mainConfig: mainConfig, overrideDirectory: overrideDir, overrideConfig: overrideConfig,
            extraFiles: config)
        let section: PstSection
        do {
            section = try tree.pstSection()
        } catch {
            throw DaemonConfigurationError(error.description)
        }
        for warning in try configuration.apply(section) { logger.warning("\(warning)") }
        let given: [(DaemonSetting, String?)] = [
            (.socket, socket), (.socketMode, socketMode), (.socketGroup, socketGroup), (.heartbeat, heartbeat),
            (.readOnlyRetryDelay, roRetriesDelay), (.readOnlyCleanupDelay, roCleanupDelay), (.stopTimeout, stopTimeout),
            (.remountCommand, remountCommand), (.fstab, fstab), (.dataLayout, dataLayout), (.maxSessions, maxSessions),
            (.maxConnections, maxConnections), (.httpTimeout, httpTimeout),
        ]
        for (setting, text) in given {
            if let text { try setting.apply(optionText: text, to: &configuration) }
        }
        try configuration.validate()
        return configuration
    }
}

extension DaemonSetting {
    /// The option's help, from the declaration.
    var argumentHelp: ArgumentHelp { ArgumentHelp(help, valueName: valueName) }
}
