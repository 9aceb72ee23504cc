import Glibc
import PersistentStorageProtocol
import PersistentStorageMount
import SystemSupport

/// Why the listening socket could not be put in place.
public struct SocketSetupError: Error, Equatable, CustomStringConvertible {
    public var path: String
    public var step: String
    public var errno: Int32

    public var description: String {
        "cannot set up the socket \(path): \(step): \(String(cString: strerror(errno)))"
    }
}

/// Puts a listening Unix socket at its final path only once its mode and
/// group are right, so no client can ever connect through looser permissions.
///
/// The socket is bound inside a fresh private directory (mode 0700) next to
/// the final path, given its mode and group there, and then renamed over the
/// final path. rename(2) replaces a stale socket file atomically and never
/// follows a symlink at the destination, so a link planted at the socket path
/// cannot redirect the chmod/chown or the unlink at exit.
struct ListeningSocketFile {
    let path: String
    let mode: mode_t
    let groupID: gid_t?

    /// Where to bind: a path inside a private staging directory.
    struct Staging {
        let directory: String
        let socketPath: String
    }

    /// The identity of the file we published, so shutdown removes only ours.
    struct Published: Sendable {
        let path: String
        let device: UInt64
        let inode: UInt64
    }

    /// Only nothing or a socket may be at the path: a stale socket is
    /// replaced, but a file, directory, link or anything else there is some
    /// administrator's mistake whose contents must not be lost.
    static func checkReplaceable(_ path: String) throws(DaemonInstanceError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw DaemonInstanceError("cannot use the socket path \(path): \(String(cString: strerror(errno)))")
        }
        guard info.st_mode & S_IFMT == S_IFSOCK else {
            throw DaemonInstanceError("cannot use the socket path \(path): \(fileKind(info.st_mode)) is there, not a socket; remove it or choose another --socket")
        }
    }

    /// Whether a live server accepts connections at `path` (a stale socket refuses them).
    static func isServed(_ path: String) -> Bool {
        guard let address = UnixSocketAddress(path: path) else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let result = address.withSocketAddress { connect(fd, $0, $1) }
        // EAGAIN: a listener whose backlog is full, which is still a live one.
        return result == 0 || errno == EAGAIN || errno == EINPROGRESS
    }

    func makeStaging() throws(SocketSetupError) -> Staging {
        let parent = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let name = path.split(separator: "/").last.map(String.init) ?? path
        var template = Array("\(parent.isEmpty ? "/" : parent)/.\(name).XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            throw SocketSetupError(path: path, step: "creating a private directory beside it", errno: errno)
        }
        let directory = String(cString: made)
        return Staging(directory: directory, socketPath: directory + "/s")
    }

    /// Sets mode and group on the bound socket and renames it into place.
    func publish(_ staging: Staging) throws(SocketSetupError) -> Published {
        defer { discard(staging) }
        guard chmod(staging.socketPath, mode) == 0 else {
            throw SocketSetupError(path: path, step: "chmod \(String(mode, radix: 8))", errno: errno)
        }
        if let groupID, chown(staging.socketPath, uid_t.max, groupID) != 0 {
            throw SocketSetupError(path: path, step: "chgrp \(groupID)", errno: errno)
        }
        guard rename(staging.socketPath, path) == 0 else {
            throw SocketSetupError(path: path, step: "moving it into place", errno: errno)
        }
        var info = stat()
        guard lstat(path, &info) == 0 else {
            throw SocketSetupError(path: path, step: "lstat", errno: errno)
        }
        return Published(path: path, device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    /// Removes the staging directory and whatever is left in it.
    func discard(_ staging: Staging) {
        unlink(staging.socketPath)
        rmdir(staging.directory)
    }

    /// Removes the socket file at exit, unless someone replaced it since
    /// (another daemon instance now owns the path).
    static func remove(_ published: Published) {
        var info = stat()
        guard lstat(published.path, &info) == 0,
              UInt64(info.st_dev) == published.device, UInt64(info.st_ino) == published.inode else { return }
        unlink(published.path)
    }
}
