import Testing

@testable import KvmdConfiguration
@testable import PersistentStorageDaemon

/// The daemon's own YAML subset: what kvmd's files hold, read the way
/// PyYAML reads it, and a clear error for the rest.
@Suite("kvmd YAML reader")
struct KvmdYAMLTests {
    @Test("other sections are skipped unread, whatever YAML they use")
    func skipsOtherSections() throws {
        let text = """
            %YAML 1.1
            ---
            # kvmd's override.yaml, more or less
            kvmd:
                gpio: &gpio
                    drivers: !include gpio.yaml
                    note: |
                        pst:
                          heartbeat: 99
                other: *gpio
            pst:   # ours
                heartbeat: 3   # seconds
                server: {unix: "/run/kvmd/p#st.sock", unix_mode: 0o660}
                remount_cmd: [/usr/bin/sudo, "--non-interactive", '{mode}']
            vnc:
              - a
              - b
            """
        let pst = try #require(try KvmdYAML.topLevelValue(of: "pst", in: text))
        #expect(pst["heartbeat"] == .scalar("3", plain: true))
        #expect(pst["server"]?["unix"] == .scalar("/run/kvmd/p#st.sock", plain: false))
        #expect(pst["server"]?["unix_mode"] == .scalar("0o660", plain: true))
        #expect(pst["remount_cmd"] == .sequence([
            .scalar("/usr/bin/sudo", plain: true), .scalar("--non-interactive", plain: false), .scalar("{mode}", plain: false),
        ]))
        #expect(try KvmdYAML.topLevelValue(of: "absent", in: text) == nil)
    }

    @Test("block lists, also at the key's indentation, quotes with escapes, and CRLF")
    func blockForms() throws {
        let text = "pst:\r\n  remount_cmd:\r\n  - \"a\\tb \\\"c\\\" \\u00e9\"\r\n  - 'it''s'\r\n  - plain text  \r\n  nested:\r\n    deeper:\r\n      - x\r\n"
        let pst = try #require(try KvmdYAML.topLevelValue(of: "pst", in: text))
        #expect(pst["remount_cmd"] == .sequence([
            .scalar("a\tb \"c\" é", plain: false), .scalar("it's", plain: false), .scalar("plain text", plain: true),
        ]))
        #expect(pst["nested"]?["deeper"] == .sequence([.scalar("x", plain: true)]))
    }

    @Test("an empty value, and the last of two same keys, as PyYAML reads them")
    func emptyAndRepeated() throws {
        #expect(try KvmdYAML.topLevelValue(of: "pst", in: "pst:\n") == .scalar("", plain: true))
        let pst = try #require(try KvmdYAML.topLevelValue(of: "pst", in: "pst:\n  heartbeat: 1\n  heartbeat: 2\n"))
        #expect(pst["heartbeat"] == .scalar("2", plain: true))
    }

    @Test("what the reader does not take is an error naming the line", arguments: [
        ("- a\n- b\n", 1, "the top level is not a mapping"),
        ("pst:\n  server: &s\n    unix: /x\n", 2, "anchors, aliases, tags and block scalars are not supported here"),
        ("pst:\n  remount_cmd: !cmd x\n", 2, "anchors, aliases, tags and block scalars are not supported here"),
        ("pst:\n  remount_cmd: [a,\n    b]\n", 2, "an unclosed '[' or '{' (inline lists and mappings must end on their line)"),
        ("pst:\n  unix: \"open\n", 2, "an unclosed quote"),
        ("pst:\n\theartbeat: 1\n", 2, "tabs cannot indent YAML"),
        ("pst:\n  heartbeat: 1\n    more: 2\n", 3, "a value on the key's line cannot continue on the next lines"),
        ("pst:\n  - a\n  b: c\n", 3, "unexpected indentation in a list"),
    ])
    func rejects(text: String, line: Int, message: String) {
        #expect(throws: KvmdYAML.SyntaxError(line: line, message: message)) {
            try KvmdYAML.topLevelValue(of: "pst", in: text)
        }
    }

    @Test("the configuration file as kvmd reads it: a quoted number is a number, modes may be quoted, a command string splits on commas")
    func configurationTypes() throws {
        #expect(try configuration(fromYAML: "pst:\n  server:\n    heartbeat: \"15\"\n").heartbeat == .seconds(15))
        #expect(throws: DaemonConfigurationError.self) { try configuration(fromYAML: "pst:\n  server:\n    heartbeat: .inf\n") }
        #expect(try configuration(fromYAML: "pst:\n  server:\n    unix_mode: '0640'\n").socketMode == 0o640)
        #expect(try configuration(fromYAML: "pst:\n  remount_cmd: /usr/bin/sudo, helper,\t{mode}\n").remountCommand == ["/usr/bin/sudo", "helper", "{mode}"])
        #expect { try configuration(fromYAML: "pst: 3\n") } throws: { String(describing: $0).contains("pst must be a mapping") }
    }

    @Test("nesting thousands of levels deep is an error naming the line, not a crash (attack round)", arguments: [
        "pst:\n    server: " + String(repeating: "[", count: 5000) + "\n",
        "pst:\n    server: " + String(repeating: "{a: ", count: 20000) + "\n",
        "pst:\n" + (1...200).map { String(repeating: " ", count: $0 * 2) + "k\($0):" }.joined(separator: "\n") + "\n",
    ])
    func deepNesting(text: String) throws {
        do {
            _ = try KvmdYAML.topLevelValue(of: "pst", in: text)
            Issue.record("accepted")
        } catch {
            #expect(error.description.hasSuffix("lists and mappings nest more than 64 levels deep"), "\(error)")
        }
        #expect(throws: Never.self) { try KvmdYAML.topLevelValue(of: "pst", in: "pst:\n    server: " + String(repeating: "[", count: 60) + String(repeating: "]", count: 60) + "\n") }
    }

    @Test("a byte order mark before the first key is not part of it (attack round: the pst section was ignored)")
    func byteOrderMark() throws {
        let overrides = try configuration(fromYAML: "\u{FEFF}pst:\n    server:\n        unix: /tmp/bom.sock\n")
        #expect(overrides.socketPath == "/tmp/bom.sock")
    }
}
