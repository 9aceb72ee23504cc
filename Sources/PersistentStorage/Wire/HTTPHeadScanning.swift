import NIOCore

/// The two byte-level steps both ends of `/ws` need to read an HTTP head
/// without an HTTP parser: where it ends, and header names compared without
/// regard to case. For the package's own handshake code, not its API.
package enum HTTPHeadScanning {
    /// The length of the head at the start of `buffer`, its blank line
    /// included, if it ends within `limit` bytes.
    package static func headLength(in buffer: ByteBuffer, limit: Int = .max) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            let end = min(bytes.count, limit)
            guard end >= 4 else { return nil }
            for index in 3..<end
            where bytes[index] == UInt8(ascii: "\n") && bytes[index - 1] == UInt8(ascii: "\r")
                && bytes[index - 2] == UInt8(ascii: "\n") && bytes[index - 3] == UInt8(ascii: "\r") {
                return index + 1
            }
            return nil
        }
    }

    /// Whether `text` is `lowercase` with any ASCII letters in either case.
    package static func equalsIgnoringCase(_ text: some Collection<UInt8>, _ lowercase: StaticString) -> Bool {
        let word = UnsafeBufferPointer(start: lowercase.utf8Start, count: lowercase.utf8CodeUnitCount)
        return text.count == word.count && zip(text, word).allSatisfy { ($0 >= 65 && $0 <= 90 ? $0 + 32 : $0) == $1 }
    }
}
