import Foundation
import PersistentStorageTestSupport
import PersistentStorageVersion
import Testing

/// `--version`, and what `make install` and `make install-beside-kvmd` put
/// where: the files systemd, sudo, man and the shells read.
@Suite("Installing: the version, make install and make install-beside-kvmd")
struct InstallTests {
    static let executables = ["kvmd-pst", "kvmd-pstrun", "kvmd-helper-pst-remount"]
    static let version = SwiftPSTVersion.string

    @Test("every executable prints the one declared version with --version, and lists --version in its help",
          arguments: executables)
    func versionOption(executable: String) throws {
        let result = try SystemCommand.execute([BuiltProducts.path(of: executable), "--version"])
        #expect(result.status == 0)
        #expect(result.standardOutput == Self.version + "\n")
        #expect(result.standardError.isEmpty)
        let help = try SystemCommand.execute([BuiltProducts.path(of: executable), "--help"]).standardOutput
        #expect(help.contains("--version"))
    }

    @Test("the PKGBUILD and the CHANGELOG agree with the declared version")
    func versionAgreement() throws {
        #expect(Self.version.wholeMatch(of: /[0-9]+\.[0-9]+\.[0-9]+/) != nil, "not Semantic Versioning: \(Self.version)")
        let pkgbuild = try Repository.text("packaging/PKGBUILD").split(separator: "\n")
        #expect(pkgbuild.contains("pkgver=\(Self.version)"), "packaging/PKGBUILD's pkgver is not \(Self.version)")

        // The newest released section is this version; before the first
        // release there is only [Unreleased], which becomes it.
        let headings = try Repository.text("CHANGELOG.md").split(separator: "\n")
            .filter { $0.hasPrefix("## [") }
            .map { $0.dropFirst(4).prefix { $0 != "]" } }
        #expect(headings.first == "Unreleased" || headings.first.map(String.init) == Self.version,
                "CHANGELOG.md's newest section is \(headings.first ?? "none"), swift-pst's version \(Self.version)")
        if let newestRelease = headings.first(where: { $0 != "Unreleased" }) {
            #expect(String(newestRelease) == Self.version,
                    "CHANGELOG.md's newest release is \(newestRelease): bump SwiftPSTVersion.string to it")
        }
    }

    @Test("kvmd-pstrun's hand-written man page and bash completion know every option its --help lists")
    func pstrunManualAndCompletion() throws {
        let help = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pstrun"), "--help"]).standardOutput
        let options = Set(help.matches(of: /--[a-z][a-z-]+/).map { String($0.output) })
        #expect(options.isSuperset(of: ["--socket", "--timeout", "--log-level", "--version", "--help"]))
        // roff escapes every '-' of an option as '\-'.
        let manual = try Repository.text("packaging/kvmd-pstrun.1").replacingOccurrences(of: "\\-", with: "-")
        let completion = try Repository.text("packaging/kvmd-pstrun.bash-completion")
        for option in options {
            #expect(manual.contains(option), "kvmd-pstrun.1 does not document \(option)")
            #expect(completion.contains(option), "kvmd-pstrun's bash completion does not offer \(option)")
        }
    }

    /// A SHIPPED directory as Scripts/build-release.sh and
    /// Scripts/build-install-files.sh leave it, from the built (debug)
    /// executables; the two generated man pages are stand-ins (the package
    /// build checks the real ones).
    static func makeShipped(in directory: String) throws -> String {
        let shipped = directory + "/shipped"
        let manager = FileManager.default
        for subdirectory in ["man/man1", "man/man8", "completions/bash", "completions/zsh", "completions/fish"] {
            try manager.createDirectory(atPath: shipped + "/" + subdirectory, withIntermediateDirectories: true)
        }
        for executable in executables {
            try manager.copyItem(atPath: BuiltProducts.path(of: executable), toPath: shipped + "/" + executable)
        }
        for executable in ["kvmd-pst", "kvmd-helper-pst-remount"] {
            try ".TH \(executable) 8\n".write(toFile: shipped + "/man/man8/\(executable).8", atomically: true, encoding: .utf8)
            for (shell, name) in [("bash", executable), ("zsh", "_" + executable), ("fish", executable + ".fish")] {
                let script = try SystemCommand.run([BuiltProducts.path(of: executable), "--generate-completion-script", shell])
                try script.write(toFile: shipped + "/completions/\(shell)/\(name)", atomically: true, encoding: .utf8)
            }
        }
        try manager.copyItem(atPath: Repository.path("packaging/kvmd-pstrun.1"), toPath: shipped + "/man/man1/kvmd-pstrun.1")
        return shipped
    }

    static func make(_ arguments: [String]) throws -> SystemCommand.Result {
        try SystemCommand.execute(["make", "-s", "-C", Repository.path("")] + arguments)
    }

    /// Every regular file under `root`, as absolute paths inside it.
    static func files(under root: String) -> Set<String> {
        var files = Set<String>()
        let enumerator = FileManager.default.enumerator(atPath: root)
        while let path = enumerator?.nextObject() as? String {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: root + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files.insert("/" + path)
            }
        }
        return files
    }

    static func mode(of path: String) throws -> Int {
        try #require(try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int)
    }

    @Test("make install PREFIX=/usr puts each file where systemd, sudo, man and the shells look, and uninstall removes them",
          .enabled(if: SystemCommand.exists("make")))
    func installStandalone() async throws {
        try await withTemporaryDirectory { directory in
            let shipped = try Self.makeShipped(in: directory)
            let destination = directory + "/root"
            let install = try Self.make(["install", "PREFIX=/usr", "DESTDIR=\(destination)", "SHIPPED=\(shipped)"])
            #expect(install.status == 0, "\(install.standardError)")

            let expected: Set<String> = [
                "/usr/bin/kvmd-pst", "/usr/bin/kvmd-pstrun", "/usr/bin/kvmd-helper-pst-remount",
                "/usr/lib/systemd/system/kvmd-pst.service",
                "/usr/share/swift-pst/kvmd-pst-root.service", "/usr/share/swift-pst/kvmd-pst-capabilities.service",
                "/usr/lib/sysusers.d/swift-pst.conf", "/usr/lib/tmpfiles.d/swift-pst.conf",
                "/etc/sudoers.d/swift-pst",
                "/usr/share/man/man8/kvmd-pst.8", "/usr/share/man/man8/kvmd-helper-pst-remount.8", "/usr/share/man/man1/kvmd-pstrun.1",
                "/usr/share/bash-completion/completions/kvmd-pst", "/usr/share/bash-completion/completions/kvmd-pstrun",
                "/usr/share/bash-completion/completions/kvmd-helper-pst-remount",
                "/usr/share/zsh/site-functions/_kvmd-pst", "/usr/share/zsh/site-functions/_kvmd-helper-pst-remount",
                "/usr/share/fish/vendor_completions.d/kvmd-pst.fish", "/usr/share/fish/vendor_completions.d/kvmd-helper-pst-remount.fish",
            ]
            let installed = Self.files(under: destination)
            #expect(installed == expected, "missing: \(expected.subtracting(installed)), unexpected: \(installed.subtracting(expected))")

            for executable in Self.executables {
                let path = destination + "/usr/bin/" + executable
                #expect(try Self.mode(of: path) == 0o755)
                #expect(try SystemCommand.execute([path, "--version"]).standardOutput == Self.version + "\n")
            }
            let unit = try String(contentsOfFile: destination + "/usr/lib/systemd/system/kvmd-pst.service", encoding: .utf8)
            #expect(unit.contains("\nExecStart=/usr/bin/kvmd-pst --run \\\n"))
            #expect(unit.contains("\"/usr/bin/sudo --non-interactive /usr/bin/kvmd-helper-pst-remount {mode}\""))
            let sudoers = try String(contentsOfFile: destination + "/etc/sudoers.d/swift-pst", encoding: .utf8)
            #expect(sudoers.contains("NOPASSWD: /usr/bin/kvmd-helper-pst-remount rw, /usr/bin/kvmd-helper-pst-remount ro\n"))
            #expect(try Self.mode(of: destination + "/etc/sudoers.d/swift-pst") == 0o440)
            #expect(try Self.mode(of: destination + "/etc/sudoers.d") == 0o750)
            for file in installed where !file.hasPrefix("/usr/bin/") {
                let text = try String(contentsOfFile: destination + file, encoding: .utf8)
                #expect(!text.contains("@BINDIR@"), "\(file) still says @BINDIR@")
            }

            let uninstall = try Self.make(["uninstall", "PREFIX=/usr", "DESTDIR=\(destination)"])
            #expect(uninstall.status == 0, "\(uninstall.standardError)")
            #expect(Self.files(under: destination).isEmpty, "left after uninstall: \(Self.files(under: destination))")
        }
    }

    @Test("make install-beside-kvmd PREFIX=/usr replaces none of kvmd's files: executables in /usr/lib/swift-pst, a drop-in for kvmd's unit; uninstall-beside-kvmd removes them",
          .enabled(if: SystemCommand.exists("make")))
    func installBesideKvmd() async throws {
        try await withTemporaryDirectory { directory in
            let shipped = try Self.makeShipped(in: directory)
            let destination = directory + "/root"
            let install = try Self.make(["install-beside-kvmd", "PREFIX=/usr", "DESTDIR=\(destination)", "SHIPPED=\(shipped)"])
            #expect(install.status == 0, "\(install.standardError)")
            let expected: Set<String> = [
                "/usr/lib/swift-pst/kvmd-pst", "/usr/lib/swift-pst/kvmd-pstrun", "/usr/lib/swift-pst/kvmd-helper-pst-remount",
                "/usr/lib/systemd/system/kvmd-pst.service.d/swift-pst.conf",
                "/etc/sudoers.d/swift-pst",
                "/usr/share/man/man8/kvmd-pst.8", "/usr/share/man/man8/kvmd-helper-pst-remount.8", "/usr/share/man/man1/kvmd-pstrun.1",
            ]
            let installed = Self.files(under: destination)
            #expect(installed == expected, "missing: \(expected.subtracting(installed)), unexpected: \(installed.subtracting(expected))")
            let dropIn = try String(contentsOfFile: destination + "/usr/lib/systemd/system/kvmd-pst.service.d/swift-pst.conf", encoding: .utf8)
            #expect(dropIn.contains("\nExecStart=\nExecStart=/usr/lib/swift-pst/kvmd-pst --run \\\n"))
            #expect(dropIn.contains("\"/usr/bin/sudo --non-interactive /usr/lib/swift-pst/kvmd-helper-pst-remount {mode}\""))
            let sudoers = try String(contentsOfFile: destination + "/etc/sudoers.d/swift-pst", encoding: .utf8)
            #expect(sudoers.contains("NOPASSWD: /usr/lib/swift-pst/kvmd-helper-pst-remount rw, /usr/lib/swift-pst/kvmd-helper-pst-remount ro\n"))

            let uninstall = try Self.make(["uninstall-beside-kvmd", "PREFIX=/usr", "DESTDIR=\(destination)"])
            #expect(uninstall.status == 0, "\(uninstall.standardError)")
            #expect(Self.files(under: destination).isEmpty, "left after uninstall-beside-kvmd: \(Self.files(under: destination))")
        }
    }

    @Test("make install without built executables fails, saying what to run first", .enabled(if: SystemCommand.exists("make")))
    func installNeedsBuild() async throws {
        try await withTemporaryDirectory { directory in
            let result = try Self.make(["install", "DESTDIR=\(directory)/root", "SHIPPED=\(directory)/nothing"])
            #expect(result.status != 0)
            #expect(result.standardError.contains("run 'make release install-files' first"))
            #expect(Self.files(under: directory + "/root").isEmpty)
        }
    }
}
