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

    public init(mountPath: String, fstabPath: String) {
        self.mountPath = mountPath
        self.fstabPath = fstabPath
        knownDevice = Mutex(nil)
    }

    /// The state of the storage's mount: ``MountState/otherFilesystem``
    /// when what is on top at the mount point is not the storage.
    public func state() -> MountState {
        guard let top = MountTable.filesystems(mountedAt: mountPath).last else { return .notMounted }
        return isStorage(top) ? top.state : .otherFilesystem
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
