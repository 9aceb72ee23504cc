import PersistentStorageProtocol
import NIOCore
import NIOWebSocket
import Testing

@testable import PersistentStorage

/// What a close frame is answered with, and what counts as a key (RFC 6455
/// 4.2.1, 5.5.1, 7.4); the daemon tests both ways in against the real thing.
@Suite("WebSocket close codes and keys")
struct WebSocketCloseAnswerTests {
    static func answer(_ bytes: [UInt8]) -> Int {
        var buffer = ByteBuffer()
        buffer.write(webSocketErrorCode: WebSocketCloseAnswer.code(answering: ByteBuffer(bytes: bytes)))
        return Int(buffer.readInteger(as: UInt16.self) ?? 0)
    }

    @Test("a valid close is echoed; no payload is a plain 1000")
    func validClosesAreEchoed() {
        #expect(Self.answer([]) == 1000)
        for code in [1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999] {
            #expect(Self.answer([UInt8(code >> 8), UInt8(code & 0xFF)] + Array("why".utf8)) == code, "\(code)")
        }
    }

    @Test("codes that may not be sent, a 1-byte payload and a reason that is not UTF-8 fail the connection")
    func brokenClosesFail() {
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            #expect(Self.answer([UInt8(code >> 8), UInt8(code & 0xFF)]) == 1002, "\(code)")
        }
        #expect(Self.answer([0x03]) == 1002)
        #expect(Self.answer([0x03, 0xE8, 0xC3, 0x28]) == 1007)
    }

    @Test("a key is the base64 of exactly 16 bytes")
    func keys() {
        #expect(WebSocketAccept.isValidKey("dGhlIHNhbXBsZSBub25jZQ==".utf8))
        for key in ["", "abc=", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZ!==",
                    "dGhlIHNhbXBsZSBub25jZQ==AAAA", "dGhlIHNhbXBsZSBub25j ZQ="] {
            #expect(!WebSocketAccept.isValidKey(key.utf8), "\(key)")
        }
    }
}
