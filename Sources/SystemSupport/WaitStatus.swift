/// How a child process ended, decoded from a `waitpid(2)` status.
package enum WaitStatus: Equatable, Sendable {
    case exited(Int32)
    case signalled(Int32)

    /// The layout glibc's WIFEXITED/WEXITSTATUS/WTERMSIG macros decode (Swift
    /// cannot import the macros): the low 7 bits are the signal, 0 when the
    /// process exited; bits 8-15 the exit code.
    package init(_ status: Int32) {
        let signal = status & 0x7f
        self = signal == 0 ? .exited((status >> 8) & 0xff) : .signalled(signal)
    }
}
