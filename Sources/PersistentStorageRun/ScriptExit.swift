import SystemSupport

/// How `kvmd-pstrun` reports a script's end, in the shell's convention.
public enum ScriptExit {
    /// The script never ran: the daemon was unreachable, refused, or timed out.
    public static let didNotRun: Int32 = 1
    /// The program exists but could not be executed (permissions, `noexec`).
    public static let notExecutable: Int32 = 126
    /// No such program.
    public static let notFound: Int32 = 127

    /// The exit code for a `waitpid(2)` status: the script's own code, or
    /// 128 + N when signal N killed it.
    public static func code(forWaitStatus status: Int32) -> Int32 {
        switch WaitStatus(status) {
        case .exited(let code): code
        case .signalled(let signal): 128 + signal
        }
    }
}
