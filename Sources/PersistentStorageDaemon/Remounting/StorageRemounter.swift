import PersistentStorageMount

/// Switches the storage between read-only and read-write.
///
/// The controller decides *when*; a remounter only knows *how*. Two real ways
/// exist: ``InProcessRemounter`` (libmount in this process, needs root or
/// `CAP_SYS_ADMIN`) and ``CommandRemounter`` (an external command such as
/// `sudo --non-interactive kvmd-helper-pst-remount {mode}`, for a daemon that
/// runs unprivileged like the reference's).
///
/// A remount to ``RemountMode/readWrite`` that returns must have left the data
/// directory in place (the "fix" step); one that throws must not have left the
/// storage writable.
public protocol StorageRemounter: Sendable {
    func remount(to mode: RemountMode) async throws
}
