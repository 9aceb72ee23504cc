import Glibc
import KvmdConfiguration
import PersistentStorageMount
import Testing
@testable import PersistentStorageDaemon

/// The configuration the `pst:` section of `text` gives, over the defaults.
func configuration(fromYAML text: String) throws -> DaemonConfiguration {
    var configuration = DaemonConfiguration()
    _ = try configuration.apply(PstSection.parse(text))
    return configuration
}

@Suite("Configuration: kvmd YAML, flags and validation")
struct ConfigurationTests {
    static let kvmdYAML = """
        kvmd:
            server:
                unix: /run/kvmd/kvmd.sock
        pst:
            server:
                unix: /run/kvmd/pst-test.sock
                unix_mode: 0o640
                heartbeat: 7.5
            ro_retries_delay: 2
            ro_cleanup_delay: 0.5
            remount_cmd:
                - /usr/bin/sudo
                - --non-interactive
                - /usr/bin/kvmd-helper-pst-remount
                - "{mode}"
        """

    @Test("the pst: section of a kvmd-style file is read with the reference's key names")
    func readsPstSection() throws {
        let overrides = try configuration(fromYAML: Self.kvmdYAML)
        #expect(overrides.socketPath == "/run/kvmd/pst-test.sock")
        #expect(overrides.socketMode == 0o640)
        #expect(overrides.heartbeat == .milliseconds(7500))
        #expect(overrides.readOnlyRetryDelay == .seconds(2))
        #expect(overrides.readOnlyCleanupDelay == .milliseconds(500))
        #expect(overrides.remountCommand == ["/usr/bin/sudo", "--non-interactive", "/usr/bin/kvmd-helper-pst-remount", "{mode}"])
    }

    @Test("flags win over the file")
    func flagsWin() throws {
        var configuration = try configuration(fromYAML: Self.kvmdYAML)
        try DaemonSetting.socket.apply(optionText: "/tmp/from-flag.sock", to: &configuration)
        try DaemonSetting.heartbeat.apply(optionText: "1", to: &configuration)
        #expect(configuration.socketPath == "/tmp/from-flag.sock")
        #expect(configuration.heartbeat == .seconds(1))
        #expect(configuration.socketMode == 0o640)
    }

    @Test("a file without a pst: section changes nothing")
    func noPstSection() throws {
        #expect(try configuration(fromYAML: "kvmd: {}\n") == DaemonConfiguration())
        #expect(try configuration(fromYAML: "") == DaemonConfiguration())
    }

    @Test("wrong types and broken YAML are rejected with a message that names the key")
    func rejectsBadValues() {
        #expect { try configuration(fromYAML: "pst:\n  server:\n    heartbeat: soon\n") } throws: { error in
            String(describing: error).contains("pst.server.heartbeat")
        }
        #expect { try configuration(fromYAML: "pst:\n  ro_retries_delay: -1\n") } throws: { error in
            String(describing: error).contains("pst.ro_retries_delay")
        }
        #expect(throws: KvmdConfigError.self) { try configuration(fromYAML: "pst: [unclosed\n") }
    }

    @Test("file modes are octal the way chmod takes them", arguments: [("660", 0o660), ("0660", 0o660), ("0o600", 0o600)])
    func octalModes(text: String, mode: Int) throws {
        #expect(try ConfigurationValue.octalMode(text) == mode_t(mode))
    }

    @Test("validation refuses values the daemon cannot use", arguments: [
        { (c: inout DaemonConfiguration) in c.socketPath = "relative.sock" },
        { (c: inout DaemonConfiguration) in c.socketPath = "/" + String(repeating: "s", count: 120) },
        { (c: inout DaemonConfiguration) in c.socketGroup = "no-such-group-here" },
        { (c: inout DaemonConfiguration) in c.readOnlyRetryDelay = .zero },
        { (c: inout DaemonConfiguration) in c.maxSessions = 0 },
        { (c: inout DaemonConfiguration) in c.remountCommand = ["sudo", "helper"] },
    ] as [@Sendable (inout DaemonConfiguration) -> Void])
    func validationRefuses(change: @Sendable (inout DaemonConfiguration) -> Void) {
        var configuration = DaemonConfiguration()
        change(&configuration)
        #expect(throws: DaemonConfigurationError.self) { try configuration.validate() }
    }

    @Test("the defaults are the reference's")
    func defaults() throws {
        let configuration = DaemonConfiguration()
        #expect(configuration.socketPath == "/run/kvmd/pst.sock")
        #expect(configuration.socketMode == 0o660)
        #expect(configuration.heartbeat == .seconds(15))
        #expect(configuration.readOnlyRetryDelay == .seconds(10))
        #expect(configuration.readOnlyCleanupDelay == .seconds(3))
        #expect(configuration.dataLayout == .root)
        try configuration.validate()
    }

    @Test("a NUL byte in a path or the remount command is refused by validation, before anything is touched (attack round)")
    func nulBytes() throws {
        var configuration = DaemonConfiguration()
        #expect { _ = try configuration.apply(PstSection.parse("pst:\n    server:\n        unix: /tmp/a.sock\u{0}x\n")) } throws: {
            "\($0)".contains("pst.server.unix") && "\($0)".contains("NUL")
        }
        configuration.socketPath = "/tmp/a.sock\u{0}x"
        #expect(throws: DaemonConfigurationError("the socket path contains a NUL byte")) { try configuration.validate() }
        configuration = DaemonConfiguration()
        configuration.fstabPath = "/etc/fstab\u{0}"
        #expect(throws: DaemonConfigurationError("the fstab path contains a NUL byte")) { try configuration.validate() }
        configuration = DaemonConfiguration()
        configuration.remountCommand = ["/bin/true\u{0}", "{mode}"]
        #expect(throws: DaemonConfigurationError("the remount command contains a NUL byte")) { try configuration.validate() }
    }
}
