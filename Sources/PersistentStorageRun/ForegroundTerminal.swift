import CSystemShims
import Glibc

/// The terminal `kvmd-pstrun` was started from, when it runs in the
/// foreground there: the script gets the terminal for its run, and everything
/// is put back afterwards.
struct ForegroundTerminal: Sendable {
    let descriptor: Int32
    private let ownGroup: pid_t
    private let savedAttributes: termios

    /// The terminal on stdin, if stdin is one and our group is its foreground
    /// group; nil otherwise (pipes, background jobs, services).
    static func current() -> ForegroundTerminal? {
        let descriptor = STDIN_FILENO
        var attributes = termios()
        guard isatty(descriptor) == 1,
            tcgetpgrp(descriptor) == getpgrp(),
            tcgetattr(descriptor, &attributes) == 0
        else { return nil }
        return ForegroundTerminal(descriptor: descriptor, ownGroup: getpgrp(), savedAttributes: attributes)
    }

    /// Prepares the terminal before the script starts: ^Z would stop the
    /// script while we hold the storage writable, so it is turned off.
    func prepareForScript() {
        _ = pst_terminal_disable_suspend(descriptor)
    }

    /// Takes the terminal back from the script's group and restores its settings.
    func reclaim() {
        // We are a background group now: changing the foreground group or the
        // settings from there raises SIGTTOU, which would stop us.
        let previous = signal(SIGTTOU, SIG_IGN)
        defer { signal(SIGTTOU, previous) }
        _ = tcsetpgrp(descriptor, ownGroup)
        var attributes = savedAttributes
        _ = tcsetattr(descriptor, TCSADRAIN, &attributes)
    }
}
