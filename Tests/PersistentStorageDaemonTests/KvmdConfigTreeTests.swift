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
    /// kvmd 4.197's archive (``KvmdReference``).
    static let referenceArchive = KvmdReference.archive

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
        #expect { try configuration(fromYAML: "pst:\n    remount_cmd: []\n") } throws: { "\($0)".contains("pst.remount_cmd: the remount command is empty") }
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

    // MARK: - The attack round of issue 14

    @Test("numbers as kvmd's YAML 1.1 reads them: plain 010 is octal, 0x10 hex, 1_0 ten; quoted \"010\" is decimal")
    func yamlNumbers() throws {
        #expect(try configuration(fromYAML: "pst:\n    server:\n        heartbeat: 010\n").heartbeat == .seconds(8))
        #expect(try configuration(fromYAML: "pst:\n    server:\n        heartbeat: 0x10\n").heartbeat == .seconds(16))
        #expect(try configuration(fromYAML: "pst:\n    server:\n        heartbeat: 1_0\n").heartbeat == .seconds(10))
        #expect(try configuration(fromYAML: "pst:\n    server:\n        heartbeat: \"010\"\n").heartbeat == .seconds(10))
    }

    @Test("a value or a file name that is not UTF-8 is an error naming the file, never a replaced character")
    func invalidUTF8() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/main.yaml"
        try Data("pst:\n    server:\n        unix: /tmp/x/".utf8 + [0xFF] + Data(".sock\n".utf8)).write(to: URL(filePath: file))
        #expect { try KvmdConfigTree(mainConfig: file, overrideDirectory: directory + "/override.d", overrideConfig: file).pstSection() } throws: {
            "\($0)".contains("cannot read the configuration file \(file): it is not UTF-8 text")
        }
        try "".write(toFile: file, atomically: true, encoding: .utf8)
        let badName = Array((directory + "/override.d/").utf8) + [0xFF] + Array(".yaml".utf8) + [0]
        let fd = badName.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o644) } }
        #expect(fd >= 0)
        close(fd)
        #expect { try KvmdConfigTree(mainConfig: file, overrideDirectory: directory + "/override.d", overrideConfig: file).files() } throws: {
            "\($0)".contains("holds a file whose name is not UTF-8")
        }
    }

    @Test("a key twice in one mapping: the last one counts, whole, as in PyYAML; a second document is refused")
    func duplicatesAndDocuments() throws {
        let twice = try configuration(fromYAML: "pst:\n    server:\n        heartbeat: 3\n    server:\n        unix: /tmp/b.sock\n")
        #expect(twice.socketPath == "/tmp/b.sock")
        #expect(twice.heartbeat == .seconds(15), "the first server: mapping is replaced, not merged")
        #expect { try configuration(fromYAML: "pst:\n    ro_retries_delay: 2\n---\npst:\n    ro_retries_delay: 3\n") } throws: {
            "\($0)".contains("a second YAML document")
        }
        #expect(try configuration(fromYAML: "---\npst:\n    ro_retries_delay: 2\n").readOnlyRetryDelay == .seconds(2))
    }

    @Test("a relative or NUL-holding socket path and a relative remount command are errors naming the file and key")
    func pathsNameTheirSource() throws {
        #expect { try configuration(fromYAML: "pst:\n    server:\n        unix: rel.sock\n") } throws: {
            "\($0)".hasPrefix("the configuration: pst.server.unix: 'rel.sock' is not an absolute path")
        }
        #expect { try configuration(fromYAML: "pst:\n    remount_cmd: sudo x {mode}\n") } throws: {
            "\($0)".hasPrefix("the configuration: pst.remount_cmd: the remount command's first word 'sudo x {mode}' is not an absolute path")
        }
    }

    @Test("the old pst.heartbeat beside kvmd's key: checked, then ignored with a warning")
    func legacyBesideNewKey() throws {
        var configuration = DaemonConfiguration()
        let warnings = try configuration.apply(PstSection.parse("pst:\n    heartbeat: 4\n    server:\n        heartbeat: 6\n", source: "f.yaml"))
        #expect(configuration.heartbeat == .seconds(6))
        #expect(warnings == ["f.yaml: pst.heartbeat is ignored: kvmd's pst.server.heartbeat is set, and wins"])
        #expect { try configuration.apply(PstSection.parse("pst:\n    heartbeat: banana\n    server:\n        heartbeat: 6\n")) } throws: {
            "\($0)".contains("pst.heartbeat")
        }
    }

    @Test("-m prints YAML that reads back the same (quoted where PyYAML would read something else), and fails when stdout does")
    func dumpReadsBack() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "".write(toFile: directory + "/empty.yaml", atomically: true, encoding: .utf8)
        let empty = ["--main-config", directory + "/empty.yaml", "--override-dir", directory + "/override.d", "--override-config", directory + "/empty.yaml"]
        let options = empty + ["--socket", "/tmp/a #b: c.sock", "--remount-command", "/bin/echo null yes 0660 {mode}"]
        let dump = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "-m"] + options)
        #expect(dump.status == 0, "\(dump.standardError)")
        try dump.standardOutput.write(toFile: directory + "/dumped.yaml", atomically: true, encoding: .utf8)
        let again = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "-m", "--config", directory + "/dumped.yaml"] + empty)
        #expect(again.status == 0, "\(again.standardError)")
        #expect(again.standardOutput == dump.standardOutput)
        #expect(dump.standardOutput.contains(#"unix: "/tmp/a #b: c.sock""#))
        #expect(dump.standardOutput.contains(#"- "null""#) && dump.standardOutput.contains(#"- "0660""#))

        // C1 controls, line and paragraph separators and a byte order mark
        // are escaped: PyYAML refuses the first raw, and reads the others as
        // something else.
        let oddSocket = "/tmp/a\u{85}b\u{9B}c\u{2028}d\u{2029}e\u{FEFF}f\u{7F}.sock"
        let odd = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "-m"] + empty + ["--socket", oddSocket])
        #expect(odd.status == 0, "\(odd.standardError)")
        #expect(odd.standardOutput.contains(#"unix: "/tmp/a\x85b\x9bc\u2028d\u2029e\ufefff\x7f.sock""#), "\(odd.standardOutput)")
        try odd.standardOutput.write(toFile: directory + "/odd.yaml", atomically: true, encoding: .utf8)
        let oddAgain = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "-m", "--config", directory + "/odd.yaml"] + empty)
        #expect(oddAgain.standardOutput == odd.standardOutput, "\(oddAgain.standardError)")

        let full = try await SystemCommand.execute(["/bin/sh", "-c", "\"$0\" -m \"$@\" > /dev/full", BuiltProducts.path(of: "kvmd-pst")] + empty)
        #expect(full.status == 1, "\(full.standardError)")
    }

    @Test("--config may be given twice: both are read, in order")
    func configTwice() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try "pst:\n    ro_retries_delay: 2\n    ro_cleanup_delay: 1\n".write(toFile: directory + "/a.yaml", atomically: true, encoding: .utf8)
        try "pst:\n    ro_retries_delay: 5\n".write(toFile: directory + "/b.yaml", atomically: true, encoding: .utf8)
        try "".write(toFile: directory + "/empty.yaml", atomically: true, encoding: .utf8)
        let dump = try await SystemCommand.execute([
            BuiltProducts.path(of: "kvmd-pst"), "-m", "--main-config", directory + "/empty.yaml", "--override-dir", directory + "/override.d",
            "--override-config", directory + "/empty.yaml", "--config", directory + "/a.yaml", "--config", directory + "/b.yaml",
        ])
        #expect(dump.standardOutput.contains("ro_retries_delay: 5\n") && dump.standardOutput.contains("ro_cleanup_delay: 1\n"), "\(dump.standardOutput)")
    }
}
