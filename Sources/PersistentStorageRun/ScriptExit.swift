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
        // The layout glibc's WIFEXITED/WEXITSTATUS/WTERMSIG macros decode, which
        // Swift cannot import: the low 7 bits are the signal (0 = exited
        // normally), bits 8-15 the exit code.
        let signal = status & 0x7f
        if signal == 0 { return (status >> 8) & 0xff }
        return 128 + signal
    }
}
