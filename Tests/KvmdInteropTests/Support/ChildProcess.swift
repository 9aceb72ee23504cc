import Foundation
import Glibc

/// Processes started with posix_spawn and reaped with waitpid by this
/// suite itself. Foundation's `Process` left a finished `daemon.sh` (whose
/// child daemon lives on) unreaped, and `waitUntilExit` then never returned.
/// Output goes to files, not pipes, so nothing a script leaves running can
/// hold a test up.
final class ChildProcess: @unchecked Sendable {
    // @unchecked: `status` is only touched under `lock`.
    let pid: pid_t
    private let lock = NSLock()
    private var status: Int32?

    /// Starts `arguments` (the first looked up in PATH) with stdin from
    /// /dev/null, stdout and stderr appended to the given files, and every
    /// signal at its default action and unblocked (the test runner ignores
    /// SIGPIPE; a daemon started by systemd does not).
    init(_ arguments: [String], standardOutput: String, standardError: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, standardOutput, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_APPEND, 0o644)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, arguments[0], &actions, &attributes, argv, environ)
        guard result == 0 else {
            throw AnchorError("cannot start \(arguments.joined(separator: " ")): \(String(cString: strerror(result)))")
        }
        self.pid = pid
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = waitBlocking()
        }
    }

    /// Its status as a shell reports it (128+N for signal N), nil while it runs.
    var exitStatus: Int32? {
        lock.lock()
        defer { lock.unlock() }
        if status == nil {
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid { status = Self.shellStatus(raw) }
        }
        return status
    }

    var isRunning: Bool { exitStatus == nil }

    /// Whether it exits within `timeout`.
    func exits(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while isRunning {
            if ContinuousClock.now >= deadline { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    private func waitBlocking() -> Int32 {
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) == -1 && errno == EINTR {}
        return Self.shellStatus(raw)
    }

    private static func shellStatus(_ raw: Int32) -> Int32 {
        let signal = raw & 0x7f
        return signal == 0 ? (raw >> 8) & 0xff : 128 + signal
    }
}

/// Runs `arguments` to its end (at most `timeout`, then SIGKILL) and returns
/// its status and output.
func execute(_ arguments: [String], timeout: Duration = .seconds(120)) async throws -> (status: Int32, standardOutput: String, standardError: String) {
    let directory = FileManager.default.temporaryDirectory.appending(path: "kvmd-command-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let child = try ChildProcess(arguments, standardOutput: directory + "/stdout", standardError: directory + "/stderr")
    if await !child.exits(within: timeout) {
        kill(child.pid, SIGKILL)
        _ = await child.exits(within: .seconds(5))
        throw AnchorError("`\(arguments.joined(separator: " "))` did not end within \(timeout)")
    }
    return (child.exitStatus ?? -1,
            (try? String(contentsOfFile: directory + "/stdout", encoding: .utf8)) ?? "",
            (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? "")
}
