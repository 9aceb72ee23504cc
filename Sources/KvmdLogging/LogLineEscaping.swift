extension String {
    /// The text with every control character written as an escape (`\n`,
    /// `\r`, `\t`, `\x1b`, `\u{85}`), so that it stays on its log line.
    ///
    /// Why: a peer decides much of what the daemon logs (its process name,
    /// which `/proc/PID/comm` lets hold a newline; the event types and
    /// request targets it sends). Written raw, a newline in any of them
    /// starts a line of the peer's choosing, such as a forged
    /// `-- ERROR -- ...`, and an escape sequence rewrites the terminal.
    /// C1 controls (U+0080-U+009F) count too: some terminals act on them.
    package var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: Self.needsEscape) else { return self }
        var escaped = ""
        escaped.reserveCapacity(utf8.count + 8)
        for scalar in unicodeScalars {
            guard Self.needsEscape(scalar) else {
                escaped.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": escaped += "\\n"
            case "\r": escaped += "\\r"
            case "\t": escaped += "\\t"
            case _ where scalar.value < 0x80: escaped += "\\x" + Self.hex(scalar.value, digits: 2)
            default: escaped += "\\u{" + Self.hex(scalar.value, digits: 2) + "}"
            }
        }
        return escaped
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        // U+2028 and U+2029 end a line for some log viewers too.
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    private static func hex(_ value: UInt32, digits: Int) -> String {
        let text = String(value, radix: 16)
        return String(repeating: "0", count: Swift.max(0, digits - text.count)) + text
    }
}
