import CSystemShims
import Glibc
import SystemSupport

/// Why the fix step after a read-write remount failed.
public struct StorageFixError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// What must hold after every read-write remount: the data directory exists,
/// root and data directory belong to the entry's user and group, and the root
/// is sticky `1775` when both are given (each service then makes its own
/// subdirectory and cannot remove another's).
///
/// It runs as root on a directory tree that clients may write to, so it never
/// leaves the storage: from the mount point, every component of the root and
/// the data directory is opened with `openat` and `O_NOFOLLOW` (no link is
/// followed, no `..` taken), each must be on the mount point's filesystem
/// (no mount crossed), and the owner and mode are changed with
/// `fchown`/`fchmod` on those checked descriptors. A link planted where the
/// data directory belongs is removed (the link, never its target); anything
/// else that is not a directory there is moved aside (renamed, never
/// deleted, so a client's data survives and a bad client cannot lock the
/// others out); then a real directory is made.
public struct StorageFix: Sendable {
    public var location: StorageLocation
    public var layout: DataLayout

    public init(location: StorageLocation, layout: DataLayout = .kvmdDefault) {
        self.location = location
        self.layout = layout
    }

    /// Idempotent: running it twice changes nothing the second time.
    /// Returns what it had to repair that a client may have caused (a
    /// symbolic link replaced), for the caller to log.
    @discardableResult
    public func apply() throws(StorageFixError) -> [String] {
        let uid = try location.user.map { name throws(StorageFixError) -> uid_t in
            guard let entry = getpwnam(name) else { throw StorageFixError("unknown user '\(name)' in X-kvmd.pst-user") }
            return entry.pointee.pw_uid
        }
        let gid = try location.group.map { name throws(StorageFixError) -> gid_t in
            guard let entry = getgrnam(name) else { throw StorageFixError("unknown group '\(name)' in X-kvmd.pst-group") }
            return entry.pointee.gr_gid
        }
        var repairs: [String] = []
        let mount = try DirectoryHandle(openingMountPoint: location.mountPath)
        var opened = [mount]
        defer { opened.forEach { $0.close() } }
        var root = mount
        for (name, path) in try Self.components(of: location.rootPath, below: location.mountPath) {
            _ = try root.makeSubdirectoryIfMissing(name, path: path, replacingOther: false)
            root = try root.openSubdirectory(name, path: path, sameFilesystemAs: mount)
            opened.append(root)
        }
        var directories = [root]
        if layout == .dataSubdirectory {
            let name = "data"
            let path = root.path + (root.path.hasSuffix("/") ? "" : "/") + name
            if let repair = try root.makeSubdirectoryIfMissing(name, path: path, replacingOther: true) { repairs.append(repair) }
            let data = try root.openSubdirectory(name, path: path, sameFilesystemAs: mount)
            opened.append(data)
            directories.append(data)
        }

        // Each change is made only where it is missing: chown(2) and chmod(2)
        // dirty the inode even when nothing changes (its ctime), and a dirty
        // inode is a journal commit to the SD card before every read-only
        // remount, one per session.
        if uid != nil || gid != nil {
            for directory in directories {
                let current = try directory.status()
                guard current.st_uid != (uid ?? current.st_uid) || current.st_gid != (gid ?? current.st_gid) else { continue }
                // -1 leaves that id unchanged, as chown(2) documents.
                if fchown(directory.fd, uid ?? uid_t.max, gid ?? gid_t.max) != 0 {
                    throw StorageFixError("cannot change the owner of \(directory.path): \(String(cString: strerror(errno)))")
                }
            }
        }
        if uid != nil && gid != nil, try root.status().st_mode & 0o7777 != 0o1775 {
            if fchmod(root.fd, 0o1775) != 0 {
                throw StorageFixError("cannot chmod \(root.path) to 1775: \(String(cString: strerror(errno)))")
            }
        }
        return repairs
    }

    /// The names from the mount point down to `root`, each with its path.
    /// The root must be the mount point or below it, written without `.`
    /// or `..` (FstabReader refuses anything else already).
    static func components(of root: String, below mountPath: String) throws(StorageFixError) -> [(name: String, path: String)] {
        guard root != mountPath else { return [] }
        let prefix = mountPath.hasSuffix("/") ? mountPath : mountPath + "/"
        guard root.hasPrefix(prefix) else {
            throw StorageFixError("the storage root \(root) is not inside the mount \(mountPath)")
        }
        var path = String(prefix.dropLast())
        var result: [(name: String, path: String)] = []
        for name in root.dropFirst(prefix.count).split(separator: "/") {
            guard name != "." && name != ".." else {
                throw StorageFixError("the storage root \(root) must not contain '.' or '..'")
            }
            path += "/" + name
            result.append((String(name), path))
        }
        return result
    }
}

