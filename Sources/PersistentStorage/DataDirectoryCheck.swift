#if canImport(Glibc)
import Glibc
#endif

/// Whether the data path the daemon handed out is a real directory.
///
/// Whoever may write its parent (the storage's user, in the PST document's
/// `ROOT/data` layout) can replace it with a symbolic link while the
/// storage is writable, and send the next client's writes, a root script's
/// included, wherever the link points. The daemon repairs it only at its
/// next read-write remount, so each client looks before it writes.
package enum DataDirectoryCheck {
    /// Nil when `path` is a directory reached without following a link in
    /// its last component; otherwise what it is instead.
    package static func problem(at path: String) -> String? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return "cannot be read (\(String(cString: strerror(errno))))" }
        switch info.st_mode & S_IFMT {
        case S_IFDIR: return nil
        case S_IFLNK: return "is a symbolic link, not a directory"
        default: return "is not a directory"
        }
    }

    /// ``problem(at:)`` as the error to throw.
    package static func check(_ path: String) throws(PersistentStorageError) {
        if let problem = problem(at: path) {
            throw .unsafeDataDirectory(path: path, reason: problem)
        }
    }
}
