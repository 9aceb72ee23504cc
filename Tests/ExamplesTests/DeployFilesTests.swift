import Foundation
import Glibc
import PersistentStorageTestSupport
import Testing

/// The files in packaging/, checked by the tools that will read them on a
/// PiKVM, and against the executables they start.
@Suite("The deployment files in packaging/")
struct DeployFilesTests {
    static let units = ["kvmd-pst.service", "kvmd-pst-root.service", "kvmd-pst-capabilities.service"]
    /// What `make install` replaces with the executables' directory.
    static let installedBinaries = "@BINDIR@/"
    /// kvmd's own release (``KvmdReference``; CI has it).
    static let kvmdTarball = KvmdReference.archive
    static var hasKvmdTarball: Bool { KvmdReference.hasArchive || RealMounts.required }
    /// The checks need root (sysusers, tmpfiles) or tools CI installs; in CI they never skip.
    static var canRunAsRoot: Bool { getuid() == 0 || RealMounts.required }
    static func has(_ tool: String) -> Bool { SystemCommand.exists(tool) || RealMounts.required }

    /// `ExecStart=`, continuation lines joined, split into words the way
    /// systemd does for the quoting these files use (double quotes).
    static func execStart(of unit: String) throws -> [String] {
        let text = try Repository.text("packaging/\(unit)").replacingOccurrences(of: "\\\n", with: " ")
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

    @Test("systemd-analyze verify accepts each unit, with the built kvmd-pst in place of the installed one",
          .enabled(if: has("systemd-analyze")), arguments: units)
    func systemdAcceptsUnit(unit: String) async throws {
        try await withTemporaryDirectory { directory in
            let text = try Repository.text("packaging/\(unit)")
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

    @Test("the sudoers line passes visudo, and allows exactly what the installed unit runs", .enabled(if: has("visudo")))
    func sudoers() async throws {
        let sudoers = try Repository.text("packaging/kvmd-pst.sudoers")
        try await withTemporaryDirectory { directory in
            try sudoers.replacingOccurrences(of: Self.installedBinaries, with: "/usr/bin/")
                .write(toFile: directory + "/swift-pst", atomically: true, encoding: .utf8)
            let check = try SystemCommand.execute(["visudo", "-cf", directory + "/swift-pst"])
            #expect(check.status == 0, "\(check.standardOutput)\(check.standardError)")
        }

        let words = try Self.execStart(of: "kvmd-pst.service")
        let index = try #require(words.firstIndex(of: "--remount-command"))
        let command = words[index + 1].split(separator: " ").map(String.init)
        #expect(Array(command.prefix(2)) == ["/usr/bin/sudo", "--non-interactive"])
        let helper = command.dropFirst(2).joined(separator: " ")
        #expect(helper == Self.installedBinaries + "kvmd-helper-pst-remount {mode}")
        for mode in ["rw", "ro"] {
            #expect(sudoers.contains(helper.replacingOccurrences(of: "{mode}", with: mode)))
        }
    }

    @Test("the installed unit runs as kvmd's does: kvmd-pst --run as the kvmd-pst user, before kvmd.service")
    func unitAsKvmds() throws {
        let text = try Repository.text("packaging/kvmd-pst.service")
        let lines = Set(text.split(separator: "\n").map(String.init))
        for line in ["User=kvmd-pst", "Group=kvmd-pst", "Before=kvmd.service", "Type=notify", "Restart=always"] {
            #expect(lines.contains(line), "kvmd-pst.service lacks \(line)")
        }
        #expect(Array(try Self.execStart(of: "kvmd-pst.service").prefix(2)) == [Self.installedBinaries + "kvmd-pst", "--run"])
        // The drop-in over kvmd's own unit changes what runs, and clears kvmd's ExecStart first.
        let dropIn = try Repository.text("packaging/kvmd-pst-beside-kvmd.conf")
        #expect(dropIn.contains("ExecStart=\nExecStart=\(Self.installedBinaries)kvmd-pst --run "))
        #expect(dropIn.contains("Type=notify"))
        #expect(!dropIn.contains("User="), "the drop-in keeps kvmd's user")
    }

    /// The lines of `file` in `root`'s /etc, split into fields.
    static func entries(_ file: String, in root: String) throws -> [[Substring]] {
        try String(contentsOfFile: root + "/etc/" + file, encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false) }
    }

    @Test("systemd-sysusers makes the kvmd-pst user and group, and puts kvmd-pst in kvmd (which owns /run/kvmd)",
          .enabled(if: canRunAsRoot && has("systemd-sysusers")))
    func sysusers() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try SystemCommand.run(["systemd-sysusers", "--root=\(root)", Repository.path("packaging/swift-pst.sysusers")])
            let user = try #require(try Self.entries("passwd", in: root).first { $0[0] == "kvmd-pst" })
            let groups = try Self.entries("group", in: root)
            let ownGroup = try #require(groups.first { $0[0] == "kvmd-pst" })
            #expect(user[3] == ownGroup[2], "kvmd-pst's primary group is kvmd-pst")
            let kvmd = try #require(groups.first { $0[0] == "kvmd" })
            #expect(kvmd[3].split(separator: ",").contains("kvmd-pst"))
        }
    }

