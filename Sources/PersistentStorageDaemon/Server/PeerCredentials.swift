import CSystemShims
import Glibc
import NIOCore
import SystemSupport

/// Who is at the other end of a Unix socket, as the kernel recorded it when
/// the peer connected (`SO_PEERCRED`): it cannot be forged by the peer.
struct PeerCredentials: Sendable, CustomStringConvertible {
    var pid: pid_t
    var uid: uid_t
    var gid: gid_t
    /// The peer's command name from `/proc/PID/comm`, read at connect time
    /// (the process may be gone by the time its session is logged as closed).
    var command: String
    /// The peer's supplementary groups, from `/proc/PID/status` at connect
    /// time. A service given the socket's group only at run time (systemd's
    /// `SupplementaryGroups=`) is a member without being listed in
    /// /etc/group; the socket's mode lets it in, so must we.
    var supplementaryGroups: [gid_t]

    init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        // A command name is at most 15 bytes (TASK_COMM_LEN).
        command = readProcFile("/proc/\(pid)/comm", limit: 64)?.trimmingWhitespace() ?? "?"
        // Root may always connect (``PeerAuthorization``), so its groups are
        // never asked for; reading and parsing the status file was a large
        // part of the daemon's cost per connection.
        supplementaryGroups = uid == 0 ? [] : readProcFile("/proc/\(pid)/status").map(Self.groups(inStatus:)) ?? []
    }

    init(pid: pid_t, uid: uid_t, gid: gid_t, command: String, supplementaryGroups: [gid_t]) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
        self.command = command
        self.supplementaryGroups = supplementaryGroups
    }

    /// The ids on the `Groups:` line of a `/proc/PID/status` text.
    ///
    /// Scanned as bytes: splitting the whole text into `Character` lines
    /// showed up in profiles of the daemon's accept path.
    static func groups(inStatus status: String) -> [gid_t] {
        let prefix = Array("Groups:".utf8)
        guard let line = status.utf8.split(separator: UInt8(ascii: "\n")).first(where: { $0.starts(with: prefix) })
        else { return [] }
        return line.dropFirst(prefix.count)
            .split(whereSeparator: { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\t") })
            .compactMap { gid_t(Substring($0)) }
    }

    var description: String { "pid=\(pid) uid=\(uid) comm=\(command)" }

    /// Reads the credentials of a connected Unix socket channel.
    static func of(_ channel: any Channel) -> EventLoopFuture<PeerCredentials> {
        guard let provider = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(PeerCredentialsUnavailable())
        }
        // Must stay outside public/inlinable code: see the note in NIOCore's
        // SocketOptionProvider about libc struct types across modules.
        let credentials: EventLoopFuture<pst_peer_credentials> = provider.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED))
        return credentials.map { PeerCredentials(pid: $0.pid, uid: $0.uid, gid: $0.gid) }
    }
}

struct PeerCredentialsUnavailable: Error, CustomStringConvertible {
    var description: String { "the connection is not a Unix socket; its peer cannot be identified" }
}
