import Foundation
import Glibc

/// Reads small `/proc` files, which report a size of zero to stat(2).
enum ProcFile {
    static func read(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// What a process (the daemon) uses now, from `/proc/PID`.
struct ProcessUsage: Codable, Equatable {
    /// Resident set size, KiB.
    var rssKiB: Int
    /// Peak resident set size so far, KiB.
    var peakRSSKiB: Int
    var openFileDescriptors: Int
    /// CPU time used so far (user + system), seconds.
    var cpuSeconds: Double

    var rssMiB: Double { Double(rssKiB) / 1024 }

    static func of(_ pid: pid_t) -> ProcessUsage {
        let status = ProcFile.read("/proc/\(pid)/status") ?? ""
        func kibibytes(_ key: String) -> Int {
            guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix(key + ":") }) else { return 0 }
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        }
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").count) ?? 0
        return ProcessUsage(
            rssKiB: kibibytes("VmRSS"), peakRSSKiB: kibibytes("VmHWM"),
            openFileDescriptors: fds, cpuSeconds: cpuTime(of: pid))
    }

    /// Nanosecond CPU time from the scheduler, summed over the threads
    /// (`/proc/PID/stat` counts only in clock ticks, 10 ms).
    private static func cpuTime(of pid: pid_t) -> Double {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
        var nanoseconds: Double = 0
        for task in tasks {
            guard let text = ProcFile.read("/proc/\(pid)/task/\(task)/schedstat"),
                  let first = text.split(separator: " ").first, let value = Double(first) else { continue }
            nanoseconds += value
        }
        // Threads that have exited are no longer listed; their time is in stat's totals.
        if let stat = ProcFile.read("/proc/\(pid)/stat"), let end = stat.lastIndex(of: ")") {
            let fields = stat[stat.index(after: end)...].split(separator: " ")
            // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
            if fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) {
                let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
                return max(nanoseconds / 1e9, (user + system) / ticks)
            }
        }
        return nanoseconds / 1e9
    }
}

/// Raises this process's soft descriptor limit as far as allowed; children
/// (the daemon) inherit it.
func raiseFileDescriptorLimit(to wanted: rlim_t) -> rlim_t {
    var limit = rlimit()
    getrlimit(RLIMIT_NOFILE_RESOURCE, &limit)
    if limit.rlim_max < wanted {
        var raised = rlimit(rlim_cur: wanted, rlim_max: wanted)
        if setrlimit(RLIMIT_NOFILE_RESOURCE, &raised) == 0 { return wanted }
    }
    limit.rlim_cur = min(wanted, limit.rlim_max)
    setrlimit(RLIMIT_NOFILE_RESOURCE, &limit)
    getrlimit(RLIMIT_NOFILE_RESOURCE, &limit)
    return limit.rlim_cur
}

private let RLIMIT_NOFILE_RESOURCE = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
