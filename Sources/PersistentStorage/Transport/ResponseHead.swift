import PersistentStorageProtocol

/// The head of an HTTP/1.x answer from the daemon: its status line, and a
/// walk over its fields. The client reads two answers, the upgrade's
/// (``WebSocketClientHandshake``) and `GET /state`'s (``StateRequest``), and
/// both read their heads with this.
///
/// Read as bytes, without a `String` until there is something to report:
/// splitting a head into `Substring` lines was a twentieth of the client's
/// CPU per session (Documentation/Benchmarks.md).
struct ResponseHead {
    /// Three digits, 100 to 999 (RFC 9112 4, RFC 9110 15).
    let statusCode: Int
    /// The reason phrase, at most 80 bytes of it, for messages.
    let reason: String
    /// Where the field lines start in the head.
    private let fieldsStart: Int

    enum Malformation: Error {
        /// Nothing but empty lines.
        case empty
        /// The first line is not `HTTP/1.x`, a space and a status code; it is
        /// given, at most 80 bytes of it.
        case notHTTP(String)

        /// What to tell the user, `subject` being the answer read
        /// ("the /state answer").
        func message(about subject: String) -> String {
            switch self {
            case .empty: "\(subject) is empty"
            case .notHTTP(let line): "\(subject) is not HTTP: \(line)"
            }
        }
    }

    /// Reads the status line of `head` (the bytes up to the blank line);
    /// empty lines before it are skipped, as RFC 9112 2.2 allows.
    init(parsing head: UnsafeBufferPointer<UInt8>) throws(Malformation) {
        var position = 0
        var firstLine: Range<Int>?
        repeat {
            firstLine = HTTPHeadScanning.nextLine(in: head, from: &position)
        } while firstLine?.isEmpty == true
        guard let line = firstLine else { throw .empty }
        let text = { (range: Range<Int>) in String(decoding: head[range].prefix(80), as: UTF8.self) }
        // "HTTP/1.x", spaces, the code, and the reason after a space.
        let versionEnd = head[line].firstIndex(of: UInt8(ascii: " ")) ?? line.upperBound
        let codeStart = head[versionEnd..<line.upperBound].firstIndex { $0 != UInt8(ascii: " ") } ?? line.upperBound
        let codeEnd = head[codeStart..<line.upperBound].firstIndex(of: UInt8(ascii: " ")) ?? line.upperBound
        let code = head[codeStart..<codeEnd]
        guard head[line.lowerBound..<versionEnd].starts(with: "HTTP/1.".utf8),
            code.count == 3, code.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
            code.first! != UInt8(ascii: "0")
        else { throw .notHTTP(text(line)) }
        statusCode = code.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        reason = codeEnd < line.upperBound ? text((codeEnd + 1)..<line.upperBound) : ""
        fieldsStart = position
    }

    /// Calls `visit` with each field's name and its trimmed value (a range
    /// of `head`), in order; lines without a colon are skipped.
    func forEachField<E: Error>(
        in head: UnsafeBufferPointer<UInt8>,
        _ visit: (_ name: Slice<UnsafeBufferPointer<UInt8>>, _ value: Range<Int>) throws(E) -> Void
    ) throws(E) {
        var position = fieldsStart
        while let line = HTTPHeadScanning.nextLine(in: head, from: &position) {
            guard let colon = head[line].firstIndex(of: UInt8(ascii: ":")) else { continue }
            try visit(head[line.lowerBound..<colon], HTTPHeadScanning.trimmed(colon + 1..<line.upperBound, in: head))
        }
    }
}
