import Glibc
import PersistentStorageProtocol
import PersistentStorageMount
import SystemSupport

/// Why this daemon may not serve on its socket path.
public struct DaemonInstanceError: Error, Equatable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}

/// Makes sure one daemon at a time serves a socket path, before anything
/// touches the mount: a second instance would otherwise rename its socket
/// over the live one and remount the storage under the first one's sessions.
///
/// Two checks, because two kinds of rival exist. Instances of this daemon
/// hold an exclusive `flock(2)` on `SOCKET.lock` for as long as they run (the
/// kernel drops it when the process dies, so a crash leaves no stale lock;
/// the file itself stays, since removing a lock file races with the next
/// instance opening it). Any other daemon on the path (kvmd's own, say) is
/// found by connecting to the socket: a stale socket refuses the connection,
/// a live one accepts it.
public final class DaemonInstanceLock {
    private var fd: Int32
    /// The abstract socket that stands for the storage while this daemon manages it.
    private var storageClaim: Int32 = -1
    public let path: String

    /// Claims `socketPath` for this process or throws saying who has it.
    public init(socketPath: String) throws(DaemonInstanceError) {
        try ListeningSocketFile.checkReplaceable(socketPath)
        let lockPath = socketPath + ".lock"
        // Read-only, since flock needs no more: whatever file is found there
        // is never written. O_NOFOLLOW: a link planted at the lock path is
        // not followed; O_NONBLOCK: a FIFO planted there does not hang us.
        let fd = open(lockPath, O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT {
                let directory = socketPath.lastIndex(of: "/").map { String(socketPath[..<$0]) } ?? "."
                throw DaemonInstanceError("cannot use the socket path \(socketPath): its directory \(directory.isEmpty ? "/" : directory) does not exist")
            }
            let reason = code == ELOOP ? "it is a symbolic link" : String(cString: strerror(code))
            throw DaemonInstanceError("cannot open the lock file \(lockPath): \(reason)")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw DaemonInstanceError("cannot use the lock file \(lockPath): \(fileKind(info.st_mode)) is in its place")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK {
                throw DaemonInstanceError("another kvmd-pst is already running on \(socketPath) (it holds \(lockPath)); not starting a second one")
            }
            throw DaemonInstanceError("cannot lock \(lockPath): \(String(cString: strerror(code)))")
        }
        if ListeningSocketFile.isServed(socketPath) {
            close(fd)
            throw DaemonInstanceError("another daemon is already serving on \(socketPath); not starting a second one")
        }
        self.fd = fd
        path = lockPath
    }

    /// Claims the storage mounted at `mountPath`, so that a daemon on
    /// another socket cannot manage it at the same time. The claim is a
    /// name in the abstract socket namespace: it needs no writable
    /// directory (the daemon may run unprivileged), no file can be planted
    /// in its place, and the kernel frees it when the process dies.
    public func claimStorage(mountPath: String) throws(DaemonInstanceError) {
        let name = Self.storageClaimName(mountPath)
        guard let address = UnixSocketAddress(path: name, abstract: true) else {
            throw DaemonInstanceError("cannot claim the storage at \(mountPath): the name \(name) does not fit")
        }
        let claim = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard claim >= 0 else {
            throw DaemonInstanceError("cannot claim the storage at \(mountPath): \(String(cString: strerror(errno)))")
        }
        guard address.withSocketAddress({ bind(claim, $0, $1) }) == 0 else {
            let code = errno
            close(claim)
            if code == EADDRINUSE {
                throw DaemonInstanceError("another kvmd-pst already manages the storage at \(mountPath) (on another socket); not starting a second one")
            }
            throw DaemonInstanceError("cannot claim the storage at \(mountPath): \(String(cString: strerror(code)))")
        }
        storageClaim = claim
    }

    /// `@kvmd-pst-storage:PATH`, or a hash of a path too long for a socket name.
    static func storageClaimName(_ mountPath: String) -> String {
        let name = "@kvmd-pst-storage:" + mountPath
        guard name.utf8.count > 100 else { return name }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in mountPath.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        return "@kvmd-pst-storage:#" + String(hash, radix: 16)
    }

    /// Lets the next instance start. Safe to call more than once.
    public func release() {
        if storageClaim >= 0 {
            close(storageClaim)
            storageClaim = -1
        }
        guard fd >= 0 else { return }
        close(fd)
        fd = -1
    }

    deinit { release() }
}
