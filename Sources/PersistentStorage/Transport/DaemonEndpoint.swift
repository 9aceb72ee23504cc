#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemSupport
import Glibc
import NIOCore

/// Where the daemon listens, and how long to wait for it.
///
/// Turns the errno of a failed `connect(2)` (``DaemonConnection/connect(to:wakeUp:)``)
/// into the error a user can act on.
struct DaemonEndpoint: Sendable {
    let socketPath: String
    let timeout: Duration

    func connectError(for error: any Error) -> PersistentStorageError {
        if let ioError = error as? IOError {
            switch ioError.errnoCode {
            case ENOENT, ECONNREFUSED, ENOTDIR:
                // A missing file means the daemon never started; ECONNREFUSED
                // means a stale socket file from a daemon that is gone, or
                // something that is no socket at all.
                if let kind = Self.nonSocketKind(at: socketPath) {
                    return .connectionFailed(socketPath: socketPath, reason: "\(kind) is there, not a socket")
                }
                return .daemonNotRunning(socketPath: socketPath)
            case EACCES, EPERM:
                return .permissionDenied(socketPath: socketPath, socketGroup: Self.socketGroupName(of: socketPath))
            default:
                return .connectionFailed(socketPath: socketPath, reason: ioError.description)
            }
        }
        return .connectionFailed(socketPath: socketPath, reason: "\(error)")
    }

    /// What is at `path` when it exists and is not a socket ("a regular file").
    static func nonSocketKind(at path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK: return nil
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR, S_IFBLK: return "a device"
        default: return "something"
        }
    }

    /// The group owning the socket, to name in a "permission denied" message.
    static func socketGroupName(of socketPath: String) -> String? {
        (try? FileManager.default.attributesOfItem(atPath: socketPath))?[.groupOwnerAccountName] as? String
    }
}
