import Foundation
import Glibc
import KvmdConfiguration
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageDaemon

/// kvmd-pst reads kvmd's configuration tree with kvmd's key names, order
/// and value rules, and real PiKVM files leave it as it was.
@Suite("kvmd's configuration tree")
struct KvmdConfigTreeTests {
    /// kvmd 4.197's archive beside the repository (`../shared/reference`).
    static let referenceArchive = URL(filePath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "../shared/reference/kvmd-4.197.tar.gz").standardizedFileURL.path(percentEncoded: false)

    static func temporaryDirectory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appending(path: "kvmd-tree-\(UUID().uuidString)").path(percentEncoded: false)
        try FileManager.default.createDirectory(atPath: path + "/override.d", withIntermediateDirectories: true)
        return path
    }

    @Test("every PiKVM model's main.yaml of kvmd 4.197, with its override.yaml, is read and changes nothing",
          .enabled(if: FileManager.default.fileExists(atPath: referenceArchive)))
    func realPiKVMFiles() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try await SystemCommand.run(["tar", "-xzf", Self.referenceArchive, "-C", directory, "--wildcards", "*/configs/kvmd/*"])
        let configs = try #require(FileManager.default.subpathsOfDirectory(atPath: directory).first { $0.hasSuffix("configs/kvmd") })
        let mains = try FileManager.default.contentsOfDirectory(atPath: "\(directory)/\(configs)/main").filter { $0.hasSuffix(".yaml") }
        #expect(mains.count >= 10, "\(mains)")
        for main in mains.sorted() {
            let tree = KvmdConfigTree(
                mainConfig: "\(directory)/\(configs)/main/\(main)", overrideDirectory: directory + "/override.d",
                overrideConfig: "\(directory)/\(configs)/override.yaml")
            var configuration = DaemonConfiguration()
            let warnings = try configuration.apply(tree.pstSection())
            #expect(warnings.isEmpty)
            #expect(configuration == DaemonConfiguration(), "\(main)")
        }
    }

    @Test("kvmd's order: main, override.d by name, override.yaml, then --config; a mapping merges into a mapping, anything else replaces")
    func mergeOrder() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "pst:\n    server:\n        unix: /tmp/main.sock\n        heartbeat: 1\n    ro_retries_delay: 1\n    remount_cmd: [/bin/a, b]\n"
            .write(toFile: directory + "/main.yaml", atomically: true, encoding: .utf8)
        try "pst:\n    server: {heartbeat: 2}\n".write(toFile: directory + "/override.d/10-a.yaml", atomically: true, encoding: .utf8)
        try "pst:\n    server: {heartbeat: 3}\n    remount_cmd: /bin/true\n".write(toFile: directory + "/override.d/9-b", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: directory + "/override.d/99-a-directory", withIntermediateDirectories: false)
        try "pst:\n    ro_retries_delay: 4\n".write(toFile: directory + "/override.yaml", atomically: true, encoding: .utf8)
        try "pst:\n    ro_cleanup_delay: 5\n".write(toFile: directory + "/extra.yaml", atomically: true, encoding: .utf8)
        let tree = KvmdConfigTree(
            mainConfig: directory + "/main.yaml", overrideDirectory: directory + "/override.d",
            overrideConfig: directory + "/override.yaml", extraFiles: [directory + "/extra.yaml"])
        #expect(try tree.files() == [
            directory + "/main.yaml", directory + "/override.d/10-a.yaml", directory + "/override.d/9-b",
            directory + "/override.yaml", directory + "/extra.yaml",
        ])
        var configuration = DaemonConfiguration()
        _ = try configuration.apply(tree.pstSection())
        #expect(configuration.socketPath == "/tmp/main.sock", "kept: server merged key by key")
        #expect(configuration.heartbeat == .seconds(3))
        #expect(configuration.remountCommand == ["/bin/true"], "a list replaced by a string, split the kvmd way")
        #expect(configuration.readOnlyRetryDelay == .seconds(4))
        #expect(configuration.readOnlyCleanupDelay == .seconds(5))
        try configuration.validate()
    }

    @Test("kvmd's value rules: remount_cmd split on commas and tabs with an absolute first word, {mode} optional; unix_mode as YAML 1.1 reads it; unix_rm a boolean")
    func valueRules() throws {
        #expect(try configuration(fromYAML: "pst:\n    remount_cmd: \"/usr/bin/sudo,--non-interactive,\\t/usr/bin/kvmd-helper-pst-remount, {mode}\"\n").remountCommand
            == ["/usr/bin/sudo", "--non-interactive", "/usr/bin/kvmd-helper-pst-remount", "{mode}"])
        try configuration(fromYAML: "pst:\n    remount_cmd: [/bin/true]\n").validate()
        #expect { try configuration(fromYAML: "pst:\n    remount_cmd: sudo, helper\n").validate() } throws: {
            "\($0)".contains("'sudo' is not an absolute path")
        }
        #expect { try configuration(fromYAML: "pst:\n    remount_cmd: []\n") } throws: { "\($0)".contains("pst.remount_cmd: the command is empty") }
        #expect(try configuration(fromYAML: "pst:\n    server:\n        unix_mode: 0640\n").socketMode == 0o640)
        #expect(try configuration(fromYAML: "pst:\n    server:\n        unix_mode: 416\n").socketMode == 0o640, "decimal, as YAML 1.1 reads it")
        #expect { try configuration(fromYAML: "pst:\n    server:\n        unix_mode: 660\n") } throws: { "\($0)".contains("write 0660") }
        _ = try configuration(fromYAML: "pst:\n    server:\n        unix_rm: yes\n        access_log_format: \"%r\"\n")
        #expect { try configuration(fromYAML: "pst:\n    server:\n        unix_rm: maybe\n") } throws: { "\($0)".contains("pst.server.unix_rm") }
    }

    @Test("an unknown key is an error naming the file and the key; swift-pst's old pst.heartbeat is read with a warning")
    func unknownAndLegacyKeys() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "pst:\n    server:\n        unixx: /tmp/typo.sock\n".write(toFile: directory + "/override.yaml", atomically: true, encoding: .utf8)
        try "".write(toFile: directory + "/main.yaml", atomically: true, encoding: .utf8)
        let tree = KvmdConfigTree(mainConfig: directory + "/main.yaml", overrideDirectory: directory + "/override.d", overrideConfig: directory + "/override.yaml")
        var typo = DaemonConfiguration()
        #expect { _ = try typo.apply(tree.pstSection()) } throws: {
            "\($0)".hasPrefix("\(directory)/override.yaml: pst.server.unixx is not a setting kvmd-pst knows")
        }
        var legacy = DaemonConfiguration()
        let warnings = try legacy.apply(PstSection.parse("pst:\n    heartbeat: 4\n", source: "old.yaml"))
        #expect(legacy.heartbeat == .seconds(4))
        #expect(warnings == ["old.yaml: pst.heartbeat is read for compatibility with older swift-pst; kvmd's key is pst.server.heartbeat"])
        #expect(try configuration(fromYAML: "pst:\n    heartbeat: 4\n    server:\n        heartbeat: 6\n").heartbeat == .seconds(6))
    }

    @Test("a path given must exist; kvmd's default paths are skipped when missing")
    func missingFiles() throws {
        #expect { try KvmdConfigTree(mainConfig: "/nonexistent/main.yaml").pstSection() } throws: {
            "\($0)".contains("cannot read the configuration file /nonexistent/main.yaml")
        }
        #expect { try KvmdConfigTree(mainConfig: "/etc/hostname", overrideDirectory: "/nonexistent.d").files() } throws: {
            "\($0)".contains("/nonexistent.d")
        }
    }
}
