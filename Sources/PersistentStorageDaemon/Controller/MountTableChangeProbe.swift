import Glibc

/// Says whether the mount table changed since it was last asked, with one
/// poll(2) instead of a reading of the table (about 0.1 ms with libmount).
///
/// The kernel keeps, per open `/proc/self/mountinfo`, the namespace's event
/// counter as of the last poll, and reports `POLLPRI` once when it moved: so
/// asking right before a reading makes that reading current until the next
/// `true`. ext4's `errors=remount-ro` does not move the counter; the
/// periodic re-check reads regardless (see ``MountTableWatcher``).
final class MountTableChangeProbe: Sendable {
    private let mountInfo: Int32

    /// Nil when `/proc/self/mountinfo` cannot be opened; then every reading is done.
    init?(mountInfoPath: String = "/proc/self/mountinfo") {
        mountInfo = open(mountInfoPath, O_RDONLY | O_CLOEXEC)
        guard mountInfo >= 0 else { return nil }
    }

    deinit { close(mountInfo) }

    /// True when a mount, unmount or remount happened in this namespace
    /// since the last call, or when poll(2) cannot tell.
    func changedSinceLastAsked() -> Bool {
        var entry = pollfd(fd: mountInfo, events: Int16(POLLPRI), revents: 0)
        let ready = poll(&entry, 1, 0)
        return ready != 0
    }
}
