import PersistentStorageProtocol
import Foundation
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageDaemon

@Suite("The upgrade fast path")
struct UpgradeFastPathTests {
    static let plain = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    @Test("a plain upgrade of GET /ws is taken, with its key; header names and tokens in any case")
    func takesPlainUpgrades() {
        #expect(UpgradeFastPath.webSocketKey(inUpgradeHead: Self.plain) == "dGhlIHNhbXBsZSBub25jZQ==")
        let aiohttpStyle = "GET /ws HTTP/1.1\r\nHost: localhost:0\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
            + "sec-websocket-key:   x3JJHMbDL1EzLkh9GBhXDw==\t\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nUser-Agent: KVMD-PSTRun/4.0\r\n\r\n"
        #expect(UpgradeFastPath.webSocketKey(inUpgradeHead: aiohttpStyle) == "x3JJHMbDL1EzLkh9GBhXDw==")
    }

    @Test("anything unusual is left to the HTTP pipeline", arguments: [
        ("GET /ws HTTP/1.1", "GET /ws?x=1 HTTP/1.1"),
        ("GET /ws HTTP/1.1", "POST /ws HTTP/1.1"),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.0"),
        ("GET /ws HTTP/1.1", "GET /state HTTP/1.1"),
        ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        ("Sec-WebSocket-Version: 13\r\n", ""),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "Sec-WebSocket-Key: a\r\nSec-WebSocket-Key: b\r\n"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "abc="),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ!=="),
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("Upgrade: websocket", "Upgrade: h2c"),
        ("Host: localhost\r\n", "Host: localhost\r\n  folded\r\n"),
        ("Host: localhost\r\n", "Host: localhost\n"),
        ("Host: localhost\r\n", "Bad Name: x\r\n"),
        ("Host: localhost\r\n", "Content-Length: 5\r\n"),
        ("Host: localhost\r\n", "Transfer-Encoding: chunked\r\n"),
        ("Host: localhost\r\n", "X-Control: a\u{1}b\r\n"),
    ])
    func leavesTheRest(original: String, replacement: String) {
        let head = Self.plain.replacingOccurrences(of: original, with: replacement)
        #expect(head != Self.plain)
        #expect(UpgradeFastPath.webSocketKey(inUpgradeHead: head) == nil)
    }

    @Test("the 101 is RFC 6455's, and a frame sent right behind the request is read", .enabled(if: RealMounts.enabled))
    func pipelinedFrame() async throws {
        try await withDaemonTestBed { bed in
            let client = try RawUnixSocketClient(path: bed.socketPath)
            let ping: [UInt8] = Array(#"{"event_type": "ping", "event": {}}"#.utf8)
            let mask: [UInt8] = [1, 2, 3, 4]
            let frame = [0x81, 0x80 | UInt8(ping.count)] + mask + ping.enumerated().map { $0.element ^ mask[$0.offset % 4] }
            try client.send(Array(Self.plain.utf8) + frame)
            let answer = try client.readHTTPResponse()
            #expect(answer.statusCode == 101)
            #expect(answer.header("sec-websocket-accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            #expect(answer.header("upgrade")?.lowercased() == "websocket")
            #expect(answer.header("connection")?.lowercased() == "upgrade")
            var types: [String] = []
            for _ in 0..<3 {
                types.append(try #require(try client.readJSONMessage())["event_type"] as? String ?? "?")
            }
            #expect(types.first == "loop")
            #expect(Set(types) == ["loop", "storage", "pong"])
            #expect(try bed.clients() == 1)
        }
    }

    @Test("an upgrade the fast path leaves alone still becomes a session through NIO's upgrader", .enabled(if: RealMounts.enabled))
    func unusualUpgradeStillWorks() async throws {
        try await withDaemonTestBed { bed in
            let client = try RawUnixSocketClient(path: bed.socketPath)
            let answer = try client.upgradeToWebSocket("/ws?from=test")
            #expect(answer.statusCode == 101)
            #expect(try client.readJSONMessage()?["event_type"] as? String == "loop")
            let event = try #require(try DaemonTestBed.nextStorageEvent(on: client))
            #expect(DaemonTestBed.writeAllowed(in: event) == true)
            #expect(try bed.clients() == 1)
        }
    }
}
