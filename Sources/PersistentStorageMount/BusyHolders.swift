import Glibc
import SystemSupport

/// A process that keeps a filesystem from going read-only, and why.
public struct BusyHolder: Sendable, Equatable, Codable {
    public enum Reason: String, Sendable, Codable {
        case openForWriting = "open for writing"
        case deletedStillOpen = "deleted, still open"
        case mappedWritable = "mapped writable"
    }

    public var pid: Int32
    /// `/proc/PID/comm`.
    public var command: String
    public var path: String
    public var why: Reason

    public init(pid: Int32, command: String, path: String, why: Reason) {
        self.pid = pid
        self.command = command
        self.path = path
        self.why = why
    }

    /// "pid 1234 (sqlite3) holds /var/lib/kvmd/pst/app/db open for writing"
    public var sentence: String {
        switch why {
        case .openForWriting: "pid \(pid) (\(command)) holds \(path) open for writing"
        case .deletedStillOpen: "pid \(pid) (\(command)) holds \(path) open, which was deleted"
        case .mappedWritable: "pid \(pid) (\(command)) has \(path) mapped writable"
        }
    }
}

/// Finds who holds a filesystem busy, the way the kernel counts it when it
/// refuses a read-only remount (EBUSY): files on it open for writing,
/// deleted files still open, and writable shared mappings, from `/proc`.
///
/// Bounded: at most `maximumProcesses` processes and `maximumEntries` file
/// descriptors and mapping lines in all are looked at, and at most
/// `maximumHolders` found; nothing is read but `/proc` (never the files).
public struct BusyHolders: Sendable {
    public var maximumProcesses = 4096
    public var maximumEntries = 200_000
    public var maximumHolders = 16

    public init() {}

    /// The holders on the filesystem whose device is `device` (st_dev).
    public func scan(device: dev_t) -> [BusyHolder] {
        var holders: [BusyHolder] = []
        var entries = 0
        var processes = 0
        let own = getpid()
        for pid in Self.processIDs() where pid != own {
            processes += 1
            if processes > maximumProcesses || entries > maximumEntries || holders.count >= maximumHolders { break }
            let command = Self.command(of: pid)
            for (fd, target) in Self.descriptors(of: pid, budget: &entries) {
                var info = stat()
                guard stat("/proc/\(pid)/fd/\(fd)", &info) == 0, info.st_dev == device else { continue }
                let deleted = target.hasSuffix(" (deleted)")
                if deleted {
                    holders.append(BusyHolder(pid: pid, command: command, path: String(target.dropLast(" (deleted)".count)), why: .deletedStillOpen))
                } else if Self.isOpenForWriting(pid: pid, fd: fd) {
                    holders.append(BusyHolder(pid: pid, command: command, path: target, why: .openForWriting))
                }
                if holders.count >= maximumHolders { return holders }
            }
            for path in Self.writableSharedMappings(of: pid, device: device, budget: &entries)
            where !holders.contains(where: { $0.pid == pid && $0.path == path }) {
                holders.append(BusyHolder(pid: pid, command: command, path: path, why: .mappedWritable))
                if holders.count >= maximumHolders { return holders }
            }
        }
        return holders
    }

    private static func processIDs() -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    private static func command(of pid: Int32) -> String {
        guard let text = readProcFile("/proc/\(pid)/comm", limit: 64) else { return "?" }
        return String(text.prefix { $0 != "\n" })
    }

    /// (fd, readlink target) for each open descriptor.
    private static func descriptors(of pid: Int32, budget: inout Int) -> [(Int32, String)] {
        guard let directory = opendir("/proc/\(pid)/fd") else { return [] }
        defer { closedir(directory) }
        var result: [(Int32, String)] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let fd = Int32(name) else { continue }
            budget += 1
            var buffer = [CChar](repeating: 0, count: 4097)
            let count = readlink("/proc/\(pid)/fd/\(fd)", &buffer, 4096)
            guard count > 0 else { continue }
            let target = String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            // Pipes, sockets and anonymous inodes are on no filesystem of ours.
            if target.hasPrefix("/") { result.append((fd, target)) }
        }
        return result
    }

    /// `flags:` in `/proc/PID/fdinfo/FD` (octal) opens for writing.
    private static func isOpenForWriting(pid: Int32, fd: Int32) -> Bool {
        guard let text = readProcFile("/proc/\(pid)/fdinfo/\(fd)", limit: 4096),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags:") }),
              let flags = Int32(line.dropFirst("flags:".count).trimmingPrefix { $0 == "\t" || $0 == " " }, radix: 8)
        else { return false }
        return flags & O_ACCMODE != O_RDONLY
    }

    /// Paths mapped shared and writable (`rw?s`) from files on `device`.
    private static func writableSharedMappings(of pid: Int32, device: dev_t, budget: inout Int) -> [String] {
        guard let maps = readProcFile("/proc/\(pid)/maps", limit: 4 << 20) else { return [] }
        let wanted = String(major(device), radix: 16).leftPadded(2) + ":" + String(minor(device), radix: 16).leftPadded(2)
        var paths: [String] = []
        for line in maps.split(separator: "\n") {
            budget += 1
            // address perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count >= 6, fields[1].hasPrefix("rw"), fields[1].hasSuffix("s"), fields[3] == wanted else { continue }
            let path = fields[5].drop { $0 == " " }
            if !paths.contains(String(path)) { paths.append(String(path)) }
        }
        return paths
    }

    private static func major(_ device: dev_t) -> UInt64 {
        let value = UInt64(device)
        return ((value >> 8) & 0xfff) | ((value >> 32) & ~UInt64(0xfff))
    }

    private static func minor(_ device: dev_t) -> UInt64 {
        let value = UInt64(device)
        return (value & 0xff) | ((value >> 12) & ~UInt64(0xff))
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
