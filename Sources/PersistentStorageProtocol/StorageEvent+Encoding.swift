extension StorageEvent {
    /// The frame text, with sorted keys like the reference daemon: byte for
    /// byte what `JSONEncoder` with `.sortedKeys` and `.withoutEscapingSlashes`
    /// gives (`EventEncodingTests` holds the two together). By hand because
    /// `JSONEncoder` was the costliest step of the daemon's send
    /// (Documentation/Benchmarks.md, third round).
    package func encodedText() -> String {
        var text = "{\"event\":"
        if case .storage(let status) = self { text.reserveCapacity(96 + status.data.path.utf8.count) }
        switch self {
        case .storage(let status):
            text += "{\"clients\":"
            text += String(status.clients)
            text += ",\"data\":{\"path\":"
            Self.appendJSONString(status.data.path, to: &text)
            text += ",\"write_allowed\":"
            text += status.data.writeAllowed ? "true" : "false"
            text += "}}"
        default:
            text += "{}"
        }
        text += ",\"event_type\":"
        Self.appendJSONString(eventType, to: &text)
        text += "}"
        return text
    }

    /// A JSON string literal, escaped the way `JSONEncoder` escapes it.
    private static func appendJSONString(_ string: String, to text: inout String) {
        text += "\""
        // Paths and event types rarely need escaping: those go in whole
        // (the daemon encodes one event per new session).
        let needsEscaping = string.utf8.contains { $0 < 0x20 || $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") }
        guard needsEscaping else {
            text += string
            text += "\""
            return
        }
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": text += "\\\""
            case "\\": text += "\\\\"
            case "\n": text += "\\n"
            case "\r": text += "\\r"
            case "\t": text += "\\t"
            case "\u{8}": text += "\\b"
            case "\u{C}": text += "\\f"
            case "\u{0}"..."\u{1F}":
                let hex = String(scalar.value, radix: 16)
                text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: text.unicodeScalars.append(scalar)
            }
        }
        text += "\""
    }
}
