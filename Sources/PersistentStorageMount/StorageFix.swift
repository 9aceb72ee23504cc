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
public struct StorageFix: Sendable {
    public var location: StorageLocation
    public var layout: DataLayout

    public init(location: StorageLocation, layout: DataLayout = .dataSubdirectory) {
        self.location = location
        self.layout = layout
    }

    /// Idempotent: running it twice changes nothing the second time.
    public func apply() throws(StorageFixError) {
        let root = location.rootPath
        let data = location.dataPath(for: layout)
        let uid = try location.user.map { name throws(StorageFixError) -> uid_t in
            guard let entry = getpwnam(name) else { throw StorageFixError("unknown user '\(name)' in X-kvmd.pst-user") }
            return entry.pointee.pw_uid
        }
        let gid = try location.group.map { name throws(StorageFixError) -> gid_t in
            guard let entry = getgrnam(name) else { throw StorageFixError("unknown group '\(name)' in X-kvmd.pst-group") }
            return entry.pointee.gr_gid
        }
        for directory in Set([root, data]).sorted() {
            if mkdir(directory, 0o755) != 0 && errno != EEXIST {
                throw StorageFixError("cannot create \(directory): \(String(cString: strerror(errno)))")
            }
        }
        // Each change is made only where it is missing: chown(2) and chmod(2)
        // dirty the inode even when nothing changes (its ctime), and a dirty
        // inode is a journal commit to the SD card before every read-only
        // remount, one per session.
        if uid != nil || gid != nil {
            for path in Set([root, data]).sorted() {
                let current = try Self.status(of: path)
                guard current.st_uid != (uid ?? current.st_uid) || current.st_gid != (gid ?? current.st_gid) else { continue }
                // -1 leaves that id unchanged, as chown(2) documents.
                if chown(path, uid ?? uid_t.max, gid ?? gid_t.max) != 0 {
                    throw StorageFixError("cannot change the owner of \(path): \(String(cString: strerror(errno)))")
                }
            }
        }
        if uid != nil && gid != nil, try Self.status(of: root).st_mode & 0o7777 != 0o1775 {
            if chmod(root, 0o1775) != 0 {
                throw StorageFixError("cannot chmod \(root) to 1775: \(String(cString: strerror(errno)))")
            }
        }
    }

    private static func status(of path: String) throws(StorageFixError) -> stat {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw StorageFixError("cannot read the owner and mode of \(path): \(String(cString: strerror(errno)))")
        }
        return info
    }
}
