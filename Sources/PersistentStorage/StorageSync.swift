import CSystemShims
import Glibc

/// Makes what was written to the storage durable before a session ends:
/// syncfs(2) on the storage's filesystem. The daemon's read-only remount
/// flushes too, but it comes after the client has returned, and a power cut
/// in between loses what was written (Documentation/Reliability.md).
package enum StorageSync {
    /// Flushes the filesystem that holds the first of `directories` that can
    /// still be opened as a directory on `device` (the body may have removed
    /// its own subdirectory; a link put in its place leads elsewhere).
    /// Returns nil once synced, or why it could not be.
    package static func sync(anyOf directories: [String], device: dev_t) -> String? {
        for directory in directories {
            let fd = open(directory, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var info = stat()
            guard fstat(fd, &info) == 0, info.st_dev == device else { continue }
            if pst_syncfs(fd) == 0 { return nil }
            return "syncfs(2) on \(directory) failed: \(String(cString: strerror(errno)))"
        }
        return "none of \(directories.joined(separator: ", ")) is a directory on the storage any more"
    }

    /// The device of the filesystem that holds `directory`, or nil.
    package static func device(of directory: String) -> dev_t? {
        var info = stat()
        return stat(directory, &info) == 0 ? info.st_dev : nil
    }

    /// Where to look for the storage's filesystem after a session that was
    /// given `path` inside the data directory `dataPath`.
    package static func candidates(_ path: String, dataPath: String) -> [String] {
        var parent = dataPath
        while parent.count > 1 && parent.hasSuffix("/") { parent.removeLast() }
        parent = String(parent[..<(parent.lastIndex(of: "/") ?? parent.startIndex)])
        return [path, dataPath] + (parent.isEmpty ? [] : [parent])
    }
}
