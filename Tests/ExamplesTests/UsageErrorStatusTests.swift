import Foundation
import PersistentStorageTestSupport
import Testing

/// One exit status for a usage error across the three executables, the one
/// Configuration.md documents for each.
@Suite("Usage errors exit with the one documented status")
struct UsageErrorStatusTests {
    static let documented: Int32 = 2

    @Test("kvmd-pst, kvmd-pstrun and kvmd-helper-pst-remount exit 2 on an unknown option and on a bad value", arguments: [
        ["kvmd-pst", "--bogus"],
        ["kvmd-pst", "--heartbeat", "soon"],
        ["kvmd-pst", "--log-level", "loud"],
        ["kvmd-pstrun", "--bogus", "--", "true"],
        ["kvmd-pstrun", "--timeout", "1e300", "--", "true"],
        ["kvmd-helper-pst-remount", "--bogus", "rw"],
        ["kvmd-helper-pst-remount", "sideways"],
    ])
    func exitStatus(words: [String]) throws {
        let result = try SystemCommand.execute([BuiltProducts.path(of: words[0])] + words.dropFirst())
        #expect(result.status == Self.documented, "\(words.joined(separator: " ")): \(result.standardError)")
        #expect(!result.standardError.isEmpty)
    }

    @Test("Configuration.md gives that status for each executable")
    func documentedInConfigurationGuide() throws {
        let guide = try String(
            contentsOf: URL(filePath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .appending(path: "Documentation/Configuration.md"),
            encoding: .utf8)
        for executable in ["kvmd-pst", "kvmd-pstrun", "kvmd-helper-pst-remount"] {
            let section = guide.components(separatedBy: "## `\(executable)`").dropFirst().first?.components(separatedBy: "\n## ").first ?? ""
            #expect(section.contains("`\(Self.documented)` usage error"), "the \(executable) section does not document it")
        }
    }
}
