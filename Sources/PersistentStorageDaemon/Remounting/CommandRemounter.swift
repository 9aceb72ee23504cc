import CSystemShims
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import Glibc
import SystemSupport
import PersistentStorageMount
import Synchronization

/// Why the remount command failed.
public struct RemountCommandError: Error, Equatable, CustomStringConvertible {
    public enum Outcome: Equatable, Sendable {
        case couldNotStart(errno: Int32)
        case exited(status: Int32)
        case killed(signal: Int32)
        case timedOut(after: Duration)
    }

    public var command: [String]
    public var outcome: Outcome
    /// What the command wrote to stderr, trimmed: usually the real reason.
    public var standardError: String

    public var description: String {
        let commandLine = command.joined(separator: " ")
        let reason = standardError.isEmpty ? "" : ": \(standardError)"
        switch outcome {
        case .couldNotStart(let code):
            return "cannot run the remount command '\(commandLine)': \(String(cString: strerror(code)))"
        case .exited(let status):
            return "the remount command '\(commandLine)' failed with exit status \(status)\(reason)"
        case .killed(let signal):
            return "the remount command '\(commandLine)' was killed by signal \(signal)\(reason)"
        case .timedOut(let limit):
            return "the remount command '\(commandLine)' did not finish within \(limit) and was killed\(reason)"
        }
    }
}

/// Remounts by running an external command, like the reference's `remount_cmd`:
/// every `{mode}` in the arguments becomes `rw` or `ro`. Exit status 0 is
/// success; anything else is a failure whose reason is the command's stderr.
///
/// ```swift
/// let remounter = CommandRemounter(arguments: ["sudo", "--non-interactive", "kvmd-helper-pst-remount", "{mode}"])
/// try await remounter.remount(to: .readOnly)
/// ```
public struct CommandRemounter: StorageRemounter {
    public static let modePlaceholder = "{mode}"

    /// A remount takes milliseconds; a command that takes this long is stuck
    /// (sudo waiting for a password, a hung helper) and would block every
    /// later remount, so it is killed and counted as a failure.
    public static let defaultTimeout: Duration = .seconds(60)

    /// The argument vector; the first element is looked up in `PATH`.
    public var arguments: [String]
    /// How long the command may run before it and its process group are killed.
    public var timeout: Duration

    public init(arguments: [String], timeout: Duration = CommandRemounter.defaultTimeout) {
        precondition(!arguments.isEmpty, "a remount command needs at least the program")
        self.arguments = arguments
        self.timeout = timeout
    }

    /// The argument vector for one mode.
    public func commandLine(for mode: RemountMode) -> [String] {
        arguments.map { $0.replacing(Self.modePlaceholder, with: mode.rawValue) }
    }

    public func remount(to mode: RemountMode) async throws {
        let command = commandLine(for: mode)
        let timeout = timeout
        let result = try await runBlocking { try ChildProcess.run(command, timeout: timeout) }
        if result.timedOut {
            throw RemountCommandError(command: command, outcome: .timedOut(after: timeout), standardError: result.standardError)
        }
        switch result.termination {
        case .exited(0): return
        case .exited(let status):
            throw RemountCommandError(command: command, outcome: .exited(status: status), standardError: result.standardError)
        case .signalled(let signal):
            throw RemountCommandError(command: command, outcome: .killed(signal: signal), standardError: result.standardError)
        }
    }
}

/// A child process run to completion with its stderr captured.
enum ChildProcess {
    struct Result {
        var termination: WaitStatus
        var standardError: String
        /// The command ran out of time and was killed.
        var timedOut: Bool
    }

    /// Blocks until the command has exited. stdin is /dev/null, stdout is
    /// inherited (it goes to the daemon's log), stderr is captured.
    ///
    /// The command runs in a process group of its own, so that when it runs
    /// out of time everything it started (sudo's child, say) is killed with
    /// it and nothing keeps the stderr pipe open.
    static func run(_ command: [String], timeout: Duration) throws(RemountCommandError) -> Result {
        guard let (readEnd, writeEnd) = makeCloseOnExecPipe() else {
            throw RemountCommandError(command: command, outcome: .couldNotStart(errno: errno), standardError: "")
        }
        defer { close(readEnd) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, writeEnd, STDERR_FILENO)
        // Nothing else: SwiftNIO's sockets are not all close-on-exec, and a
        // command holding a copy of a session's socket would keep that client
        // from seeing the daemon hang up.
        pst_spawn_file_actions_close_from(&actions, 3)

        // The daemon ignores SIGPIPE for its sockets; the child should not inherit that.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        var noSignalsBlocked = sigset_t()
        sigemptyset(&noSignalsBlocked)
        posix_spawnattr_setsigmask(&attributes, &noSignalsBlocked)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var cArguments: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawnResult = posix_spawnp(&pid, command[0], &actions, &attributes, &cArguments, environ)
        close(writeEnd)
        guard spawnResult == 0 else {
            throw RemountCommandError(command: command, outcome: .couldNotStart(errno: spawnResult), standardError: "")
        }

        // The watchdog may signal the group only while the child is not yet
        // reaped (its pid cannot be reused before that): both sides take the lock.
        let watchdog = Mutex((reaped: false, fired: false))
        let childGroup = pid
        let deadline = DispatchTime.now() + .nanoseconds(Int(timeout / .nanoseconds(1)))
        DispatchQueue.global().asyncAfter(deadline: deadline) {
            watchdog.withLock { state in
                guard !state.reaped else { return }
                state.fired = true
                kill(-childGroup, SIGKILL)
            }
        }

        var captured: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            // Keep the start of the message; a runaway command must not fill memory.
            if captured.count < 16384 { captured.append(contentsOf: buffer[0..<count]) }
        }
        // Wait without reaping, so the watchdog can still signal safely.
        var info = siginfo_t()
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
        let timedOut = watchdog.withLock { state in
            state.reaped = true
            return state.fired
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}

        let text = String(decoding: captured, as: UTF8.self).trimmingWhitespace()
        return Result(termination: WaitStatus(status), standardError: text, timedOut: timedOut)
    }
}
