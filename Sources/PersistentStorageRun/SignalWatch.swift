import CSystemShims
import Glibc

/// Signals taken as data instead of their actions, on a descriptor that
/// polls readable when one is pending (signalfd(2)), until ``stop()`` puts
/// the previous signal mask back. `kvmd-pstrun` waits for them in the same
/// poll(2) as for its session, on its one thread.
///
/// The signals are blocked in the calling thread; a script started meanwhile
/// gets an empty mask (see `pst_spawn_in_new_process_group`).
final class SignalWatch {
    /// Poll it for reading, then take the signals with ``next()``.
    let descriptor: CInt
    private var previousMask = sigset_t()
    private var stopped = false

    /// Returns nil if the kernel gave no descriptor (out of file descriptors).
    init?(_ watched: [Int32]) {
        var previous = sigset_t()
        let descriptor = watched.withUnsafeBufferPointer { pst_signalfd_open($0.baseAddress, Int32($0.count), &previous) }
        guard descriptor >= 0 else { return nil }
        self.descriptor = descriptor
        previousMask = previous
    }

    deinit { stop() }

    /// The next pending signal, or nil if none is.
    func next() -> Int32? {
        let number = pst_signalfd_next(descriptor)
        return number > 0 ? number : nil
    }

    /// Puts the signal mask back; a watched signal still pending then takes its action.
    func stop() {
        guard !stopped else { return }
        stopped = true
        pst_signalfd_close(descriptor, &previousMask)
    }
}

/// Signals ignored while the script has the terminal: ^C and ^\ are meant for
/// the script, and `kvmd-pstrun` must survive them to close the session.
struct IgnoredSignals {
    private let previousActions: [(signal: Int32, action: sighandler_t?)]

    init(_ ignored: [Int32]) {
        previousActions = ignored.map { ($0, signal($0, SIG_IGN)) }
    }

    func restore() {
        for (number, action) in previousActions { signal(number, action) }
    }
}
