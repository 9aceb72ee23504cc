import Foundation
import Glibc

/// What the figures were measured on.
struct Machine: Codable {
    var cpuModel: String
    var cores: Int
    var kernel: String
    var memoryGiB: Double
    /// `/proc/loadavg`'s 1, 5 and 15 minute averages when the run started.
    var loadAverage: [Double]
    var swiftBuild: String

    static func current(buildConfiguration: String) -> Machine {
        let cpuinfo = ProcFile.read("/proc/cpuinfo") ?? ""
        let model = cpuinfo.split(separator: "\n").lazy
            .compactMap { line -> String? in
                let parts = line.split(separator: ":", maxSplits: 1)
                guard parts.count == 2 else { return nil }
                let key = parts[0].trimmingCharacters(in: .whitespaces)
                // x86 says "model name"; many ARM kernels (a Raspberry Pi) say "Model" or "Hardware".
                guard ["model name", "Model", "Hardware"].contains(key) else { return nil }
                return parts[1].trimmingCharacters(in: .whitespaces)
            }.first ?? "unknown"
        var names = utsname()
        uname(&names)
        let release = withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let machine = withUnsafeBytes(of: names.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let load = (ProcFile.read("/proc/loadavg") ?? "").split(separator: " ").prefix(3).compactMap { Double($0) }
        return Machine(
            cpuModel: model,
            cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))),
            kernel: "Linux \(release) \(machine)",
            memoryGiB: (Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30) * 10).rounded() / 10,
            loadAverage: load,
            swiftBuild: buildConfiguration)
    }

    static var loadNow: String {
        (ProcFile.read("/proc/loadavg") ?? "").split(separator: " ").prefix(3).joined(separator: " ")
    }
}
