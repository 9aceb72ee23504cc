import Glibc
import KvmdLogging
import PersistentStorageMount
import PersistentStorageProtocol

/// What `kvmd-pst status` tells a person: the mount state from the kernel,
/// and what the daemon reports (sessions, remounts, the last error, who
/// holds the storage busy, with what to do about it), or that no daemon
/// answers and whether the storage is then writable without one.
public struct StatusReport: Sendable {
    public var mountPath: String
    public var mountState: MountState
    public var socketPath: String
    /// Nil when no daemon answered.
    public var daemon: DaemonState?
    /// Why no daemon answered.
    public var daemonError: String?
    /// Something listens on the socket but gave no usable answer (timed out,
    /// refused this user, an answer too large): a daemon runs, and may have
    /// sessions, so nobody should remount by hand.
    public var daemonIsThere: Bool
    /// Seconds since the epoch, for "open for 12 s".
    public var now: Int

    public init(
        mountPath: String, mountState: MountState, socketPath: String, daemon: DaemonState?, daemonError: String?,
        daemonIsThere: Bool = false, now: Int
    ) {
        self.mountPath = mountPath
        self.mountState = mountState
        self.socketPath = socketPath
        self.daemon = daemon
        self.daemonError = daemonError
        self.daemonIsThere = daemon != nil || daemonIsThere
        self.now = now
    }

    /// 0: a daemon answers and the storage is as it should be; 1: a daemon
    /// answers but the storage is writable without a session (busy), or no
    /// use to clients (not mounted, covered, filesystem errors); 3: no daemon
    /// answers (like `systemctl status` for a unit not running).
    public var exitStatus: Int32 {
        guard let daemon else { return 3 }
        if mountState.filesystemIsWritable && daemon.clients == 0 { return 1 }
        if mountState == .notMounted || mountState == .otherFilesystem || mountState == .readOnlyAfterErrors { return 1 }
        return 0
    }

    /// For a terminal: every text that came from elsewhere (a peer's command
    /// name, a file name, the daemon's words) has its control characters
    /// escaped, so none of it can move the cursor or start a line.
    public var text: String {
        var lines = ["storage: \(mountPath.escapingControlCharacters): \(mountState) (from the kernel)"]
        guard let daemon else {
            let reason = (daemonError ?? "unknown").escapingControlCharacters
            guard !daemonIsThere else {
                lines.append("daemon: not answering on \(socketPath.escapingControlCharacters): \(reason)")
                lines.append("  a daemon listens there and may have sessions: do not remount by hand; see systemctl status kvmd-pst and its log")
                return lines.joined(separator: "\n") + "\n"
            }
            lines.append("daemon: not running: no answer on \(socketPath.escapingControlCharacters) (\(reason))")
            if mountState.filesystemIsWritable {
                lines.append("warning: the storage is writable and no daemon is there to make it read-only again:")
                lines.append("  start kvmd-pst (systemctl start kvmd-pst), or run: mount -o remount,ro \(mountPath.escapingControlCharacters)")
            }
            return lines.joined(separator: "\n") + "\n"
        }
        lines.append("daemon: running on \(socketPath.escapingControlCharacters); clients get \(daemon.data.path.escapingControlCharacters) (writable: \(daemon.data.writeAllowed ? "yes" : "no"))")
        let sessions = daemon.sessions ?? []
        lines.append("sessions: \(daemon.clients)")
        for session in sessions {
            let who = session.user?.escapingControlCharacters ?? "uid \(session.uid)"
            lines.append("  #\(session.id): pid \(session.pid) (\(session.command.escapingControlCharacters)), user \(who), open for \(Self.age(since: session.since, now: now))")
        }
        if let remounts = daemon.remounts {
            lines.append("remounts: \(remounts.rw) read-write, \(remounts.ro) read-only, \(remounts.failed) failed")
        }
        if let error = daemon.error { lines.append("last error: \(error.escapingControlCharacters)") }
        if let busy = daemon.busy, !busy.isEmpty {
            lines.append("busy: the kernel refused to make it read-only because of:")
            for holder in busy {
                lines.append("  pid \(holder.pid) (\(holder.command.escapingControlCharacters)): \(holder.path.escapingControlCharacters), \(holder.why.escapingControlCharacters)")
            }
            lines.append("  the daemon retries by itself; stop or fix these processes (kill PID), then it goes read-only")
        } else if mountState.filesystemIsWritable && daemon.clients == 0 {
            lines.append("warning: the storage is writable with no session; the daemon should make it read-only again within seconds")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// "12 s", "3 min", "2 h": how long ago `since` (RFC 3339, UTC) was.
    static func age(since: String, now: Int) -> String {
        // The daemon's own format (`SessionPeer.timestamp`): six numbers.
        let numbers = since.split(whereSeparator: { "-T:Z".contains($0) }).compactMap { Int32($0) }
        guard numbers.count == 6 else { return since }
        var parts = tm()
        parts.tm_year = numbers[0] - 1900
        parts.tm_mon = numbers[1] - 1
        parts.tm_mday = numbers[2]
        parts.tm_hour = numbers[3]
        parts.tm_min = numbers[4]
        parts.tm_sec = numbers[5]
        let seconds = max(0, now - Int(timegm(&parts)))
        if seconds < 120 { return "\(seconds) s" }
        if seconds < 7200 { return "\(seconds / 60) min" }
        return "\(seconds / 3600) h"
    }
}
