import Foundation
import Glibc
import PersistentStorageTestSupport
import Testing

/// The files in Examples/deploy, checked by the tools that will read them on
/// a PiKVM, and against the executables they start.
@Suite("The deployment files in Examples/deploy")
struct DeployFilesTests {
    static let units = ["kvmd-pst.service", "kvmd-pst-sudo.service", "kvmd-pst-capabilities.service"]
    static let installedBinaries = "/usr/local/bin/"
    /// The checks need root (sysusers, tmpfiles) or tools CI installs; in CI they never skip.
    static var canRunAsRoot: Bool { getuid() == 0 || RealMounts.required }
    static func has(_ tool: String) -> Bool { SystemCommand.exists(tool) || RealMounts.required }

    /// `ExecStart=`, continuation lines joined, split into words the way
    /// systemd does for the quoting these files use (double quotes).
    static func execStart(of unit: String) throws -> [String] {
        let text = try Repository.text("Examples/deploy/\(unit)").replacingOccurrences(of: "\\\n", with: " ")
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix("ExecStart=") })
        var words: [String] = []
        var word = ""
        var quoted = false
        var inWord = false
        for character in line.dropFirst("ExecStart=".count) {
            switch character {
            case "\"":
                quoted.toggle()
                inWord = true
            case " " where !quoted, "\t" where !quoted:
                if inWord { words.append(word) }
                word = ""
                inWord = false
            default:
                word.append(character)
                inWord = true
            }
        }
        if inWord { words.append(word) }
        return words
    }

    @Test("systemd-analyze verify accepts each unit, with the built kvmd-pst in place of /usr/local/bin's",
          .enabled(if: has("systemd-analyze")), arguments: units)
    func systemdAcceptsUnit(unit: String) async throws {
        try await withTemporaryDirectory { directory in
            let text = try Repository.text("Examples/deploy/\(unit)")
                .replacingOccurrences(of: Self.installedBinaries, with: BuiltProducts.directory + "/")
            try text.write(toFile: directory + "/" + unit, atomically: true, encoding: .utf8)
            let result = try SystemCommand.execute(["systemd-analyze", "verify", "--man=no", directory + "/" + unit])
            #expect(result.status == 0, "\(result.standardError)")
            // Unknown keys and bad values are only warnings, with status 0.
            #expect(result.standardError.isEmpty, "\(result.standardError)")
            #expect(text.contains("Type=notify"))
        }
    }

    @Test("every option ExecStart passes is one kvmd-pst --help lists", arguments: units)
    func execStartOptionsExist(unit: String) throws {
        let help = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "--help"]).standardOutput
        let words = try Self.execStart(of: unit)
        #expect(words.first == Self.installedBinaries + "kvmd-pst")
        let options = words.filter { $0.hasPrefix("--") }
        #expect(!options.isEmpty)
        for option in options {
            #expect(help.contains(option + " "), "\(unit): \(option) is not an option of kvmd-pst")
        }
    }

    @Test("the sudoers line passes visudo, and allows exactly what the sudo unit runs", .enabled(if: has("visudo")))
    func sudoers() throws {
        let path = Repository.path("Examples/deploy/kvmd-pst.sudoers")
        let check = try SystemCommand.execute(["visudo", "-cf", path])
        #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")

        let words = try Self.execStart(of: "kvmd-pst-sudo.service")
        let index = try #require(words.firstIndex(of: "--remount-command"))
        let command = words[index + 1].split(separator: " ").map(String.init)
        #expect(Array(command.prefix(2)) == ["sudo", "--non-interactive"])
        let helper = command.dropFirst(2).joined(separator: " ")
        #expect(helper == Self.installedBinaries + "kvmd-helper-pst-remount {mode}")
        let sudoers = try Repository.text("Examples/deploy/kvmd-pst.sudoers")
        for mode in ["rw", "ro"] {
            #expect(sudoers.contains(helper.replacingOccurrences(of: "{mode}", with: mode)))
        }
    }

    @Test("systemd-sysusers creates the kvmd-pst user and group from the sysusers file",
          .enabled(if: canRunAsRoot && has("systemd-sysusers")))
    func sysusers() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try SystemCommand.run(["systemd-sysusers", "--root=\(root)", Repository.path("Examples/deploy/kvmd-pst.sysusers")])
            let passwd = try String(contentsOfFile: root + "/etc/passwd", encoding: .utf8)
            let group = try String(contentsOfFile: root + "/etc/group", encoding: .utf8)
            #expect(passwd.split(separator: "\n").contains { $0.hasPrefix("kvmd-pst:") })
            #expect(group.split(separator: "\n").contains { $0.hasPrefix("kvmd-pst:") })
        }
    }

    @Test("systemd-tmpfiles creates the socket's directory from the tmpfiles file",
          .enabled(if: canRunAsRoot && has("systemd-tmpfiles")))
    func tmpfiles() async throws {
        try await withTemporaryDirectory { root in
            try SystemCommand.run(["systemd-tmpfiles", "--root=\(root)", "--create", Repository.path("Examples/deploy/kvmd-pst.tmpfiles")])
            let attributes = try FileManager.default.attributesOfItem(atPath: root + "/run/kvmd")
            #expect(attributes[.type] as? FileAttributeType == .typeDirectory)
            #expect((attributes[.posixPermissions] as? Int) == 0o755)
            // The socket the units name lives in that directory.
            #expect(try Self.execStart(of: "kvmd-pst.service").contains("/run/kvmd/pst.sock"))
        }
    }
}
