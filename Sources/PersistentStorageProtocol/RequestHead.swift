/// An HTTP/1.x request head (RFC 9112 2-6), parsed strictly: the daemon's
/// only reader of requests. Anything the grammar does not allow is an error
/// rather than a guess, since whatever a lenient reader guesses another
/// reader may guess differently (request smuggling, RFC 9112 11.2):
///
/// - the request line is `method SP target SP HTTP/d.d CRLF`, single spaces,
///   a token for the method (case kept: `get` is not `GET`), a target in
///   origin-, absolute- or asterisk-form of RFC 3986's characters without `#`;
/// - every line ends in CRLF, no bare LF or CR; no control character but
///   tab anywhere; no empty line first (a reader skips those, RFC 9112 2.2);
/// - a field is `token ":" OWS value OWS`: no space before the colon, no
///   line folded onto the next (obs-fold);
/// - the body's framing is unambiguous: not both `Content-Length` and
///   `Transfer-Encoding`, one `Content-Length` of only digits,
///   `Transfer-Encoding` ending in `chunked`; and at most one `Host`.
///
/// ```swift
/// let head = try RequestHead(parsing: Array("GET /state?x HTTP/1.1\r\nHost: a\r\n\r\n".utf8))
/// head.path  // "/state"
/// ```
package struct RequestHead: Sendable, Equatable {
    package struct Field: Sendable, Equatable {
        package var name: String
        package var value: String
    }

    /// How a body follows the head (RFC 9112 6.3).
    package enum Body: Sendable, Equatable {
        case none
        case contentLength(Int)
        case chunked
    }

    /// Why bytes are not a request head.
    package enum ParseError: Error, Equatable, CustomStringConvertible {
        case malformedRequestLine
        /// `HTTP/d.d` with a major version other than 1.
        case unsupportedVersion
        case malformedField
        case tooManyFields
        /// Both framings, a `Content-Length` that is not one number, or a
        /// `Transfer-Encoding` that does not end in `chunked`.
        case ambiguousBody
        case duplicateHost

        package var description: String {
            switch self {
            case .malformedRequestLine: "a malformed request line"
            case .unsupportedVersion: "an HTTP version other than 1.x"
            case .malformedField: "a malformed header field"
            case .tooManyFields: "too many header fields"
            case .ambiguousBody: "an ambiguous body length (Content-Length, Transfer-Encoding)"
            case .duplicateHost: "more than one Host"
            }
        }
    }

    package var method: String
    /// The request target as sent.
    package var target: String
    /// `x` of `HTTP/1.x`.
    package var minorVersion: Int
    package var fields: [Field]
    package var body: Body

    /// The target's path: origin-form up to `?`, the path of an absolute-form
    /// target (`http://host/path?query`, which RFC 9112 3.2.2 says a server
    /// must accept), `*` for asterisk-form. Not percent-decoded.
    package var path: Substring {
        var rest = target[...]
        if let afterScheme = Self.endOfScheme(target.utf8) {
            rest = rest[String.Index(afterScheme, within: target)!...]
            rest = rest[(rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex)...]
            if rest.isEmpty || rest.first == "?" { return "/" }
        }
        return rest.prefix { $0 != "?" }
    }

    /// Where an absolute-form target's authority starts, after `scheme://`
    /// (RFC 3986 3.1: a letter, then letters, digits, `+`, `-`, `.`).
    private static func endOfScheme<Bytes: Collection<UInt8>>(_ target: Bytes) -> Bytes.Index? {
        guard let colon = target.firstIndex(of: UInt8(ascii: ":")), colon != target.startIndex,
            target[..<colon].enumerated().allSatisfy({ offset, byte in
                isLetter(byte) || (offset > 0 && (digit(byte) != nil || "+-.".utf8.contains(byte)))
            }),
            target[colon...].starts(with: "://".utf8)
        else { return nil }
        return target.index(colon, offsetBy: 3)
    }

    private static func isLetter(_ byte: UInt8) -> Bool {
        (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
    }

    /// The values of every field called `name` (lowercase), in order.
    package func values(of name: StaticString) -> [String] {
        fields.compactMap { HTTPHeadScanning.equalsIgnoringCase($0.name.utf8, name) ? $0.value : nil }
    }

    /// How many fields are called `name` (lowercase).
    private func count(of name: StaticString) -> Int {
        fields.reduce(0) { $0 + (HTTPHeadScanning.equalsIgnoringCase($1.name.utf8, name) ? 1 : 0) }
    }

    /// Whether a field called `name` (lowercase) lists `token` (lowercase)
    /// among its comma-separated values, in any case.
    package func hasToken(_ token: StaticString, inFieldsNamed name: StaticString) -> Bool {
        fields.contains { field in
            guard HTTPHeadScanning.equalsIgnoringCase(field.name.utf8, name) else { return false }
            var value = field.value
            return value.withUTF8 { bytes in
                HTTPHeadScanning.containsToken(token, in: 0..<bytes.count, of: bytes)
            }
        }
    }

    /// Parses `head`, which ends with its blank line (see
    /// ``HTTPHeadScanning/scanRequestHead(_:from:limit:)``).
    package init(parsing head: [UInt8], maximumFieldCount: Int = 256) throws(ParseError) {
        self = try head.withUnsafeBufferPointer { bytes throws(ParseError) in try RequestHead(parsing: bytes, maximumFieldCount: maximumFieldCount) }
    }

    /// The same, on the bytes in place. Not generic: the daemon calls it
    /// from another module, where a generic version runs unspecialized.
    package init(parsing head: UnsafeBufferPointer<UInt8>, maximumFieldCount: Int = 256) throws(ParseError) {
        var start = 0
        guard let firstEnd = Self.lineEnd(in: head, from: start) else { throw .malformedRequestLine }
        (method, target, minorVersion) = try Self.requestLine(UnsafeBufferPointer(rebasing: head[start..<firstEnd]))
        start = firstEnd + 2
        fields = []
        fields.reserveCapacity(12)
        while true {
            guard let end = Self.lineEnd(in: head, from: start) else { throw .malformedField }
            defer { start = end + 2 }
            if end == start { break }  // the blank line
            guard fields.count < maximumFieldCount else { throw .tooManyFields }
            let line = head[start..<end]
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > start,
                head[start..<colon].allSatisfy(Self.isTokenByte)
            else { throw .malformedField }
            let value = HTTPHeadScanning.trimmed(colon + 1..<end, in: head)
            guard head[value].allSatisfy(Self.isFieldValueByte) else { throw .malformedField }
            fields.append(Field(
                name: String(decoding: UnsafeBufferPointer(rebasing: head[start..<colon]), as: UTF8.self),
                value: String(decoding: UnsafeBufferPointer(rebasing: head[value]), as: UTF8.self)))
        }
        guard start == head.count else { throw .malformedField }
        body = .none
        guard count(of: "host") <= 1 else { throw .duplicateHost }
        body = try framing()
    }

    /// Where the line from `start` ends (its CR), if it ends in CRLF and
    /// holds no other CR or LF.
    private static func lineEnd(in head: UnsafeBufferPointer<UInt8>, from start: Int) -> Int? {
        guard start < head.count,
            let end = head[start...].firstIndex(where: { $0 == 13 || $0 == 10 }),
            head[end] == 13, end + 1 < head.count, head[end + 1] == 10
        else { return nil }
        return end
    }

    /// Why `line` (without its CRLF) is not a request line this type takes,
    /// or nil: lets a reader refuse a bad first line before the head ends.
    package static func requestLineError(_ line: UnsafeBufferPointer<UInt8>) -> ParseError? {
        do {
            _ = try requestLine(line)
            return nil
        } catch {
            return error
        }
    }

    private static func requestLine(_ line: UnsafeBufferPointer<UInt8>) throws(ParseError) -> (String, String, Int) {
        guard let firstSpace = line.firstIndex(of: UInt8(ascii: " ")),
            let secondSpace = line[(firstSpace + 1)...].firstIndex(of: UInt8(ascii: " "))
        else { throw .malformedRequestLine }
        let method = UnsafeBufferPointer(rebasing: line[..<firstSpace])
        let target = UnsafeBufferPointer(rebasing: line[(firstSpace + 1)..<secondSpace])
        let version = line[(secondSpace + 1)...]
        guard !method.isEmpty, method.allSatisfy(isTokenByte),
            !target.isEmpty, target.allSatisfy(isTargetByte),
            // origin-form, absolute-form or asterisk-form (RFC 9112 3.2);
            // authority-form is CONNECT's, which the daemon does not serve.
            target[0] == UInt8(ascii: "/") || endOfScheme(target) != nil || (target.count == 1 && target[0] == UInt8(ascii: "*")),
            version.count == 8, version.starts(with: "HTTP/".utf8), version[secondSpace + 7] == UInt8(ascii: "."),
            let major = digit(version[secondSpace + 6]), let minor = digit(version[secondSpace + 8])
        else { throw .malformedRequestLine }
        guard major == 1 else { throw .unsupportedVersion }
        return (String(decoding: method, as: UTF8.self), String(decoding: target, as: UTF8.self), minor)
    }

    private func framing() throws(ParseError) -> Body {
        let encodings = values(of: "transfer-encoding")
        let lengths = values(of: "content-length")
        if !encodings.isEmpty {
            guard lengths.isEmpty else { throw .ambiguousBody }
            let last = encodings.last!.utf8.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).last.map(Self.trimmed)
            guard let last, HTTPHeadScanning.equalsIgnoringCase(last, "chunked") else { throw .ambiguousBody }
            return .chunked
        }
        // One value, as llhttp insists too: RFC 9110 8.6 lets a recipient
        // refuse a repeated one, even with equal values.
        guard let digits = lengths.first?.utf8 else { return .none }
        // 18 digits cannot overflow an Int.
        guard lengths.count == 1, !digits.isEmpty, digits.count <= 18, digits.allSatisfy({ Self.digit($0) != nil })
        else { throw .ambiguousBody }
        let length = digits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        return length > 0 ? .contentLength(length) : .none
    }

    private static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte - UInt8(ascii: "0")) : nil
    }

    /// `bytes` without the spaces and tabs around a field value (OWS).
    private static func trimmed<Bytes: BidirectionalCollection<UInt8>>(_ bytes: Bytes) -> Bytes.SubSequence {
        let isSpace = { (byte: UInt8) in byte == 32 || byte == 9 }
        let start = bytes.firstIndex { !isSpace($0) } ?? bytes.endIndex
        let end = bytes.lastIndex { !isSpace($0) }.map(bytes.index(after:)) ?? start
        return bytes[start..<max(start, end)]
    }

    /// RFC 9110 5.6.2 `tchar`.
    package static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// RFC 3986's unreserved, reserved and `%`, without `#` (a fragment is
    /// never sent): what a request target may hold.
    private static func isTargetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "-._~:/?[]@!$&'()*+,;=%".utf8.contains(byte)
        }
    }

    /// RFC 9110 5.5: visible characters, obs-text, space and tab.
    private static func isFieldValueByte(_ byte: UInt8) -> Bool {
        byte == 9 || (byte >= 32 && byte != 127)
    }
}

