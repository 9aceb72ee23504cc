import Foundation
import PersistentStorageTestSupport
import Testing

/// Documentation/Configuration.md is the one place every option is explained:
/// it must name each option each executable's `--help` shows, and nothing else.
@Suite("Documentation/Configuration.md matches --help")
struct ConfigurationGuideTests {
    static let executables = ["kvmd-pst", "kvmd-pstrun", "kvmd-helper-pst-remount"]

    /// `--name` tokens in a text; `--help` and `--version` come with every command.
    static func options(in text: String) -> Set<String> {
        let pattern = /--[a-z][a-z0-9-]*[a-z0-9]/
        return Set(text.matches(of: pattern).map { String($0.output) }).subtracting(["--help", "--version"])
    }

    /// The part of the guide under `## name`, up to the next `## ` heading.
    static func section(for name: String, in guide: String) -> String? {
        var lines: [Substring] = []
        var inside = false
        for line in guide.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("## ") {
                inside = line.dropFirst(3).trimmingCharacters(in: .whitespaces).hasPrefix("`\(name)`")
                continue
            }
            if inside { lines.append(line) }
        }
        return lines.isEmpty ? nil : lines.joined(separator: "\n")
    }

    static func help(of executable: String) throws -> String {
        let result = try SystemCommand.execute([BuiltProducts.path(of: executable), "--help"])
        #expect(result.status == 0, "\(executable) --help exited with \(result.status): \(result.standardError)")
        return result.standardOutput
    }

    @Test("every option in --help is explained in the guide's section for that executable", arguments: executables)
    func everyOptionIsDocumented(executable: String) throws {
        let guide = try Repository.text("Documentation/Configuration.md")
        let section = try #require(Self.section(for: executable, in: guide), "no \"## `\(executable)`\" section")
        let helpOptions = Self.options(in: try Self.help(of: executable))
        #expect(!helpOptions.isEmpty)
        for option in helpOptions.sorted() {
            #expect(section.contains("`\(option)"), "\(option) of \(executable) is not in Documentation/Configuration.md")
        }
    }

    @Test("the guide names no option that --help does not have", arguments: executables)
    func noStaleOption(executable: String) throws {
        let guide = try Repository.text("Documentation/Configuration.md")
        let section = try #require(Self.section(for: executable, in: guide))
        // Only the tables' first column names options; prose may mention others' options.
        let rows = section.split(separator: "\n").filter { $0.hasPrefix("| `--") }
        let documented = Self.options(in: rows.map { String($0.split(separator: "|").first ?? "") }.joined(separator: "\n"))
        let helpOptions = Self.options(in: try Self.help(of: executable))
        #expect(documented.subtracting(helpOptions).isEmpty, "documented but not in --help: \(documented.subtracting(helpOptions).sorted())")
    }
}
