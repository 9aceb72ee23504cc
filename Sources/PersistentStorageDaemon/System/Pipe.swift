import Glibc

/// A pipe whose ends are closed on exec, so no child process of the daemon
/// inherits them by accident.
///
/// Glibc declares `pipe2` only under `_GNU_SOURCE`, so the flag is set with
/// fcntl(2) right after; the daemon spawns children only from its own remount
/// path, which does not run while this is called from elsewhere.
func makeCloseOnExecPipe() -> (readEnd: Int32, writeEnd: Int32)? {
    var ends: [Int32] = [0, 0]
    guard pipe(&ends) == 0 else { return nil }
    for fd in ends { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    return (ends[0], ends[1])
}
