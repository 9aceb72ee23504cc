/// Just enough YAML to read one top-level section of a kvmd configuration
/// file: block mappings and sequences, flow sequences and mappings on one
/// line, plain and quoted scalars, and comments. The other top-level
/// sections are skipped by their indentation, unread, so whatever they hold
/// (anchors, tags, block scalars) does not matter.
///
/// Written for the daemon instead of depending on a YAML library: the one it
/// used brought all of Foundation with it, about 4.5 MiB of the daemon's
/// resident memory (Documentation/Benchmarks.md). Inside the section that
/// is read, anything beyond this subset is an error that says so, never a
/// guess.
///
/// ```swift
/// let pst = try KvmdYAML.topLevelValue(of: "pst", in: text)   // nil: no pst: section
/// ```
package enum KvmdYAML {
    package indirect enum Node: Equatable, Sendable {
        /// `plain` is false for a quoted scalar, which is always a string.
        case scalar(String, plain: Bool)
        case sequence([Node])
        case mapping([Entry])

        package subscript(key: String) -> Node? {
            guard case .mapping(let entries) = self else { return nil }
            return entries.last { $0.key == key }?.value
        }

        package var isMapping: Bool {
            if case .mapping = self { return true }
            return false
        }
    }

    package struct Entry: Equatable, Sendable {
        package var key: String
        package var value: Node
    }

    package struct SyntaxError: Error, CustomStringConvertible, Equatable {
        package var line: Int
        package var message: String
        package var description: String { "line \(line): \(message)" }
    }

    /// The value of the top-level `key`, or nil if the document has no such key.
    /// - Throws: ``SyntaxError`` if the top level is not a mapping, or the
    ///   section that is read leaves the subset.
    package static func topLevelValue(of key: String, in text: String) throws(SyntaxError) -> Node? {
        let lines = try significantLines(of: text)
        var index = 0
        var found: Node?
        while index < lines.count {
            let line = lines[index]
            guard line.indent == 0, !line.isSequenceEntry else {
                throw SyntaxError(line: line.number, message: "the top level is not a mapping")
            }
            let (entryKey, rest) = try splitEntry(line)
            index += 1
            // The entry's block: every more-indented line, and a sequence
            // written at the key's own indentation.
            let start = index
            while index < lines.count, lines[index].indent > 0 || lines[index].isSequenceEntry { index += 1 }
            guard entryKey == key else { continue }
            let block = Array(lines[start..<index])
            if rest.isEmpty {
                found = block.isEmpty ? .scalar("", plain: true) : try parseBlock(block)
            } else {
                found = try parseInline(rest, line: line.number)
                guard block.isEmpty else {
                    throw SyntaxError(line: block[0].number, message: "a value on the key's line cannot continue on the next lines")
                }
            }
        }
        return found
    }

    // MARK: - Lines

    struct Line {
        var number: Int
        var indent: Int
        /// Without indentation, comment and trailing blanks; never empty.
        var content: Substring

        var isSequenceEntry: Bool { content == "-" || content.hasPrefix("- ") }
    }

    private static func significantLines(of text: String) throws(SyntaxError) -> [Line] {
        var lines: [Line] = []
        // A byte order mark may start a YAML stream; it is not part of the
        // first key (with it, `pst:` was not found and the section ignored).
        let text = text.first == "\u{FEFF}" ? Substring(text.dropFirst()) : Substring(text)
        // "\r\n" is one Character in Swift, so a split on "\n" alone would not see it.
        let rawLines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        for (offset, raw) in rawLines.enumerated() {
            let number = offset + 1
            var rawLine = raw
            if rawLine.last == "\r" { rawLine = rawLine.dropLast() }
            let indent = rawLine.prefix { $0 == " " }.count
            var content = withoutComment(rawLine.dropFirst(indent))
            while let last = content.last, last == " " || last == "\t" { content = content.dropLast() }
            if content.isEmpty { continue }
            if content.first == "\t" {
                throw SyntaxError(line: number, message: "tabs cannot indent YAML")
            }
            if indent == 0 && content == "---" && !lines.isEmpty {
                throw SyntaxError(line: number, message: "a second YAML document ('---'); kvmd reads files of one document")
            }
            if indent == 0 && (content == "---" || content == "..." || content.hasPrefix("%")) { continue }
            lines.append(Line(number: number, indent: indent, content: content))
        }
        return lines
    }

    /// `text` up to a `#` that starts a comment: at the start or after a
    /// blank, and outside quotes.
    private static func withoutComment(_ text: Substring) -> Substring {
        var quote: Character?
        var previous: Character = " "
        for index in text.indices {
            let character = text[index]
            if let open = quote {
                if character == open { quote = nil }
            } else if character == "\"" || character == "'" {
                if previous == " " || previous == "\t" || previous == "[" || previous == "{" || previous == "," || previous == ":" || previous == "-" {
                    quote = character
                }
            } else if character == "#" && (previous == " " || previous == "\t") {
                return text[..<index]
            }
            previous = character
        }
        return text
    }

    // MARK: - Blocks

    /// How deep lists and mappings may nest. kvmd's files nest a handful of
    /// levels; the parser recurses once per level, and thousands of levels
    /// (`[[[[...`) overflowed the stack instead of failing with a message.
    static let maximumDepth = 64

    private static func checkDepth(_ depth: Int, line: Int) throws(SyntaxError) {
        guard depth <= maximumDepth else {
            throw SyntaxError(line: line, message: "lists and mappings nest more than \(maximumDepth) levels deep")
        }
    }

    /// A block node: the lines at the first line's indentation start its entries.
    private static func parseBlock(_ lines: [Line], depth: Int = 1) throws(SyntaxError) -> Node {
        try checkDepth(depth, line: lines[0].number)
        let indent = lines[0].indent
        if lines[0].isSequenceEntry {
            return try parseSequence(lines, indent: indent, depth: depth)
        }
        var entries: [Entry] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            guard line.indent == indent, !line.isSequenceEntry else {
                throw SyntaxError(line: line.number, message: "unexpected indentation")
            }
            let (key, rest) = try splitEntry(line)
            index += 1
            let start = index
            while index < lines.count,
                lines[index].indent > indent || (lines[index].indent == indent && lines[index].isSequenceEntry) {
                index += 1
            }
            let block = Array(lines[start..<index])
            let value: Node
            if rest.isEmpty {
                value = block.isEmpty ? .scalar("", plain: true) : try parseBlock(block, depth: depth + 1)
            } else {
                value = try parseInline(rest, line: line.number, depth: depth)
                guard block.isEmpty else {
                    throw SyntaxError(line: block[0].number, message: "a value on the key's line cannot continue on the next lines")
                }
            }
            entries.append(Entry(key: key, value: value))
        }
        return .mapping(entries)
    }

    private static func parseSequence(_ lines: [Line], indent: Int, depth: Int) throws(SyntaxError) -> Node {
        var items: [Node] = []
        var index = 0
        while index < lines.count {
            let line = lines[index]
            guard line.indent == indent, line.isSequenceEntry else {
                throw SyntaxError(line: line.number, message: "unexpected indentation in a list")
            }
            let rest = line.content.dropFirst().drop { $0 == " " }
            index += 1
            let start = index
            while index < lines.count, lines[index].indent > indent { index += 1 }
            let block = Array(lines[start..<index])
            if rest.isEmpty {
                items.append(block.isEmpty ? .scalar("", plain: true) : try parseBlock(block, depth: depth + 1))
            } else {
                guard block.isEmpty, entryColon(in: rest) == nil else {
                    throw SyntaxError(line: line.number, message: "only plain values are supported in this list")
                }
                items.append(try parseInline(rest, line: line.number, depth: depth))
            }
        }
        return .sequence(items)
    }

    /// `key: rest` (or `key:`), the key plain or quoted.
    private static func splitEntry(_ line: Line) throws(SyntaxError) -> (key: String, rest: Substring) {
        guard let colon = entryColon(in: line.content) else {
            throw SyntaxError(line: line.number, message: "expected 'key: value'")
        }
        var keyText = line.content[..<colon]
        while keyText.last == " " { keyText = keyText.dropLast() }
        let key: String
        if let quote = keyText.first, quote == "\"" || quote == "'" {
            var reader = InlineReader(text: keyText, line: line.number, depth: 0)
            guard case .scalar(let text, _) = try reader.value(), reader.atEnd else {
                throw SyntaxError(line: line.number, message: "a key must be a string")
            }
            key = text
        } else {
            guard !keyText.isEmpty, !"[{&*!|>?".contains(keyText.first!) else {
                throw SyntaxError(line: line.number, message: "unsupported key '\(keyText)'")
            }
            key = String(keyText)
        }
        return (key, line.content[line.content.index(after: colon)...].drop { $0 == " " })
    }

    /// The colon that ends a mapping key: followed by a blank or the end,
    /// outside quotes and brackets.
    private static func entryColon(in text: Substring) -> Substring.Index? {
        var quote: Character?
        var depth = 0
        for index in text.indices {
            let character = text[index]
            if let open = quote {
                if character == open { quote = nil }
                continue
            }
            switch character {
            case "\"", "'": if index == text.startIndex || depth > 0 || text[text.index(before: index)] == " " { quote = character }
            case "[", "{": depth += 1
            case "]", "}": depth -= 1
            case ":" where depth == 0:
                let next = text.index(after: index)
                if next == text.endIndex || text[next] == " " { return index }
            default: break
            }
        }
        return nil
    }

    private static func parseInline(_ text: Substring, line: Int, depth: Int = 0) throws(SyntaxError) -> Node {
        var reader = InlineReader(text: text, line: line, depth: depth)
        let value = try reader.value()
        guard reader.atEnd else { throw SyntaxError(line: line, message: "unexpected text after a value") }
        return value
    }

    // MARK: - Values on one line

    /// Flow collections and scalars within one line.
    private struct InlineReader {
        let text: Substring
        let line: Int
        var index: Substring.Index
        /// Levels of nesting around the current value.
        var depth: Int

        init(text: Substring, line: Int, depth: Int) {
            self.text = text
            self.line = line
            self.depth = depth
            index = text.startIndex
        }

        var atEnd: Bool { index == text.endIndex }

        private var current: Character? { index < text.endIndex ? text[index] : nil }

        private mutating func skipBlanks() {
            while let character = current, character == " " || character == "\t" { index = text.index(after: index) }
        }

        private func error(_ message: String) -> SyntaxError { SyntaxError(line: line, message: message) }

        /// One value; inside a flow collection (`inFlow`) a plain scalar ends at `,` `]` `}`.
        mutating func value(inFlow: Bool = false) throws(SyntaxError) -> Node {
            skipBlanks()
            guard let first = current else {
                if inFlow { throw error("an unclosed '[' or '{' (inline lists and mappings must end on their line)") }
                return .scalar("", plain: true)
            }
            let node: Node
            switch first {
            case "[": node = try sequence()
            case "{": node = try mapping()
            case "\"": node = .scalar(try doubleQuoted(), plain: false)
            case "'": node = .scalar(try singleQuoted(), plain: false)
            case "&", "*", "!", "|", ">", "@", "`", "%":
                throw error("anchors, aliases, tags and block scalars are not supported here")
            default: node = .scalar(plain(inFlow: inFlow), plain: true)
            }
            skipBlanks()
            return node
        }

        private mutating func plain(inFlow: Bool) -> String {
            let start = index
            while let character = current {
                if inFlow && (character == "," || character == "]" || character == "}") { break }
                if inFlow && character == ":" {
                    let next = text.index(after: index)
                    if next == text.endIndex || text[next] == " " { break }
                }
                index = text.index(after: index)
            }
            var value = text[start..<index]
            while let last = value.last, last == " " || last == "\t" { value = value.dropLast() }
            return String(value)
        }

        private mutating func sequence() throws(SyntaxError) -> Node {
            depth += 1
            defer { depth -= 1 }
            try KvmdYAML.checkDepth(depth, line: line)
            index = text.index(after: index)
            var items: [Node] = []
            skipBlanks()
            if current == "]" {
                index = text.index(after: index)
                return .sequence(items)
            }
            while true {
                items.append(try value(inFlow: true))
                switch current {
                case ",": index = text.index(after: index)
                case "]":
                    index = text.index(after: index)
                    return .sequence(items)
                default: throw error("an unclosed '[' or '{' (inline lists and mappings must end on their line)")
                }
            }
        }

        private mutating func mapping() throws(SyntaxError) -> Node {
            depth += 1
            defer { depth -= 1 }
            try KvmdYAML.checkDepth(depth, line: line)
            index = text.index(after: index)
            var entries: [Entry] = []
            skipBlanks()
            if current == "}" {
                index = text.index(after: index)
                return .mapping(entries)
            }
            while true {
                guard case .scalar(let key, _) = try value(inFlow: true) else { throw error("a key must be a string") }
                guard current == ":" else { throw error("expected ':' after '\(key)'") }
                index = text.index(after: index)
                entries.append(Entry(key: key, value: try value(inFlow: true)))
                switch current {
                case ",": index = text.index(after: index)
                case "}":
                    index = text.index(after: index)
                    return .mapping(entries)
                default: throw error("an unclosed '[' or '{' (inline lists and mappings must end on their line)")
                }
            }
        }

        private mutating func singleQuoted() throws(SyntaxError) -> String {
            index = text.index(after: index)
            var result = ""
            while let character = current {
                index = text.index(after: index)
                if character == "'" {
                    guard current == "'" else { return result }
                    index = text.index(after: index)
                }
                result.append(character)
            }
            throw error("an unclosed quote")
        }

        private mutating func doubleQuoted() throws(SyntaxError) -> String {
            index = text.index(after: index)
            var result = ""
            while let character = current {
                index = text.index(after: index)
                switch character {
                case "\"": return result
                case "\\":
                    guard let escaped = current else { throw error("an unclosed quote") }
                    index = text.index(after: index)
                    switch escaped {
                    case "\\", "\"", "/": result.append(escaped)
                    case "n": result.append("\n")
                    case "t": result.append("\t")
                    case "r": result.append("\r")
                    case "0": result.append("\0")
                    case "x": result.unicodeScalars.append(try hexScalar(digits: 2))
                    case "u": result.unicodeScalars.append(try hexScalar(digits: 4))
                    case "U": result.unicodeScalars.append(try hexScalar(digits: 8))
                    default: throw error("the escape '\\\(escaped)' is not supported")
                    }
                default: result.append(character)
                }
            }
            throw error("an unclosed quote")
        }

        private mutating func hexScalar(digits: Int) throws(SyntaxError) -> Unicode.Scalar {
            guard let end = text.index(index, offsetBy: digits, limitedBy: text.endIndex),
                let value = UInt32(text[index..<end], radix: 16), let scalar = Unicode.Scalar(value)
            else { throw error("a bad \\x, \\u or \\U escape") }
            index = end
            return scalar
        }
    }
}
