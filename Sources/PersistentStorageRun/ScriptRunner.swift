import Glibc
import Logging
import PersistentStorage

/// What `kvmd-pstrun -- CMD [ARGS...]` does: hold a PST session while a
/// script runs, and make sure the script stops writing when the session ends.
///
/// ```swift
/// let runner = ScriptRunner(command: ["/root/test.sh", "--some"], storage: PersistentStorageClient(), logger: logger)
/// exit(runner.run())
/// ```
///
/// It runs on the calling thread and starts none: the session is a
/// `BlockingSession`, and one poll(2) watches it, the signals and the
/// script. A process that lives for one script has no use for the event
/// loops and thread pool of ``PersistentStorageClient/openSession(subdirectory:)``,
/// and starting them was half of its run time (Documentation/Benchmarks.md).
/// So call it from synchronous code (a `main.swift` without `await`), not
/// from a task.
public struct ScriptRunner: Sendable {
    /// The program and its arguments; the program is searched in PATH.
    public var command: [String]
    public var storage: PersistentStorageClient
    public var logger: Logger
    /// How long the script may take to exit after SIGTERM before its group gets SIGKILL.
    public var killGracePeriod: Duration = .seconds(1)

    public init(command: [String], storage: PersistentStorageClient, logger: Logger) {
        precondition(!command.isEmpty, "a command is required")
        self.command = command
        self.storage = storage
        self.logger = logger
    }

    /// Runs the script and returns the exit code for `kvmd-pstrun`: the script's
    /// own, 128 + N if signal N killed it, 126/127 if it could not be started,
    /// and 1 if it never ran because the storage did not become writable. If a
    /// signal N that would have ended `kvmd-pstrun` came, the script's group
    /// was stopped first and the code is 128 + N.
    public func run() -> Int32 {
        logger.info("Opening PST session ...")
        let session: BlockingSession
        do {
            session = try BlockingSession.open(socketPath: storage.socketPath, timeout: storage.timeout, logger: logger)
        } catch {
            logger.error("\(error)")
            return ScriptExit.didNotRun
        }
        // The daemon's path as it sent it: scripts and logs expect exactly that.
        let dataPath = session.initialStatus.data.path
        do {
            try DataDirectoryCheck.check(dataPath)
        } catch {
            logger.error("\(error)")
            session.close()
            return ScriptExit.didNotRun
        }
        logger.info("PST write is allowed: \(dataPath)")
        logger.info("Running the process ...")
        let terminal = ForegroundTerminal.current()
        // Every signal that would end us, taken as data instead: installed
        // before the script starts, so that none of them can end us while the
        // script (or what it started) goes on writing; the script's group is
        // stopped first. Put back only after the session is closed, for the
        // same reason. With a terminal, ^C and ^\ are the script's (see
        // `runScript`) and ignored here.
        var watched = TerminatingSignals.current()
        if terminal != nil { watched.removeAll { $0 == SIGINT || $0 == SIGQUIT } }
        guard let signals = SignalWatch(watched + [SIGCHLD]) else {
            logger.error("cannot watch signals: \(String(cString: strerror(errno)))")
            session.close()
            return ScriptExit.didNotRun
        }
        let device = StorageSync.device(of: dataPath)
        var (code, endingSignal) = runScript(dataPath: dataPath, session: session, signals: signals, terminal: terminal)
        // What the script wrote is on the disk before the session ends and
        // before we exit: the daemon's read-only remount comes later.
        let failure = device.map { StorageSync.sync(anyOf: StorageSync.candidates(dataPath, dataPath: dataPath), device: $0) }
            ?? "the data directory was not there when the session opened"
        if let failure {
            logger.error("what was written under \(dataPath) may not be on the disk: \(failure)")
            if code == 0 { code = ScriptExit.didNotRun }
        }
        session.close()
        // One that came after the script's end, while the session closed.
        while endingSignal == nil, let number = signals.next() {
            if number != SIGCHLD { endingSignal = number }
        }
        signals.stop()
        if let endingSignal {
            // As if the signal had ended us, which the shell reports as 128 + N.
            code = 128 + endingSignal
        }
        return code
    }

    private func runScript(
        dataPath: String, session: BlockingSession, signals: SignalWatch, terminal: ForegroundTerminal?
    ) -> (code: Int32, endingSignal: Int32?) {
        let ignoredSignals = terminal.map { _ in IgnoredSignals([SIGINT, SIGQUIT]) }
        defer { ignoredSignals?.restore() }
        terminal?.prepareForScript()
        defer { terminal?.reclaim() }

        let script: ScriptProcess
        do {
            script = try ScriptProcess.spawn(command, environment: Self.environment(withData: dataPath), foregroundTerminal: terminal?.descriptor)
        } catch {
            logger.error("\(error)")
            return (error.exitCode, nil)
        }
        let outcome = ScriptSupervision(script: script, killGracePeriod: killGracePeriod, logger: logger)
            .untilExit(session: session, signals: signals)
        logger.info("Process finished: returncode=\(outcome.scriptExitCode)")
        return (outcome.scriptExitCode, outcome.endingSignal)
    }

    /// Ours, with `KVMD_PST_DATA` set: read from `environ` as it is, since
    /// Foundation's `ProcessInfo` would be set up for this one read.
    private static func environment(withData dataPath: String) -> [String] {
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let variable = String(cString: pointer)
            if !variable.hasPrefix("KVMD_PST_DATA=") { environment.append(variable) }
            entry += 1
        }
        environment.append("KVMD_PST_DATA=" + dataPath)
        return environment
    }
}
