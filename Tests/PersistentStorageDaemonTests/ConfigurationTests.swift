import Glibc
import PersistentStorageMount
import Testing
@testable import PersistentStorageDaemon

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
            something_new: ignored
        """

    @Test("the pst: section of a kvmd-style file is read with the reference's key names")
    func readsPstSection() throws {
        let overrides = try KvmdConfigurationFile.parse(Self.kvmdYAML)
        #expect(overrides.socketPath == "/run/kvmd/pst-test.sock")
        #expect(overrides.socketMode == 0o640)
        #expect(overrides.heartbeat == .milliseconds(7500))
        #expect(overrides.readOnlyRetryDelay == .seconds(2))
        #expect(overrides.readOnlyCleanupDelay == .milliseconds(500))
        #expect(overrides.remountCommand == ["/usr/bin/sudo", "--non-interactive", "/usr/bin/kvmd-helper-pst-remount", "{mode}"])
    }

    @Test("flags win over the file")
    func flagsWin() throws {
        var configuration = DaemonConfiguration()
        configuration.apply(try KvmdConfigurationFile.parse(Self.kvmdYAML))
        var flags = ConfigurationOverrides()
        flags.socketPath = "/tmp/from-flag.sock"
        flags.heartbeat = .seconds(1)
        configuration.apply(flags)
        #expect(configuration.socketPath == "/tmp/from-flag.sock")
        #expect(configuration.heartbeat == .seconds(1))
        #expect(configuration.socketMode == 0o640)
    }

    @Test("a file without a pst: section changes nothing")
    func noPstSection() throws {
        #expect(try KvmdConfigurationFile.parse("kvmd: {}\n") == ConfigurationOverrides())
        #expect(try KvmdConfigurationFile.parse("") == ConfigurationOverrides())
    }

    @Test("wrong types and broken YAML are rejected with a message that names the key")
    func rejectsBadValues() {
        #expect { try KvmdConfigurationFile.parse("pst:\n  heartbeat: soon\n") } throws: { error in
            String(describing: error).contains("pst.heartbeat")
        }
        #expect { try KvmdConfigurationFile.parse("pst:\n  heartbeat: -1\n") } throws: { error in
            String(describing: error).contains("pst.heartbeat")
        }
        #expect(throws: DaemonConfigurationError.self) { try KvmdConfigurationFile.parse("pst: [unclosed\n") }
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
        configuration.apply(try KvmdConfigurationFile.parse("pst:\n    server:\n        unix: /tmp/a.sock\u{0}x\n"))
        #expect(throws: DaemonConfigurationError("the socket path contains a NUL byte")) { try configuration.validate() }
        configuration = DaemonConfiguration()
        configuration.fstabPath = "/etc/fstab\u{0}"
        #expect(throws: DaemonConfigurationError("the fstab path contains a NUL byte")) { try configuration.validate() }
        configuration = DaemonConfiguration()
        configuration.remountCommand = ["/bin/true\u{0}", "{mode}"]
        #expect(throws: DaemonConfigurationError("the remount command contains a NUL byte")) { try configuration.validate() }
    }
}
