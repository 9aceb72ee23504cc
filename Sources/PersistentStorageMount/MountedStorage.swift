import CLibMount
import Glibc
import Synchronization

/// Which filesystem is the storage, so that whatever else gets mounted over
/// its mount point (another filesystem, a bind mount of some directory, a
/// tmpfs) is never taken for it: never remounted, never given to the
/// storage's user, never handed to clients.
///
/// The storage is the device the fstab entry names (`/dev/mmcblk0p4`,
/// `LABEL=PIPST`, resolved through libmount), mounted whole. When that
/// cannot be resolved, it is the filesystem found mounted there first.
public final class MountedStorage: Sendable {
    public let mountPath: String
    public let fstabPath: String
    /// The storage's device as last confirmed.
    private let knownDevice: Mutex<UInt64?>
    /// What stat(2) of the mount point gave when the mount table last showed
    /// the storage on top there: the device and the inode of its root.
    private let knownTop: Mutex<(device: UInt64, inode: UInt64)?>

    public init(mountPath: String, fstabPath: String) {
        self.mountPath = mountPath
        self.fstabPath = fstabPath
        knownDevice = Mutex(nil)
        knownTop = Mutex(nil)
    }

    /// The state of the storage's mount: ``MountState/otherFilesystem``
    /// when what is on top at the mount point is not the storage.
    public func state() -> MountState {
        guard let top = MountTable.filesystems(mountedAt: mountPath).last else { return .notMounted }
        guard isStorage(top) else { return .otherFilesystem }
        var info = stat()
        if stat(mountPath, &info) == 0 && UInt64(info.st_dev) == top.device {
            knownTop.withLock { $0 = (UInt64(info.st_dev), UInt64(info.st_ino)) }
        }
        return top.state
    }

    /// Whether the storage is on top at the mount point (so that a remount
    /// there acts on it), by one stat(2) when it confirms the last reading of
    /// the mount table, else by reading the table again.
    public func isOnTop() -> Bool {
        topMatchesLastReading() || state() != .otherFilesystem
    }

    /// The state right after a remount to `mode` succeeded. When stat(2)
    /// shows the storage still on top and statvfs(2) shows `mode`, that is
    /// the state, without reading the mount table (the kernel formats it
    /// anew for each reading: about 0.25 ms of CPU here, six of them per
    /// session cycle, see Documentation/Benchmarks.md); otherwise ``state()``.
    public func state(afterRemountTo mode: RemountMode) -> MountState {
        var fs = statvfs()
        if topMatchesLastReading(), statvfs(mountPath, &fs) == 0,
           (fs.f_flag & UInt(ST_RDONLY) != 0) == (mode == .readOnly) {
            // A remount without MS_BIND sets the superblock's flag, so a
            // read-only one leaves no writable view elsewhere.
            return mode == .readOnly ? .readOnly : .readWrite
        }
        return state()
    }

    private func topMatchesLastReading() -> Bool {
        guard let known = knownTop.withLock({ $0 }) else { return false }
        var info = stat()
        return stat(mountPath, &info) == 0 && UInt64(info.st_dev) == known.device && UInt64(info.st_ino) == known.inode
    }

    /// Whether the storage itself is mounted read-write at the mount point,
    /// whatever may be mounted over it.
    public func storageIsWritable() -> Bool {
        MountTable.filesystems(mountedAt: mountPath).contains { isStorage($0) && $0.state == .readWrite }
    }

    private func isStorage(_ mounted: MountedFilesystem) -> Bool {
        guard mounted.root == "/" else { return false }
        if knownDevice.withLock({ $0 }) == mounted.device { return true }
        // First use, or the storage was mounted again from another device
        // node (a loop device attached anew): the fstab says which it is.
        let resolved = Self.fstabDevice(fstabPath)
        return knownDevice.withLock { known in
            if let resolved {
                known = resolved
                return resolved == mounted.device
            }
            // Unresolvable: the first filesystem seen there is the storage.
            if known == nil { known = mounted.device }
            return known == mounted.device
        }
    }

    /// The device number of the fstab entry's source, or nil.
    static func fstabDevice(_ fstabPath: String) -> UInt64? {
        guard let source = try? FstabReader(path: fstabPath).findStorage().location.source, !source.isEmpty,
              let cache = mnt_new_cache() else { return nil }
        defer { mnt_unref_cache(cache) }
        // LABEL=, UUID= and the like through udev's links or blkid; a path as it is.
        guard let resolved = mnt_resolve_spec(source, cache) else { return nil }
        var info = stat()
        guard stat(resolved, &info) == 0, info.st_mode & S_IFMT == S_IFBLK else { return nil }
        return UInt64(info.st_rdev)
    }
}