/// An open directory that was checked to be one, never reached through a link.
private struct DirectoryHandle {
    let fd: Int32
    let path: String

    /// The mount point named by the fstab: the administrator's path, but
    /// never a link in its last component.
    init(openingMountPoint path: String) throws(StorageFixError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            throw StorageFixError("cannot open the mount point \(path): \(Self.reason(errno, at: path))")
        }
        self.fd = fd
        self.path = path
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Creates `name` as a directory unless one is there. A symbolic link in
    /// its place is removed first (unlinkat never follows it). Anything else
    /// that is not a directory is moved aside to `name.moved-aside.N` when
    /// `replacingOther` (never deleted: it may be a client's data), or refused.
    func makeSubdirectoryIfMissing(_ name: String, path: String, replacingOther: Bool) throws(StorageFixError) -> String? {
        var info = stat()
        var repair: String?
        if fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                return nil
            case S_IFLNK:
                guard replacingOther else {
                    throw StorageFixError("\(path) is a symbolic link, which is not followed")
                }
                guard unlinkat(fd, name, 0) == 0 else {
                    throw StorageFixError("cannot remove the symbolic link at \(path): \(String(cString: strerror(errno)))")
                }
                repair = "\(path) was a symbolic link; removed it (its target was not touched) and made a directory"
            default:
                let kind = fileKind(info.st_mode)
                guard replacingOther else {
                    throw StorageFixError("\(path) is \(kind), not a directory; move it away and try again")
                }
                let aside = try moveAside(name, path: path)
                repair = "\(path) was \(kind), not a directory; moved it to \(aside) and made a directory"
            }
        } else if errno != ENOENT {
            throw StorageFixError("cannot look at \(path): \(String(cString: strerror(errno)))")
        }
        if mkdirat(fd, name, 0o755) != 0 && errno != EEXIST {
            throw StorageFixError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        return repair
    }

    /// Renames `name` to the first free `name.moved-aside.N`; the rename
    /// never replaces anything (RENAME_NOREPLACE), however the names race.
    private func moveAside(_ name: String, path: String) throws(StorageFixError) -> String {
        for number in 1...1000 {
            let newName = "\(name).moved-aside.\(number)"
            if pst_rename_no_replace(fd, name, fd, newName) == 0 {
                return String(path.dropLast(name.count)) + newName
            }
            guard errno == EEXIST else {
                throw StorageFixError("cannot move \(path) aside: \(String(cString: strerror(errno)))")
            }
        }
        throw StorageFixError("cannot move \(path) aside: \(name).moved-aside.1 to .1000 all exist")
    }

    /// `name` below this directory, which must be a directory on the same
    /// filesystem as `mount` (a mount point there would lead out of the storage).
    func openSubdirectory(_ name: String, path: String, sameFilesystemAs mount: DirectoryHandle) throws(StorageFixError) -> DirectoryHandle {
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else {
            throw StorageFixError("cannot open \(path): \(Self.reason(errno, at: path))")
        }
        let handle = DirectoryHandle(fd: child, path: path)
        let (childInfo, mountInfo) = (try handle.status(), try mount.status())
        guard childInfo.st_dev == mountInfo.st_dev else {
            handle.close()
            throw StorageFixError("\(path) is another filesystem mounted inside the storage; unmount it")
        }
        return handle
    }

    func status() throws(StorageFixError) -> stat {
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw StorageFixError("cannot read the owner and mode of \(path): \(String(cString: strerror(errno)))")
        }
        return info
    }

    func close() {
        _ = Glibc.close(fd)
    }

    /// O_NOFOLLOW together with O_DIRECTORY reports a link as ELOOP or
    /// ENOTDIR, depending on what it points to; lstat tells which it was.
    private static func reason(_ code: Int32, at path: String) -> String {
        var info = stat()
        if code == ELOOP || code == ENOTDIR, lstat(path, &info) == 0 {
            return info.st_mode & S_IFMT == S_IFLNK ? "it is a symbolic link, which is not followed" : "it is \(fileKind(info.st_mode))"
        }
        return String(cString: strerror(code))
    }
}
