import NIOCore

/// The byte-level steps both ends of `/ws` need to read an HTTP head without
/// an HTTP parser: where it ends, its lines, header names and values compared
/// without regard to case. For the package's own handshake code, not its API.
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
        guard text.count == lowercase.utf8CodeUnitCount else { return false }
        var expected = lowercase.utf8Start
        for byte in text {
            guard foldedToLowercase(byte) == expected.pointee else { return false }
            expected += 1
        }
        return true
    }

    /// The same for a slice of raw bytes, not generic: the daemon calls this
    /// from another module, where the generic version ran unspecialized (a
    /// `zip` whose element tuples were looked up at run time) and took a fifth
    /// of its CPU time per session.
    package static func equalsIgnoringCase(_ text: Slice<UnsafeBufferPointer<UInt8>>, _ lowercase: StaticString) -> Bool {
        guard text.count == lowercase.utf8CodeUnitCount else { return false }
        let word = lowercase.utf8Start
        var offset = 0
        for index in text.startIndex..<text.endIndex {
            guard foldedToLowercase(text.base[index]) == word[offset] else { return false }
            offset += 1
        }
        return true
    }

    private static func foldedToLowercase(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    /// The next line of `head` from `start` on, split at LF and without its
    /// CR, and moves `start` past it; nil after the last. Runs of bare LFs
    /// yield no lines; a line that was only CR comes out empty.
    package static func nextLine(in head: UnsafeBufferPointer<UInt8>, from start: inout Int) -> Range<Int>? {
        while start < head.count && head[start] == UInt8(ascii: "\n") { start += 1 }
        guard start < head.count else { return nil }
        let lineStart = start
        start = head[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? head.count
        let hasCR = start > lineStart && head[start - 1] == UInt8(ascii: "\r")
        return lineStart..<(hasCR ? start - 1 : start)
    }

    /// Whether a comma-separated header value has `token`, in any case.
    package static func containsToken(_ token: StaticString, in value: Range<Int>, of bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        var start = value.lowerBound
        while start <= value.upperBound {
            let end = bytes[start..<value.upperBound].firstIndex(of: UInt8(ascii: ",")) ?? value.upperBound
            if equalsIgnoringCase(bytes[trimmed(start..<end, in: bytes)], token) { return true }
            start = end + 1
        }
        return false
    }

    /// `range` without the spaces and tabs HTTP allows around a header value.
    package static func trimmed(_ range: Range<Int>, in bytes: UnsafeBufferPointer<UInt8>) -> Range<Int> {
        var lower = range.lowerBound
        var upper = range.upperBound
        while lower < upper, bytes[lower] == 32 || bytes[lower] == 9 { lower += 1 }
        while upper > lower, bytes[upper - 1] == 32 || bytes[upper - 1] == 9 { upper -= 1 }
        return lower..<upper
    }
}
