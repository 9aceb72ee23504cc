import Foundation
import PersistentStorageDaemon
import Testing

/// The settings table of Documentation/Configuration.md is made from the
/// settings' declarations (`DaemonSetting`): names, kvmd keys, defaults,
/// ranges and explanations are written once. `PST_WRITE_DOCS=1` rewrites it.
@Suite("Configuration.md's settings table is the declarations'")
struct SettingsTableTests {
    static let header = "| option | kvmd key | default | what it does |"

    @Test("the table under `kvmd-pst` is DaemonSetting.markdownTable, row for row")
    func tableMatchesDeclarations() throws {
        let path = Repository.path("Documentation/Configuration.md")
        let guide = try String(contentsOfFile: path, encoding: .utf8)
        var lines = guide.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: Self.header), "no settings table with the header \(Self.header)")
        let end = lines[start...].firstIndex { !$0.hasPrefix("|") } ?? lines.endIndex
        let documented = lines[start..<end].joined(separator: "\n") + "\n"
        let declared = DaemonSetting.markdownTable
        if documented != declared, ProcessInfo.processInfo.environment["PST_WRITE_DOCS"] == "1" {
            lines.replaceSubrange(start..<end, with: declared.split(separator: "\n").map(String.init))
            try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
            return
        }
        #expect(documented == declared, "Documentation/Configuration.md's table differs; run the test with PST_WRITE_DOCS=1 to rewrite it")
    }

    @Test("every setting with an option has a kvmd key or says why not, and no two share an option or key")
    func declarationsAreDistinct() {
        let options = DaemonSetting.all.compactMap(\.option)
        let keys = DaemonSetting.all.compactMap(\.kvmdKeyText)
        #expect(Set(options).count == options.count)
        #expect(Set(keys).count == keys.count)
        #expect(DaemonSetting.all.allSatisfy { $0.option != nil || $0.kvmdKey != nil })
    }
}
