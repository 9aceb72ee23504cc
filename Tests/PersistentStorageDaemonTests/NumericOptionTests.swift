import Foundation
import Glibc
import PersistentStorageDaemon
import PersistentStorageTestSupport
import Testing

/// Every numeric setting of kvmd-pst, on the command line and in the YAML
/// file, is checked against its range before anything starts: a usage error
/// (exit 2) that names the option and what it may be, never a crash, and
/// never a tiny value silently rounded to "off".
@Suite("kvmd-pst's numeric options are checked against their ranges")
struct NumericOptionTests {
    /// Runs the built kvmd-pst with `arguments` and a socket path that must
    /// stay unused: a refused value stops it before it binds.
    private static func refused(_ arguments: [String]) throws -> SystemCommand.Result {
        let directory = FileManager.default.temporaryDirectory.appending(path: "numeric-\(UUID().uuidString)").path(percentEncoded: false)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let result = try SystemCommand.execute(
            [BuiltProducts.path(of: "kvmd-pst"), "--socket", directory + "/pst.sock", "--fstab", directory + "/no-fstab"] + arguments)
        #expect(access(directory + "/pst.sock", F_OK) != 0, "it started listening with \(arguments)")
        return result
    }

    @Test("an out-of-range value on the command line is exit 2 with the option and its range", arguments: [
        ("--heartbeat", "0.0001", "0 (off) or 0.1 to 3600 seconds"),
        ("--heartbeat", "-1", "0 (off) or 0.1 to 3600 seconds"),
        ("--heartbeat", "1e300", "0 (off) or 0.1 to 3600 seconds"),
        ("--ro-retries-delay", "1e18", "0.1 to 3600 seconds"),
        ("--ro-retries-delay", "0", "0.1 to 3600 seconds"),
        ("--ro-cleanup-delay", "-1", "0 to 600 seconds"),
        ("--ro-cleanup-delay", "1e300", "0 to 600 seconds"),
        ("--http-timeout", "1e300", "0.1 to 3600 seconds"),
        ("--http-timeout", "0.00001", "0.1 to 3600 seconds"),
        ("--max-sessions", "1e9", "1 to 100000"),
        ("--max-sessions", "-1", "1 to 100000"),
        ("--max-sessions", "2.5", "1 to 100000"),
        // Attack round of issue 14: these read as 0 (off, no wait).
        ("--heartbeat", "1e-400", "0 (off) or 0.1 to 3600 seconds"),
        ("--heartbeat", "-1e-400", "0 (off) or 0.1 to 3600 seconds"),
        ("--ro-cleanup-delay", "1e-400", "0 to 600 seconds"),
        ("--ro-cleanup-delay", "0.0001", "0 to 600 seconds"),
    ])
    func commandLine(option: String, value: String, range: String) throws {
        let result = try Self.refused([option, value])
        #expect(result.status == 2, "\(option) \(value): \(result.standardError)")
        #expect(result.standardError.contains(option), "\(result.standardError)")
        #expect(result.standardError.contains(range), "\(result.standardError)")
        #expect(!result.standardError.contains("Missing value"), "\(result.standardError)")
    }

    @Test("a socket mode that is not 0 to 0777 octal is exit 2", arguments: ["-1", "1777", "888", "0o10000"])
    func socketMode(value: String) throws {
        let result = try Self.refused(["--socket-mode", value])
        #expect(result.status == 2, "\(value): \(result.standardError)")
        #expect(result.standardError.contains("--socket-mode"), "\(result.standardError)")
    }

    @Test("the same keys in the --config file are checked against the same ranges", arguments: [
        ("server: {heartbeat: 0.0001}", "pst.server.heartbeat"), ("server: {heartbeat: 1e300}", "pst.server.heartbeat"),
        ("ro_retries_delay: 1e18", "pst.ro_retries_delay"), ("ro_cleanup_delay: -1", "pst.ro_cleanup_delay"),
        ("server: {unix_mode: 0o7777}", "unix_mode"),
        ("server: {heartbeat: 1e-400}", "pst.server.heartbeat"), ("ro_cleanup_delay: 1e-400", "pst.ro_cleanup_delay"),
    ])
    func configFile(line: String, key: String) throws {
        #expect { try configuration(fromYAML: "pst:\n    \(line)\n") } throws: { error in
            "\(error)".contains(key)
        }
        let file = FileManager.default.temporaryDirectory.appending(path: "numeric-\(UUID().uuidString).yaml").path(percentEncoded: false)
        try "pst:\n    \(line)\n".write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let result = try Self.refused(["--config", file])
        #expect(result.status == 2, "\(line): \(result.standardError)")
        #expect(result.standardError.contains(key), "\(result.standardError)")
    }

    @Test("in-range values, 0 for an optional heartbeat included, are taken as given")
    func inRange() throws {
        #expect(try SettingRange.heartbeat.seconds(from: "0", name: "--heartbeat") == .zero)
        #expect(try SettingRange.heartbeat.seconds(from: "0.4", name: "--heartbeat") == .milliseconds(400))
        #expect(try SettingRange.readOnlyCleanupDelay.seconds(from: "0", name: "--ro-cleanup-delay") == .zero)
        #expect(try SettingRange.maxSessions.count(from: "100000", name: "--max-sessions") == 100_000)
    }

    @Test("validate() holds a configuration built in code to the same ranges")
    func validateInCode() {
        var configuration = DaemonConfiguration()
        configuration.heartbeat = .microseconds(100)
        #expect(throws: DaemonConfigurationError.self) { try configuration.validate() }
        configuration = DaemonConfiguration()
        configuration.httpIdleTimeout = .seconds(Int64.max)
        #expect(throws: DaemonConfigurationError.self) { try configuration.validate() }
    }

    @Test("a hexadecimal number is not a number of seconds (second attack pass: 0x10 was 16)")
    func hexadecimalRefused() {
        #expect(throws: DaemonConfigurationError.self) { try SettingRange.heartbeat.seconds(from: "0x10", name: "--heartbeat") }
        #expect(throws: Never.self) { try SettingRange.heartbeat.seconds(from: "1.5e1", name: "--heartbeat") }
    }
}
