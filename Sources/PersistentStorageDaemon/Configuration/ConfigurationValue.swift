import Glibc

/// Parses and writes setting values the way a user and kvmd write them.
public enum ConfigurationValue {
    /// A socket's file mode in octal, as chmod(1) takes it: `660`, `0660` or
    /// `0o660`, at most `0777` (a socket has no use for setuid, setgid or sticky bits).
    public static func octalMode(_ text: String) throws(DaemonConfigurationError) -> mode_t {
        var digits = Substring(text)
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, let value = mode_t(digits, radix: 8), value <= 0o777 else {
            throw DaemonConfigurationError("'\(text)' is not an octal file mode from 0 to 0777, such as 0660")
        }
        return value
    }

    /// A file mode in YAML as kvmd reads it (YAML 1.1): `0660` is octal,
    /// `0x1b0` hexadecimal, `660` decimal. `0o660` (YAML 1.2, and how kvmd
    /// prints it) is taken as octal too rather than refused.
    static func yamlFileMode(_ text: String, name: String) throws(DaemonConfigurationError) -> mode_t {
        let value: mode_t?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            value = mode_t(text.dropFirst(2), radix: 16)
        } else if text.hasPrefix("0") && text.count > 1 {
            value = try? octalMode(text)
        } else {
            value = mode_t(text)
        }
        guard let value, value <= 0o777 else {
            var message = "\(name): '\(text)' is not a file mode from 0 to 0777"
            if !text.hasPrefix("0"), !text.isEmpty, text.allSatisfy({ ("0"..."7").contains($0) }) {
                message += " (YAML reads it as a decimal number: write 0\(text))"
            }
            throw DaemonConfigurationError(message)
        }
        return value
    }

    /// kvmd's booleans: `true`/`yes`/`1` or `false`/`no`/`0`, any case.
    static func kvmdBool(_ text: String, name: String) throws(DaemonConfigurationError) -> Bool {
        switch text.lowercased() {
        case "1", "true", "yes": return true
        case "0", "false", "no": return false
        default: throw DaemonConfigurationError("\(name): '\(text)' is not true or false")
        }
    }

    /// A command line split on whitespace (no quoting: put arguments with
    /// spaces in the configuration file's list form instead).
    public static func commandLine(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }

    /// A command written as one string in kvmd's YAML: split on commas and
    /// tabs (not spaces), each word stripped, empty ones dropped.
    static func kvmdCommand(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == "," || $0 == "\t" })
            .map { String($0).trimmingWhitespace() }
            .filter { !$0.isEmpty }
    }

    /// `15`, `0.5`: seconds as the help and `--dump-config` show them.
    static func seconds(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        guard attoseconds != 0 else { return String(seconds) }
        let milliseconds = seconds * 1000 + attoseconds / 1_000_000_000_000_000
        var text = String(milliseconds / 1000) + "." + String(String(milliseconds % 1000 + 1000).dropFirst())
        while text.hasSuffix("0") { text.removeLast() }
        return text
    }

    /// A YAML scalar that reads back as `text`, in PyYAML and here: an
    /// absolute path of safe characters plain, anything else double-quoted
    /// with its control characters escaped (so `null`, `yes`, `0660`, `a #b`
    /// stay strings).
    static func yamlQuoted(_ text: String) -> String {
        let plain = text.hasPrefix("/") && text.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || "/-_.".utf8.contains(byte)
        }
        if plain { return text }
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\t": quoted += "\\t"
            case _ where Self.mustBeEscapedInYAML(scalar):
                let hex = String(scalar.value, radix: 16)
                let digits = scalar.value <= 0xFF ? 2 : 4
                quoted += (digits == 2 ? "\\x" : "\\u") + String(repeating: "0", count: digits - hex.count) + hex
            default: quoted.unicodeScalars.append(scalar)
            }
        }
        return quoted + "\""
    }

    /// What a YAML reader refuses raw (C0 and C1 controls, DEL, U+FFFE and
    /// U+FFFF: outside YAML 1.1's printable set, which PyYAML checks), or
    /// would read as something else (NEL, U+2028 and U+2029 are line
    /// breaks, folded to a space inside quotes; a byte order mark may be dropped).
    private static func mustBeEscapedInYAML(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F...0x9F, 0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF: true
        default: false
        }
    }
}
