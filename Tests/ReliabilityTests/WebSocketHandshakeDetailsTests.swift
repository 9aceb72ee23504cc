import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// RFC 6455's finer points, for `GET /ws` and for `GET /ws?via=query`
    /// (a query is ignored, as the reference's aiohttp does).
    @Suite("WebSocket handshake and close details", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
    struct WebSocketHandshakeDetailsTests {
        typealias Frame = RawWebSocketFrame
        static let targets = ["/ws", "/ws?via=query"]
        static let seed = TestParameter.seed("PST_HOSTILE_SEED", default: 0x5EED_0007)

        static func upgradeHeaders(key: String) -> [(String, String)] {
            [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
        }

        @Test("a close frame is echoed only when its code may be sent; 1005, 999, 1-byte payloads and bad UTF-8 fail the connection")
        func closeCodes() async throws {
            let cases: [(name: String, payload: [UInt8], answer: UInt16)] = [
                ("no payload", [], 1000),
                ("1000", [0x03, 0xE8], 1000),
                ("4000 with a reason", [0x0F, 0xA0] + Array("bye".utf8), 4000),
                ("1005", [0x03, 0xED], 1002),
                ("1006", [0x03, 0xEE], 1002),
                ("999", [0x03, 0xE7], 1002),
                ("2000", [0x07, 0xD0], 1002),
                ("a 1-byte payload", [0x03], 1002),
                ("1000 with a reason that is not UTF-8", [0x03, 0xE8, 0xC3, 0x28], 1007),
            ]
            try await withReliabilityBed { bed in
                for target in Self.targets {
                    for (name, payload, answer) in cases {
                        let session = try RawUnixSocketClient(path: bed.socketPath)
                        defer { session.close() }
                        #expect(try session.upgradeToWebSocket(target).statusCode == 101)
                        try session.sendFrame(Frame(opcode: Frame.close, payload: payload))
                        var reply: Frame?
                        while let frame = try session.readFrame() {
                            if frame.opcode == Frame.close { reply = frame; break }
                        }
                        #expect(reply?.closeCode == answer, "\(target), \(name): answered \(reply.map { "\($0.closeCode.map(String.init) ?? "no code")" } ?? "no close frame")")
                    }
                }
                try bed.expectWellBehavedClientServed("after the close frames")
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }

        @Test("an upgrade with a key that is not base64 of 16 bytes, with a body, or not a GET is refused, and no session opens")
        func invalidUpgrades() async throws {
            let goodKey = "dGhlIHNhbXBsZSBub25jZQ=="
            let requests: [(name: String, method: String, key: String, extra: [(String, String)], body: [UInt8])] = [
                ("a key that is not base64", "GET", "not base64 at all!!!!!!!", [], []),
                ("a key without padding", "GET", "dGhlIHNhbXBsZSBub25jZQ", [], []),
                ("a key of 4 bytes", "GET", "AAAAAA==", [], []),
                ("a key of 32 bytes", "GET", String(repeating: "A", count: 43) + "=", [], []),
                ("a body", "GET", goodKey, [], Array("hello".utf8)),
                ("a chunked body", "GET", goodKey, [("Transfer-Encoding", "chunked")], Array("5\r\nhello\r\n0\r\n\r\n".utf8)),
                ("POST", "POST", goodKey, [], []),
            ]
            try await withReliabilityBed { bed in
                for target in Self.targets {
                    for request in requests {
                        let client = try RawUnixSocketClient(path: bed.socketPath, timeout: .seconds(2))
                        defer { client.close() }
                        var head = "\(request.method) \(target) HTTP/1.1\r\nHost: localhost:0\r\n"
                        for (name, value) in Self.upgradeHeaders(key: request.key) + request.extra { head += "\(name): \(value)\r\n" }
                        if !request.body.isEmpty && request.extra.isEmpty { head += "Content-Length: \(request.body.count)\r\n" }
                        try client.send(Array((head + "\r\n").utf8) + request.body)
                        let status = try client.readHTTPResponse().statusCode
                        #expect(status == 400 || status == 405, "\(target), \(request.name): answered \(status)")
                    }
                }
                #expect(try bed.clients() == 0)
                try bed.expectWellBehavedClientServed("after the refused upgrades")
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }

        @Test("bytes that are not HTTP get a 400 at once, not when the request deadline (30 s) runs out")
        func randomBytesAreAnsweredPromptly() async throws {
            let starts = ["", "GET /ws HTTP/1.1\r\n", "GET /state HTTP/1.1\r\nHost: localhost:0\r\n"]
            try await withReliabilityBed { bed in
                var random = SeededRandom(seed: Self.seed &+ 16)
                for start in starts {
                    for _ in 0..<20 {
                        // One byte no request may hold, then random ones; no end of a head.
                        var garbage = random.bytes(Int.random(in: 1...512, using: &random)).map { $0 == 13 || $0 == 10 ? 0 : $0 }
                        garbage.insert(UInt8.random(in: 0...8, using: &random), at: 0)
                        let client = try RawUnixSocketClient(path: bed.socketPath, timeout: .seconds(2))
                        defer { client.close() }
                        try client.send(Array(start.utf8) + garbage)
                        let status = try client.readHTTPResponse().statusCode
                        #expect(status == 400, "\(start.debugDescription) and garbage: answered \(status)")
                    }
                }
                try bed.expectWellBehavedClientServed("after the garbage")
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }
    }
}
