import Glibc
import PersistentStorageMount
import PersistentStorageProtocol

/// Everything the daemon can be told, with the reference's defaults.
///
/// ```swift
/// var configuration = DaemonConfiguration()
/// configuration.socketPath = "/run/kvmd/pst.sock"
/// configuration.remountCommand = ["sudo", "--non-interactive", "kvmd-helper-pst-remount", "{mode}"]
/// try configuration.validate()
/// ```
public struct DaemonConfiguration: Sendable, Equatable {
    public static let defaultSocketPath = defaultDaemonSocketPath
    /// kvmd's default `pst.remount_cmd`, used when none is configured and the
    /// daemon may not remount in-process (not root, no CAP_SYS_ADMIN).
    public static let kvmdDefaultRemountCommand = ["/usr/bin/sudo", "--non-interactive", "/usr/bin/kvmd-helper-pst-remount", "{mode}"]
    /// The group a PiKVM gives the socket, used when it exists.
    public static let conventionalSocketGroup = "kvmd-pst"

    /// `pst.server.unix`
    public var socketPath: String = defaultSocketPath
    /// `pst.server.unix_mode`
    public var socketMode: mode_t = 0o660
    /// The socket's group; its members may use the daemon. Nil keeps the
    /// daemon's own group.
    public var socketGroup: String? = nil
    /// `pst.server.heartbeat`: how often sessions are pinged; zero turns it off.
    public var heartbeat: Duration = .seconds(15)
    /// `pst.ro_retries_delay`: the pause between attempts to go read-only.
    public var readOnlyRetryDelay: Duration = .seconds(10)
    /// `pst.ro_cleanup_delay`: how long clients get to stop writing at shutdown.
    public var readOnlyCleanupDelay: Duration = .seconds(3)
    /// How long shutdown keeps trying to make a busy storage read-only
    /// before it gives up, says so and exits non-zero (`--stop-timeout`).
    public var stopTimeout: Duration = .seconds(10)
    /// `pst.remount_cmd`: remount by running this (with `{mode}` replaced)
    /// instead of in-process.
    public var remountCommand: [String]? = nil
    public var fstabPath: String = FstabReader.defaultPath
    public var dataLayout: DataLayout = .kvmdDefault
    public var maxSessions: Int = 100
    /// The most connections open at once that are not sessions (a request in
    /// progress, or nothing sent yet); past it the oldest is closed. Also
    /// kept below what the open-file limit leaves (`--max-connections`).
    public var maxConnections: Int = 1000
    /// The largest WebSocket message accepted; larger ones end the session.
    public var maxFrameSize: Int = 64 * 1024
    /// The largest request head (all header lines) accepted.
    public var maxRequestHeaderSize: Int = 16 * 1024
    /// A connection that has not sent a whole HTTP request this long after it
    /// was accepted (idle, or dripping bytes) is closed (`--http-timeout`).
    public var httpIdleTimeout: Duration = .seconds(30)
    /// How often the storage's writability is checked besides mount-table
    /// events (see ``MountTableWatcher`` for why both).
    public var mountRecheckInterval: Duration = .seconds(1)

    public init() {}

    /// ``conventionalSocketGroup`` when that group exists here, else nil.
    public static var defaultSocketGroup: String? {
        GroupMembers.id(named: conventionalSocketGroup) != nil ? conventionalSocketGroup : nil
    }

    /// Rejects values the daemon cannot work with, with one line saying which.
    public func validate() throws(DaemonConfigurationError) {
        func check(_ condition: Bool, _ message: @autoclosure () -> String) throws(DaemonConfigurationError) {
            if !condition { throw DaemonConfigurationError(message()) }
        }
        // A NUL would cut the path short in every system call (the lock
        // file then landed on the socket path itself).
        for (name, path) in [("socket path", socketPath), ("fstab path", fstabPath)] {
            try check(!path.utf8.contains(0), "the \(name) contains a NUL byte")
        }
        try check(socketPath.hasPrefix("/"), "the socket path '\(socketPath)' is not absolute")
        // sun_path holds 108 bytes; the socket is first bound under a staging
        // directory beside the final path, which adds 10.
        try check(socketPath.utf8.count <= 96, "the socket path '\(socketPath)' is too long for a Unix socket (96 bytes at most)")
        try check(socketMode <= 0o777, "the socket mode \(String(socketMode, radix: 8)) is not a file mode (0 to 777, octal)")
        if let socketGroup {
            try check(GroupMembers.id(named: socketGroup) != nil, "the socket group '\(socketGroup)' does not exist")
        }
        // The same ranges as the command line and the file, for values set in code.
        try SettingRange.heartbeat.check(heartbeat, name: "the heartbeat")
        try SettingRange.readOnlyRetryDelay.check(readOnlyRetryDelay, name: "the read-only retry delay")
        try SettingRange.readOnlyCleanupDelay.check(readOnlyCleanupDelay, name: "the read-only cleanup delay")
        try SettingRange.stopTimeout.check(stopTimeout, name: "the stop timeout")
        if let remountCommand, let problem = Self.problem(withRemountCommand: remountCommand) {
            throw DaemonConfigurationError(problem)
        }
        try check(fstabPath.hasPrefix("/"), "the fstab path '\(fstabPath)' is not absolute")
        _ = try SettingRange.maxSessions.check(Double(maxSessions), name: "the maximum number of sessions")
        _ = try SettingRange.maxConnections.check(Double(maxConnections), name: "the maximum number of connections besides sessions")
        try check(maxFrameSize >= 1024, "the maximum frame size must be at least 1024 bytes")
        try check(maxRequestHeaderSize >= 1024, "the maximum request header size must be at least 1024 bytes")
        try SettingRange.httpTimeout.check(httpIdleTimeout, name: "the HTTP idle timeout")
        try check(mountRecheckInterval >= .milliseconds(10), "the mount re-check interval must be at least 10 ms")
    }

    /// The group id for ``socketGroup`` (nil: leave the socket's group alone).
    var socketGroupID: gid_t? {
        socketGroup.flatMap { GroupMembers.id(named: $0) }
    }
}

/// A configuration value the daemon cannot use.
public struct DaemonConfigurationError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension DaemonConfiguration {
    /// What is wrong with `command` as a remount command, or nil: the one
    /// check for the command line, the YAML files and values set in code.
    /// kvmd's rule: an absolute first word; a command without `{mode}` (a
    /// no-op such as /bin/true, which kvmd's maintainers suggest) is accepted.
    static func problem(withRemountCommand command: [String]) -> String? {
        guard let first = command.first, !first.isEmpty else { return "the remount command is empty" }
        if command.contains(where: { $0.utf8.contains(0) }) { return "the remount command contains a NUL byte" }
        guard first.hasPrefix("/") else {
            return "the remount command's first word '\(SettingRange.shortened(first))' is not an absolute path"
        }
        return nil
    }
}
