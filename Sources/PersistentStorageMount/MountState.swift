import CLibMount
import Glibc

/// Whether the storage may be written, as the kernel sees it now.
public enum MountState: String, Sendable, Equatable, CustomStringConvertible {
    /// Nothing is mounted at the path: neither read-only nor writable.
    case notMounted = "not mounted"
    case readOnly = "read-only"
    case readWrite = "read-write"

    public var description: String { rawValue }
}

/// One line of the kernel's mount table (`/proc/self/mountinfo`).
public struct MountedFilesystem: Sendable, Equatable {
    public var source: String
    public var target: String
    public var filesystemType: String
    /// Per-mount options (`ro,nosuid,nodev,noexec,relatime`).
    public var vfsOptions: String
    /// Superblock options (`errors=remount-ro,data=journal`).
    public var filesystemOptions: String

    /// Every option, per-mount first.
    public var allOptions: [String] {
        (vfsOptions.split(separator: ",") + filesystemOptions.split(separator: ",")).map(String.init)
    }
}

/// Reads mount state from the kernel. Nothing here is remembered: every call
/// asks again, so a remount done by someone else is seen at once.
public enum MountTable {
    /// The filesystem mounted at `path` (the topmost, if several are stacked),
    /// or nil when `path` is not a mount point in this mount namespace.
    public static func filesystem(mountedAt path: String) -> MountedFilesystem? {
        let table = LibMountTable()
        guard mnt_table_parse_mtab(table.handle, "/proc/self/mountinfo") == 0 else { return nil }
        let wanted = canonicalPath(path)
        // The last matching line is the mount on top, the one a path lookup reaches.
        for fs in table.entries.reversed() where libmountString(mnt_fs_get_target(fs)) == wanted {
            return MountedFilesystem(
                source: libmountString(mnt_fs_get_source(fs)) ?? "",
                target: wanted,
                filesystemType: libmountString(mnt_fs_get_fstype(fs)) ?? "",
                vfsOptions: libmountString(mnt_fs_get_vfs_options(fs)) ?? "",
                filesystemOptions: libmountString(mnt_fs_get_fs_options(fs)) ?? "")
        }
        return nil
    }

    /// Not mounted, read-only or read-write, for the mount point `mountPath`.
    public static func state(ofMountPoint mountPath: String) -> MountState {
        guard filesystem(mountedAt: mountPath) != nil else { return .notMounted }
        return isWritable(mountPath) ? .readWrite : .readOnly
    }

    /// Whether the filesystem holding `path` is mounted read-write right now
    /// (`statvfs` without `ST_RDONLY`); false when `path` cannot be reached.
    public static func isWritable(_ path: String) -> Bool {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return false }
        return info.f_flag & UInt(ST_RDONLY) == 0
    }

    static func canonicalPath(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
