import Glibc
import PersistentStorageMount
import PersistentStorageProtocol

/// Who opened a session, as the server knows it from the socket.
struct SessionPeer: Sendable, Equatable {
    var pid: Int32
    var uid: UInt32
    var command: String

    static let unknown = SessionPeer(pid: 0, uid: 0, command: "?")

    /// `GET /state`'s entry for the session `id` this peer opened at `openedAt`
    /// (seconds since the epoch); `user` is ``userName(_:)`` of its uid.
    func report(id: UInt64, openedAt: Int, user: String?) -> DaemonState.Session {
        DaemonState.Session(id: id, pid: pid, uid: uid, user: user, command: command, since: Self.timestamp(openedAt))
    }

    /// `seconds` since the epoch as RFC 3339 in UTC (`2026-11-30T16:10:00Z`).
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

extension DaemonState.BusyHolder {
    init(_ holder: BusyHolder) {
        self.init(pid: holder.pid, command: holder.command, path: holder.path, why: holder.why.rawValue)
    }
}
