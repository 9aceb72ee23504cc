import Glibc
import PersistentStorage

/// How many remounts were done and how many failed since the daemon started,
/// start-up and shutdown included.
public struct RemountCounters: Codable, Sendable, Equatable {
    /// Successful remounts to read-write.
    public var rw: Int
    /// Successful remounts to read-only.
    public var ro: Int
    /// Remounts (either way) that failed.
    public var failed: Int

    public init(rw: Int = 0, ro: Int = 0, failed: Int = 0) {
        self.rw = rw
        self.ro = ro
        self.failed = failed
    }
}

/// The `result` of `GET /state`: the reference's keys (`clients`, `data`) and
/// ours beside them, which the reference's clients ignore: `remounts` and
/// `sessions` always, and `error` (the last remount failure) while it is current.
struct StateReport: Codable, Sendable, Equatable {
    var clients: Int
    var data: StorageStatus.DataStatus
    var remounts: RemountCounters
    var error: String?
    var sessions: [SessionReport]
}

/// Who holds one session: the peer's credentials when it connected.
struct SessionReport: Codable, Sendable, Equatable {
    var id: UInt64
    var pid: Int32
    var uid: UInt32
    /// The user's name, when the system knows it.
    var user: String?
    /// The peer's command name (`/proc/PID/comm`) when it connected.
    var command: String
    /// When the session opened, RFC 3339 in UTC (`2026-11-30T16:10:00Z`).
    var since: String
}

/// Who opened a session, as the server knows it from the socket.
struct SessionPeer: Sendable, Equatable {
    var pid: Int32
    var uid: UInt32
    var command: String

    static let unknown = SessionPeer(pid: 0, uid: 0, command: "?")
}

extension SessionReport {
    /// `seconds` since the epoch as RFC 3339 in UTC.
    static func timestamp(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
    }

    /// The name of user `uid`, or nil.
    static func userName(_ uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 1024)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name else { return nil }
        return String(cString: name)
    }
}
