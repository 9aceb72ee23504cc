import CSystemShims
import Glibc

/// A started script: always the leader of a process group of its own, so
/// signals meant for it never reach `kvmd-pstrun`'s group (or the shell's).
struct ScriptProcess: Sendable {
    let pid: pid_t
    /// Its process group; the same number as `pid`.
    var processGroup: pid_t { pid }

    /// Starts `arguments[0]` (searched in PATH) with `environment` (`NAME=value`
    /// entries), inheriting stdin, stdout and stderr.
    ///
    /// - Parameter foregroundTerminal: a terminal whose foreground group the
    ///   script's group becomes before it starts, or nil.
    static func spawn(
        _ arguments: [String],
        environment: [String],
        foregroundTerminal: Int32?
    ) throws(ScriptLaunchError) -> ScriptProcess {
        precondition(!arguments.isEmpty, "a command is required")
        let argv = CStringArray(arguments)
        let envp = CStringArray(environment)
        var pid: pid_t = 0
        let result = withExtendedLifetime((argv, envp)) {
            pst_spawn_in_new_process_group(&pid, argv.pointers[0], argv.pointers, envp.pointers, foregroundTerminal ?? -1)
        }
        guard result == 0 else { throw ScriptLaunchError(command: arguments[0], errno: result) }
        return ScriptProcess(pid: pid)
    }

    /// Whether the script has exited. It stays a zombie until ``reap()``,
    /// which keeps its process-group id from being reused meanwhile.
    func hasExited() -> Bool {
        pst_has_exited_keeping_zombie(pid) == 1
    }

    /// Collects the exited script and returns its exit code (128 + N for signal N).
    func reap() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 {
            guard errno == EINTR else { return ScriptExit.didNotRun }
        }
        return ScriptExit.code(forWaitStatus: status)
    }

    /// Sends `signal` to every process in the script's group.
    func signalGroup(_ signal: Int32) {
        _ = kill(-processGroup, signal)
    }
}

/// A NULL-terminated `char *[]` for exec, freed when it goes away.
private final class CStringArray {
    let pointers: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointers = .allocate(capacity: count + 1)
        for (index, string) in strings.enumerated() { pointers[index] = strdup(string) }
        pointers[count] = nil
    }

    deinit {
        for index in 0..<count { free(pointers[index]) }
        pointers.deallocate()
    }
}
