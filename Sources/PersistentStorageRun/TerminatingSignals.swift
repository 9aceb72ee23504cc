import CSystemShims

/// The signals that would end this process now if sent to it: every one whose
/// default action terminates it (SIGUSR1, SIGPIPE, SIGALRM and the real-time
/// ones included, not only SIGTERM), unless it is ignored. Signals the parent
/// set to be ignored (`nohup` and SIGHUP) are left alone: they would not end
/// us. SIGQUIT and SIGABRT count though the Swift runtime's crash reporter
/// handles them: it ends the process after its report.
enum TerminatingSignals {
    static func current() -> [Int32] {
        var numbers = [Int32](repeating: 0, count: 128)
        let count = pst_signals_ending_process(&numbers, Int32(numbers.count))
        return Array(numbers.prefix(Int(count)))
    }
}
