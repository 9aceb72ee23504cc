import SystemSupport
import Glibc
import Synchronization

/// A way to wake a thread that is blocked in `poll(2)` on the daemon's socket:
/// one end of a socket pair that it polls alongside the socket, and that
/// becomes readable (for good) once ``wake()`` is called.
///
/// The async API blocks a thread of its own per call (``BlockingCall``); the
/// caller's task cancellation, or ``SessionHolder/close()``, wakes it
/// through this. A socket pair rather than an eventfd or a pipe: Swift's
/// Glibc module exports neither eventfd(2) nor pipe2(2), and only
/// socketpair(2) is made close-on-exec and non-blocking at once, so that no
/// process the service starts meanwhile inherits it. It is closed only when the
/// last reference goes, so a late ``wake()`` never writes to a reused descriptor.
final class WakeUp: Sendable {
    /// The end to poll for `POLLIN`.
    let descriptor: CInt
    private let writeEnd: CInt
    private let woken = Atomic<Bool>(false)

    /// - Throws: the errno of socketpair(2) (out of descriptors).
    init() throws(SystemError) {
        var ends: [CInt] = [-1, -1]
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue)
        guard socketpair(AF_UNIX, type, 0, &ends) == 0 else { throw SystemError(errno: errno) }
        descriptor = ends[0]
        writeEnd = ends[1]
    }

    deinit {
        close(descriptor)
        close(writeEnd)
    }

    /// Whether ``wake()`` has been called.
    var isWoken: Bool { woken.load(ordering: .acquiring) }

    /// Makes ``descriptor`` readable from now on; safe from any thread, any number of times.
    func wake() {
        guard !woken.exchange(true, ordering: .acquiringAndReleasing) else { return }
        var byte: UInt8 = 1
        _ = send(writeEnd, &byte, 1, Int32(MSG_NOSIGNAL))
    }
}

/// A failed system call's errno, for the caller to put into its own error.
struct SystemError: Error {
    let errno: CInt
    var description: String { String(cString: strerror(errno)) }
}
