import Foundation
import KvmdConfiguration
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageRun

/// kvmd-pstrun finds the socket the way kvmd's does: `pst.server.unix` in
/// kvmd's configuration tree, unless `--socket` says.
@Suite("kvmd-pstrun's socket from kvmd's configuration")
struct RunConfigTreeTests {
    /// A kvmd configuration tree in a temporary directory.
    struct Tree {
        let directory: String
        var main: String { directory + "/main.yaml" }
        var overrideDirectory: String { directory + "/override.d" }
        var override: String { directory + "/override.yaml" }

        init() throws {
            directory = FileManager.default.temporaryDirectory.appending(path: "kvmd-tree-\(UUID().uuidString)").path(percentEncoded: false)
            try FileManager.default.createDirectory(atPath: directory + "/override.d", withIntermediateDirectories: true)
        }

        func write(_ text: String, to path: String) throws {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }

        func arguments(_ extra: [String] = []) -> [String] {
            ["--main-config", main, "--override-dir", overrideDirectory, "--override-config", override] + extra + ["--", "true"]
        }

        func remove() { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func socket(_ words: [String]) throws -> String {
        guard case .run(let arguments) = RunArguments.parse(words) else {
            Issue.record("not parsed: \(words)")
            return ""
        }
        return try arguments.effectiveSocketPath()
    }

    @Test("main.yaml, then override.d in name order, then override.yaml; --socket wins over all")
    func mergeOrder() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.write("kvmd:\n    gpio: {}\n", to: tree.main)
        try tree.write("", to: tree.override)
        #expect(try socket(tree.arguments()) == "/run/kvmd/pst.sock", "no file sets it: kvmd's default")

        try tree.write("pst:\n    server:\n        unix: /tmp/main.sock\n", to: tree.main)
        #expect(try socket(tree.arguments()) == "/tmp/main.sock")

        try tree.write("pst:\n    server:\n        unix: /tmp/10.sock\n", to: tree.overrideDirectory + "/10-first.yaml")
        try tree.write("pst:\n    server:\n        unix: /tmp/9.sock\n", to: tree.overrideDirectory + "/9-later-by-name")
        #expect(try socket(tree.arguments()) == "/tmp/9.sock", "every file in override.d, by name, as bytes")

        try tree.write("pst:\n    server:\n        unix: /tmp/override.sock\n        unix_mode: 0600\n", to: tree.override)
        #expect(try socket(tree.arguments()) == "/tmp/override.sock")
        #expect(try socket(tree.arguments(["--socket", "/tmp/flag.sock"])) == "/tmp/flag.sock")
    }

    @Test("a relative socket path or a broken file is an error naming it; a missing --main-config too")
    func errors() throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.write("", to: tree.override)
        try tree.write("pst:\n    server:\n        unix: relative.sock\n", to: tree.main)
        #expect { try socket(tree.arguments()) } throws: { "\($0)".contains("not an absolute path") }
        try tree.write("pst:\n    server: [unclosed\n", to: tree.main)
        #expect { try socket(tree.arguments()) } throws: { "\($0)".contains(tree.main) }
        try "pst:\n    server:\n        unix: /tmp/p/x\u{0}/evil\n".write(toFile: tree.main, atomically: true, encoding: .utf8)
        #expect { try socket(tree.arguments()) } throws: { "\($0)".hasPrefix("\(tree.main): pst.server.unix") }
        try FileManager.default.removeItem(atPath: tree.main)
        #expect { try socket(tree.arguments()) } throws: { "\($0)".contains(tree.main) }
        // Named on the command line, a file must be usable even with --socket, as for kvmd's kvmd-pstrun.
        #expect { try socket(tree.arguments(["--socket", "/tmp/s.sock"])) } throws: { "\($0)".contains(tree.main) }
    }

    @Test("the built kvmd-pstrun finds a real daemon through --main-config alone", .enabled(if: RealMounts.enabled))
    func realDaemonThroughTheTree() async throws {
        try await withStorageDaemon { fixture, daemon in
            let tree = try Tree()
            defer { tree.remove() }
            try tree.write("pst:\n    server:\n        unix: \(daemon.socketPath)\n", to: tree.main)
            let result = try await onOwnThread {
                try SystemCommand.execute([
                    BuiltProducts.path(of: "kvmd-pstrun"), "--main-config", tree.main, "--override-dir", tree.overrideDirectory,
                    "--", "/bin/sh", "-c", "echo from-tree > \"$KVMD_PST_DATA/tree\"",
                ])
            }
            #expect(result.status == 0, "\(result.standardError)")
            #expect(try String(contentsOfFile: fixture.dataPath + "/tree", encoding: .utf8) == "from-tree\n")
        }
    }

    @Test("a socket path that is a regular file is named as such, not as a daemon that is not running (attack round)")
    func regularFileAtSocketPath() async throws {
        let tree = try Tree()
        defer { tree.remove() }
        try tree.write("not a socket", to: tree.directory + "/pst.sock")
        let result = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pstrun"), "--socket", tree.directory + "/pst.sock", "--", "true"])
        #expect(result.status == 1)
        #expect(result.standardError.contains("a regular file is there, not a socket"), "\(result.standardError)")
    }
}
