import CLibMount
import Glibc

/// Whether the storage may be written, as the kernel sees it now.
public enum MountState: String, Sendable, Equatable, CustomStringConvertible {
    /// Nothing is mounted at the path: neither read-only nor writable.
    case notMounted = "not mounted"
    case readOnly = "read-only"
    case readWrite = "read-write"
    /// Read-only at this mount, but the filesystem itself is writable
    /// through another mount of it (a bind mount remounted read-write): it
    /// must be made read-only like a writable one, and is no use to clients.
    case writableElsewhere = "read-only here, but writable through another mount"
    /// Something else is mounted over the storage's mount point (another
    /// filesystem, or a bind mount of a directory): it is not the storage,
    /// and nothing may be remounted or changed there.
    case otherFilesystem = "another filesystem is mounted over it"
    /// The filesystem hit an error and the kernel stopped all writing to it
    /// (`errors=remount-ro`). ext4 may do this without marking the mount
    /// read-only (`emergency_ro` in its options; `statvfs` then still says
    /// writable), and no remount makes it writable again: it needs
    /// unmounting and `e2fsck`.
    case readOnlyAfterErrors = "read-only after filesystem errors"

    public var description: String { rawValue }

    public var isWritable: Bool { self == .readWrite }

    /// Whether anything can write to the filesystem now, through this mount
    /// or another: what must not last without a session.
    public var filesystemIsWritable: Bool { self == .readWrite || self == .writableElsewhere }
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
    /// The device the filesystem is on (`st_dev` of everything in it).
    public var device: UInt64 = 0
    /// The directory of that filesystem the mount shows: `/` for a whole
    /// filesystem, another path for a bind mount of a part of it.
    public var root: String = "/"

    /// What the options say. The mount and its superblock each have their
    /// own flag: a read-only superblock stops every writer (a remount
    /// through the new mount API may set only that one), a read-only mount
    /// only those who write through it; `emergency_ro` in the superblock's
    /// options is ext4 stopping all writes after an error.
    public var state: MountState {
        let filesystem = filesystemOptions.split(separator: ",")
        if filesystem.contains("emergency_ro") { return .readOnlyAfterErrors }
        if filesystem.contains("ro") { return .readOnly }
        return vfsOptions.split(separator: ",").contains("ro") ? .writableElsewhere : .readWrite
    }

    public init(
        source: String, target: String, filesystemType: String, vfsOptions: String, filesystemOptions: String,
        device: UInt64 = 0, root: String = "/"
    ) {
        self.source = source
        self.target = target
        self.filesystemType = filesystemType
        self.vfsOptions = vfsOptions
        self.filesystemOptions = filesystemOptions
        self.device = device
        self.root = root
    }

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
        filesystems(mountedAt: path).last
    }

    /// Every filesystem mounted at `path`, the first mounted first: the
    /// last one is on top, the one a path lookup reaches.
    public static func filesystems(mountedAt path: String) -> [MountedFilesystem] {
        let table = LibMountTable()
        guard mnt_table_parse_mtab(table.handle, "/proc/self/mountinfo") == 0 else { return [] }
        let wanted = canonicalPath(path)
        return table.entries.filter { libmountString(mnt_fs_get_target($0)) == wanted }.map { fs in
            MountedFilesystem(
                source: libmountString(mnt_fs_get_source(fs)) ?? "",
                target: wanted,
                filesystemType: libmountString(mnt_fs_get_fstype(fs)) ?? "",
                vfsOptions: libmountString(mnt_fs_get_vfs_options(fs)) ?? "",
                filesystemOptions: libmountString(mnt_fs_get_fs_options(fs)) ?? "",
                device: UInt64(mnt_fs_get_devno(fs)),
                root: libmountString(mnt_fs_get_root(fs)) ?? "/")
        }
    }

    /// The state of the mount at `mountPath`, from the mount table alone:
    /// nothing a client can create or remove inside the storage changes it.
    public static func state(ofMountPoint mountPath: String) -> MountState {
        guard let mounted = filesystem(mountedAt: mountPath) else { return .notMounted }
        return mounted.state
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
