#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import Logging
import PersistentStorage

/// What `kvmd-pstrun -- CMD [ARGS...]` does: hold a PST session while a
/// script runs, and make sure the script stops writing when the session ends.
///
/// ```swift
/// let runner = ScriptRunner(command: ["/root/test.sh", "--some"], storage: PersistentStorage(), logger: logger)
/// exit(await runner.run())
/// ```
public struct ScriptRunner: Sendable {
    /// The program and its arguments; the program is searched in PATH.
    public var command: [String]
    public var storage: PersistentStorage
    public var logger: Logger
    /// How long the script may take to exit after SIGTERM before its group gets SIGKILL.
    public var killGracePeriod: Duration = .seconds(1)

    public init(command: [String], storage: PersistentStorage, logger: Logger) {
        precondition(!command.isEmpty, "a command is required")
        self.command = command
        self.storage = storage
        self.logger = logger
    }

    /// Runs the script and returns the exit code for `kvmd-pstrun`: the script's
    /// own, 128 + N if signal N killed it, 126/127 if it could not be started,
    /// and 1 if it never ran because the storage did not become writable.
    public func run() async -> Int32 {
        logger.info("Opening PST session ...")
        let session: StorageSession
        do {
            session = try await storage.openSession()
        } catch {
            logger.error("\(error)")
            return ScriptExit.didNotRun
        }
        // The daemon's path as it sent it: scripts and logs expect exactly that.
        let dataPath = session.initialStatus.data.path
        logger.info("PST write is allowed: \(dataPath)")
        logger.info("Running the process ...")
        let code = await runScript(dataPath: dataPath, session: session)
        await session.close()
        return code
    }

    private func runScript(dataPath: String, session: StorageSession) async -> Int32 {
        var environment = ProcessInfo.processInfo.environment
        environment["KVMD_PST_DATA"] = dataPath

        // Installed before the script starts, so a signal arriving meanwhile is
        // passed on rather than killing us with the session still open.
        let forwardedSignals = SignalWatch([SIGTERM, SIGHUP])
        defer { forwardedSignals.stop() }
        let terminal = ForegroundTerminal.current()
        let ignoredSignals = terminal.map { _ in IgnoredSignals([SIGINT, SIGQUIT]) }
        defer { ignoredSignals?.restore() }
        terminal?.prepareForScript()
        defer { terminal?.reclaim() }

        let script: ScriptProcess
        do {
            script = try ScriptProcess.spawn(command, environment: environment, foregroundTerminal: terminal?.descriptor)
        } catch {
            logger.error("\(error)")
            return error.exitCode
        }
        let code = await ScriptSupervision(script: script, killGracePeriod: killGracePeriod, logger: logger)
            .untilExit(session: session, signals: forwardedSignals.signals)
        logger.info("Process finished: returncode=\(code)")
        return code
    }
}