    @Test("systemd-tmpfiles makes /run/kvmd writable by the group kvmd, where the units' socket lives",
          .enabled(if: canRunAsRoot && has("systemd-tmpfiles")))
    func tmpfiles() async throws {
        try await withTemporaryDirectory { root in
            try FileManager.default.createDirectory(atPath: root + "/etc", withIntermediateDirectories: true)
            try SystemCommand.run(["systemd-sysusers", "--root=\(root)", Repository.path("packaging/swift-pst.sysusers")])
            try SystemCommand.run(["systemd-tmpfiles", "--root=\(root)", "--create", Repository.path("packaging/swift-pst.tmpfiles")])
            let attributes = try FileManager.default.attributesOfItem(atPath: root + "/run/kvmd")
            #expect(attributes[.type] as? FileAttributeType == .typeDirectory)
            #expect((attributes[.posixPermissions] as? Int) == 0o775)
            #expect(attributes[.ownerAccountID] as? Int == 0)
            let kvmd = try #require(try Self.entries("group", in: root).first { $0[0] == "kvmd" })
            #expect((attributes[.groupOwnerAccountID] as? Int).map(String.init) == String(kvmd[2]))
            // The daemon's default socket lives in that directory.
            let help = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "--help"]).standardOutput
            #expect(help.contains("/run/kvmd/pst.sock"))
        }
    }

    @Test("beside kvmd's own sysusers and tmpfiles files, /run/kvmd stays kvmd's: ours never re-owns it",
          .enabled(if: canRunAsRoot && has("systemd-tmpfiles") && hasKvmdTarball))
    func tmpfilesBesideKvmd() async throws {
        try await withTemporaryDirectory { root in
            try SystemCommand.run(["tar", "-xzf", Self.kvmdTarball, "-C", root, "--strip-components=1", "--wildcards",
                                   "*/configs/os/sysusers.conf", "*/configs/os/tmpfiles.conf"])
            for directory in ["etc", "usr/lib/sysusers.d", "usr/lib/tmpfiles.d"] {
                try FileManager.default.createDirectory(atPath: root + "/" + directory, withIntermediateDirectories: true)
            }
            // Where kvmd's PKGBUILD and our `make install PREFIX=/usr` put them.
            for (source, target) in [
                (root + "/configs/os/sysusers.conf", "usr/lib/sysusers.d/kvmd.conf"),
                (root + "/configs/os/tmpfiles.conf", "usr/lib/tmpfiles.d/kvmd.conf"),
                (Repository.path("packaging/swift-pst.sysusers"), "usr/lib/sysusers.d/swift-pst.conf"),
                (Repository.path("packaging/swift-pst.tmpfiles"), "usr/lib/tmpfiles.d/swift-pst.conf"),
            ] {
                try FileManager.default.copyItem(atPath: source, toPath: root + "/" + target)
            }
            try SystemCommand.run(["systemd-sysusers", "--root=\(root)"])
            // Only /run/kvmd: kvmd's other lines name users this root may lack.
            try SystemCommand.run(["systemd-tmpfiles", "--root=\(root)", "--create", "--prefix=/run/kvmd"])
            let attributes = try FileManager.default.attributesOfItem(atPath: root + "/run/kvmd")
            let passwd = try Self.entries("passwd", in: root)
            let kvmdUser = try #require(passwd.first { $0[0] == "kvmd" })
            #expect((attributes[.ownerAccountID] as? Int).map(String.init) == String(kvmdUser[2]), "/run/kvmd is not owned by kvmd")
            #expect((attributes[.posixPermissions] as? Int) == 0o775)
        }
    }
}
