#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemSupport
import Dispatch
import Glibc
import PersistentStorageProtocol
import Synchronization

/// Wakes the daemon when the kernel's mount table changes.
///
/// `/proc/self/mountinfo` reports `POLLPRI` whenever a mount, unmount or
/// remount happens in this mount namespace, so a dedicated thread can sleep in
/// poll(2) until then. That is not enough on its own: when ext4 hits an error
/// with `errors=remount-ro`, the kernel marks only the superblock read-only
/// (`emergency_ro`), and the namespace's event counter does not move. So the
/// thread also wakes every `recheckInterval` to let the controller read the
/// mount table again (the controller sends nothing when nothing changed).
final class MountTableWatcher: Sendable {
    /// Why the thread woke.
    enum Wake: Sendable {
        /// The kernel signalled a change of the mount table.
        case changed
        /// `recheckInterval` passed: read the table even though no change was signalled.
        case periodicRecheck
    }

    /// One element per wake-up; consumers look at the kernel state themselves.
    let changes: AsyncStream<Wake>

    private let wakeWriteEnd: Mutex<Int32?>

    /// Starts the watching thread. Throws the errno when
    /// `/proc/self/mountinfo` cannot be opened.
    init(recheckInterval: Duration, mountInfoPath: String = "/proc/self/mountinfo") throws(MountTableWatcherError) {
        let mountInfo = open(mountInfoPath, O_RDONLY | O_CLOEXEC)
        guard mountInfo >= 0 else { throw MountTableWatcherError(path: mountInfoPath, errno: errno) }
        guard let (wakeReadEnd, wakeWriteEnd) = makeCloseOnExecPipe() else {
            let code = errno
            close(mountInfo)
            throw MountTableWatcherError(path: "pipe", errno: code)
        }
        self.wakeWriteEnd = Mutex(wakeWriteEnd)

        let (stream, continuation) = AsyncStream.makeStream(of: Wake.self, bufferingPolicy: .bufferingNewest(8))
        changes = stream
        let timeout = Int32(clamping: recheckInterval.components.seconds * 1000
            + recheckInterval.components.attoseconds / 1_000_000_000_000_000)

        DetachedThread.run(name: "pst-mount-watcher") {
            defer {
                close(mountInfo)
                close(wakeReadEnd)
                continuation.finish()
            }
            var fds = [
                pollfd(fd: mountInfo, events: Int16(POLLPRI), revents: 0),
                pollfd(fd: wakeReadEnd, events: Int16(POLLIN), revents: 0),
            ]
            // Due by the clock, not only when poll(2) times out: in a namespace
            // where mounts change all the time, the timeout never comes.
            let clock = ContinuousClock()
            var lastRecheck = clock.now
            while true {
                fds[0].revents = 0
                fds[1].revents = 0
                let ready = poll(&fds, 2, max(timeout, 1))
                if ready < 0 {
                    if errno == EINTR { continue }
                    return
                }
                if fds[1].revents != 0 { return }
                if clock.now - lastRecheck >= recheckInterval {
                    lastRecheck = clock.now
                    continuation.yield(.periodicRecheck)
                } else if ready > 0 {
                    continuation.yield(.changed)
                }
            }
        }
    }

    /// Ends the thread; `changes` finishes. Safe to call more than once.
    func stop() {
        wakeWriteEnd.withLock { fd in
            guard let writeEnd = fd else { return }
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
            close(writeEnd)
            fd = nil
        }
    }

    deinit { stop() }
}

struct MountTableWatcherError: Error, CustomStringConvertible {
    var path: String
    var errno: Int32
    var description: String { "cannot watch the mount table (\(path)): \(String(cString: strerror(errno)))" }
}
