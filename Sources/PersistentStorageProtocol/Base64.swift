/// Base64 (RFC 4648 4, with padding) of a few bytes: the WebSocket key and
/// accept value. Foundation's `Data.base64EncodedString()` did the same, but
/// in a fresh process (every `kvmd-pstrun`) its first use set up more of
/// Foundation than the sixteen or twenty bytes are worth.
package enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    package static func isAlphabetByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
            UInt8(ascii: "+"), UInt8(ascii: "/"):
            true
        default:
            false
        }
    }

    package static func encoded(_ bytes: [UInt8]) -> String {
        var text: [UInt8] = []
        text.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let remaining = bytes.count - index
            let group = UInt32(bytes[index]) << 16
                | (remaining > 1 ? UInt32(bytes[index + 1]) << 8 : 0)
                | (remaining > 2 ? UInt32(bytes[index + 2]) : 0)
            for position in 0..<4 {
                // A group of one byte gives two characters, of two three.
                if position > remaining {
                    text.append(UInt8(ascii: "="))
                } else {
                    text.append(alphabet[Int(group >> UInt32(18 - 6 * position)) & 0x3F])
                }
            }
            index += 3
        }
        return String(decoding: text, as: UTF8.self)
    }
}
