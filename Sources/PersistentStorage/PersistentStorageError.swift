/// Why a call into ``PersistentStorageClient`` failed, phrased so that the person
/// reading it knows what to do next.
///
/// ```swift
/// do {
///     try await storage.withWritableStorage(subdirectory: "my-service") { directory in ... }
/// } catch let error as PersistentStorageError {
///     logger.error("\(error)")   // e.g. "no PST daemon at /run/kvmd/pst.sock: is kvmd-pst running? ..."
/// }
/// ```
public enum PersistentStorageError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing listens on the socket: the file is missing, or it is a stale
    /// file left behind by a daemon that is gone.
    case daemonNotRunning(socketPath: String)
    /// The socket exists but this user may not connect to it.
    /// `socketGroup` is the group that owns the socket, when it could be read.
    case permissionDenied(socketPath: String, socketGroup: String?)
    /// The daemon answered `403`: this process's user is neither root, nor
    /// the daemon's user, nor a member of the socket's group (the socket's mode
    /// let it connect, but the daemon checks who is at the other end).
    case forbidden(socketPath: String, socketGroup: String?)
    /// The daemon answered `503`: it has as many sessions as it takes
    /// (`--max-sessions`), or it is shutting down. `reason` is its own words.
    case daemonUnavailable(socketPath: String, reason: String?)
    /// Connecting failed for a reason other than the two above.
    case connectionFailed(socketPath: String, reason: String)
    /// The daemon did not make the storage writable. `reason` is the daemon's
    /// own explanation when `GET /state` gave one.
    case writeRefused(reason: String?)
    /// The daemon did not answer in time.
    case timedOut(after: Duration, waitingFor: String)
    /// Write access was taken away while the storage was in use.
    case revoked(RevocationReason)
    /// The daemon said something this client does not understand.
    case protocolViolation(String)
    /// The subdirectory a caller asked for is not a plain relative path.
    case invalidSubdirectory(String, reason: String)
    /// The storage became writable but the (sub)directory could not be created.
    case cannotCreateDirectory(path: String, reason: String)
    /// The data directory the daemon handed out is not a real directory (a
    /// client with write access to its parent replaced it with a link):
    /// nothing is written there.
    case unsafeDataDirectory(path: String, reason: String)
    /// The body ended, but flushing the storage to the disk failed (an I/O
    /// error, or the directory was replaced): what it wrote may be lost if
    /// the power goes before the daemon's read-only remount.
    case notDurable(path: String, reason: String)

    public var description: String {
        switch self {
        case .daemonNotRunning(let socketPath):
            "no PST daemon at \(socketPath): is kvmd-pst running? (systemctl status kvmd-pst)"
        case .permissionDenied(let socketPath, let socketGroup?) where socketGroup != "root":
            "permission denied on \(socketPath): join its group '\(socketGroup)' "
                + "(usermod -aG \(socketGroup) USER, then log in again) or run as root"
        case .permissionDenied(let socketPath, _):
            "permission denied on \(socketPath): run as root, or join the group the daemon's "
                + "socket belongs to (kvmd-pst on a PiKVM)"
        case .forbidden(let socketPath, let socketGroup?) where socketGroup != "root":
            "the PST daemon at \(socketPath) refused this user (403 Forbidden): join the socket's group "
                + "'\(socketGroup)' (usermod -aG \(socketGroup) USER, then log in again) or run as root"
        case .forbidden(let socketPath, _):
            "the PST daemon at \(socketPath) refused this user (403 Forbidden): run as root, or as a member "
                + "of the daemon's socket group (kvmd-pst on a PiKVM, set by kvmd-pst --socket-group)"
        case .daemonUnavailable(let socketPath, let reason):
            "the PST daemon at \(socketPath) cannot take a session now (503 Service Unavailable"
                + (reason.map { ": \($0)" } ?? "")
                + "); it has as many sessions as --max-sessions allows or is shutting down: try again later"
        case .connectionFailed(let socketPath, let reason):
            "cannot connect to the PST daemon at \(socketPath): \(reason)"
        case .writeRefused(let reason):
            "the PST daemon did not make the storage writable"
                + (reason.map { ": \($0)" } ?? " (see its log: journalctl -u kvmd-pst)")
        case .timedOut(let after, let waitingFor):
            "timed out after \(after.formattedSeconds) waiting for \(waitingFor)"
        case .revoked(let reason):
            "write access to the PST was revoked: \(reason)"
        case .protocolViolation(let detail):
            "the PST daemon broke the protocol: \(detail)"
        case .invalidSubdirectory(let subdirectory, let reason):
            "invalid PST subdirectory \"\(subdirectory)\": \(reason)"
        case .unsafeDataDirectory(let path, let reason):
            "the PST data directory \(path) \(reason); not writing there (someone who may write its parent replaced it; the daemon repairs it at its next read-write remount)"
        case .cannotCreateDirectory(let path, let reason):
            "cannot create \(path) on the PST: \(reason)"
        case .notDurable(let path, let reason):
            "what was written under \(path) may not be on the disk: \(reason)"
        }
    }
}

/// Why a session lost its write access.
public enum RevocationReason: Sendable, Equatable, CustomStringConvertible {
    /// The daemon reported `write_allowed: false` (an external read-only
    /// remount, or the daemon shutting down).
    case writeNoLongerAllowed
    /// The connection to the daemon closed (the daemon died or dropped us).
    case connectionClosed
    /// The daemon sent something that broke the protocol, so the session was ended.
    case protocolViolation(String)

    public var description: String {
        switch self {
        case .writeNoLongerAllowed: "the daemon reports the storage is no longer writable"
        case .connectionClosed: "the connection to the daemon closed"
        case .protocolViolation(let detail): "protocol violation: \(detail)"
        }
    }
}

extension Duration {
    /// "5 s", "0.25 s": how a timeout reads in a message.
    var formattedSeconds: String {
        let (seconds, attoseconds) = components
        let value = Double(seconds) + Double(attoseconds) / 1e18
        return value == value.rounded() ? "\(Int(value)) s" : "\(value) s"
    }
}

extension PersistentStorageError {
    /// The error for an HTTP status the daemon refuses with, for `GET /ws`
    /// and `GET /state` alike: 403 and 503 are the daemon's deliberate
    /// answers, with their own errors; anything else it should not send.
    ///
    /// - Parameter reason: the daemon's words: the status line's reason, or
    ///   the `error_msg` of its JSON envelope.
    static func refusal(statusCode: Int, reason: String, socketPath: String, request: String) -> PersistentStorageError {
        switch statusCode {
        case 403:
            .forbidden(socketPath: socketPath, socketGroup: DaemonEndpoint.socketGroupName(of: socketPath))
        case 503:
            .daemonUnavailable(socketPath: socketPath, reason: reason.isEmpty ? nil : reason)
        default:
            .protocolViolation("the daemon answered \(request) with \(statusCode) \(reason)")
        }
    }
}
