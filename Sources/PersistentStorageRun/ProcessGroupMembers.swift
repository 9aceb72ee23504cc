import Glibc

/// The processes of a process group that are still alive, read from /proc.
///
/// The kernel answers "is anyone left in group G?" only with `kill(-G, 0)`,
/// which counts a zombie: the script's leader stays one until it is reaped
/// (on purpose, so that its group id cannot be reused meanwhile), so that
/// answer is always yes. /proc tells the living from the dead.
enum ProcessGroupMembers {
    /// The pids in `group` that have not exited, other than `excluded`.
    static func living(in group: pid_t, except excluded: pid_t) -> [pid_t] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var members: [pid_t] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let pid = pid_t(name), pid != excluded else { continue }
            if let status = status(of: pid), status.group == group, status.state != "Z", status.state != "X" {
                members.append(pid)
            }
        }
        return members
    }

    /// The state letter and process group of `pid`, from /proc/PID/stat, or
    /// nil if it is gone.
    private static func status(of pid: pid_t) -> (state: Character, group: pid_t)? {
        let descriptor = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = read(descriptor, &buffer, buffer.count)
        guard count > 0 else { return nil }
        // "PID (COMM) STATE PPID PGRP ...": COMM may hold spaces and
        // parentheses, so the fields are counted from its last ')'.
        guard let close = buffer[..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = String(decoding: buffer[(close + 1)..<count], as: UTF8.self).split(separator: " ")
        guard fields.count >= 3, let state = fields[0].first, let group = pid_t(fields[2]) else { return nil }
        return (state, group)
    }
}
