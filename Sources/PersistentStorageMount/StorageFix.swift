import Glibc

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
/// follows a symbolic link: the root is opened with `O_NOFOLLOW`, the data
/// directory is reached with `openat` relative to it, and the owner and mode
/// are changed with `fchown`/`fchmod` on those descriptors, after checking
/// what was opened. A link planted where the data directory belongs is
/// removed (the link, never its target) and a real directory made instead.
public struct StorageFix: Sendable {
    public var location: StorageLocation
    public var layout: DataLayout

    public init(location: StorageLocation, layout: DataLayout = .dataSubdirectory) {
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
        let root = try DirectoryHandle(openingRoot: location.rootPath)
        var directories = [root]
        if layout == .dataSubdirectory {
            let name = "data"
            let path = root.path + (root.path.hasSuffix("/") ? "" : "/") + name
            if let repair = try root.makeSubdirectoryIfMissing(name, path: path) { repairs.append(repair) }
            directories.append(try root.openSubdirectory(name, path: path))
        }
        defer { directories.forEach { $0.close() } }

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
}

/// An open directory that was checked to be one, never reached through a link.
private struct DirectoryHandle {
    let fd: Int32
    let path: String

    /// The storage root named by the fstab. Its last component must not be a
    /// link (a client that owns the parent could have planted one); the
    /// components before it are the administrator's.
    init(openingRoot path: String) throws(StorageFixError) {
        let flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        var fd = open(path, flags)
        if fd < 0 && errno == ENOENT {
            // A root below the mount point is made on first use; mkdir(2)
            // does not follow a link in its last component either.
            if mkdir(path, 0o755) != 0 && errno != EEXIST {
                throw StorageFixError("cannot create \(path): \(String(cString: strerror(errno)))")
            }
            fd = open(path, flags)
        }
        guard fd >= 0 else {
            throw StorageFixError("cannot open the storage root \(path): \(Self.reason(errno, at: path))")
        }
        self.fd = fd
        self.path = path
    }

    private init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
    }

    /// Creates `name` as a directory unless one is there. A symbolic link in
    /// its place is removed first (unlinkat never follows it); anything else
    /// that is not a directory is refused rather than deleted, since it may
    /// be a client's data.
    func makeSubdirectoryIfMissing(_ name: String, path: String) throws(StorageFixError) -> String? {
        var info = stat()
        var repair: String?
        if fstatat(fd, name, &info, AT_SYMLINK_NOFOLLOW) == 0 {
            switch info.st_mode & S_IFMT {
            case S_IFDIR:
                return nil
            case S_IFLNK:
                guard unlinkat(fd, name, 0) == 0 else {
                    throw StorageFixError("cannot remove the symbolic link at \(path): \(String(cString: strerror(errno)))")
                }
                repair = "\(path) was a symbolic link; removed it (its target was not touched) and made a directory"
            default:
                throw StorageFixError("\(path) is \(fileKind(info.st_mode)), not a directory; move it away and try again")
            }
        } else if errno != ENOENT {
            throw StorageFixError("cannot look at \(path): \(String(cString: strerror(errno)))")
        }
        if mkdirat(fd, name, 0o755) != 0 && errno != EEXIST {
            throw StorageFixError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        return repair
    }

    func openSubdirectory(_ name: String, path: String) throws(StorageFixError) -> DirectoryHandle {
        let child = openat(fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard child >= 0 else {
            throw StorageFixError("cannot open \(path): \(Self.reason(errno, at: path))")
        }
        return DirectoryHandle(fd: child, path: path)
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