extension HTTPHeadScanning {
    /// What ``scanRequestHead(_:from:limit:)`` found.
    package enum RequestHeadScan: Equatable {
        /// No end yet; scanning goes on from the position returned.
        case incomplete
        /// The head is the first `length` bytes.
        case complete(length: Int)
        /// A byte no request head may hold where it is: a control character
        /// other than tab, a bare LF or CR.
        case notARequestHead
        /// No end within `limit` bytes.
        case tooLarge
    }

    /// Scans `bytes` from `position` on for the blank line that ends a
    /// request head, and for what cannot be in one, so that garbage is
    /// refused as soon as it arrives rather than when the deadline runs out.
    /// Resumable: `position` is where the next call starts, so a head that
    /// arrives a byte at a time is scanned once, not once per byte.
    package static func scanRequestHead(_ bytes: UnsafeRawBufferPointer, from position: inout Int, limit: Int) -> RequestHeadScan {
        let end = min(bytes.count, limit)
        var index = position
        defer { position = index }
        while index < end {
            let byte = bytes[index]
            if byte == 10 {
                guard index > 0, bytes[index - 1] == 13 else { return .notARequestHead }
                if index >= 3, bytes[index - 2] == 10, bytes[index - 3] == 13 {
                    index += 1
                    return .complete(length: index)
                }
            } else if byte == 13 {
                guard index + 1 < bytes.count else { return .incomplete }  // the LF may come next
                guard bytes[index + 1] == 10 else { return .notARequestHead }
            } else if (byte < 32 && byte != 9) || byte == 127 {
                return .notARequestHead
            }
            index += 1
        }
        return bytes.count >= limit ? .tooLarge : .incomplete
    }
}
