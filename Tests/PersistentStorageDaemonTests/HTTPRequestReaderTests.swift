import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageDaemon

@Suite("The daemon's request reader")
struct HTTPRequestReaderTests {
    static let plain = "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

    static func parse(_ text: String) throws(RequestHead.ParseError) -> RequestHead {
        try RequestHead(parsing: Array(text.utf8))
    }

    static func key(_ text: String) -> String? {
        (try? parse(text)).flatMap(WebSocketUpgradeRequest.key(of:))
    }

    // MARK: - The parser

    @Test("a plain upgrade of GET /ws is taken, with its key; header names and tokens in any case")
    func takesPlainUpgrades() {
        #expect(Self.key(Self.plain) == "dGhlIHNhbXBsZSBub25jZQ==")
        let aiohttpStyle = "GET /ws HTTP/1.1\r\nHost: localhost:0\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n"
            + "sec-websocket-key:   x3JJHMbDL1EzLkh9GBhXDw==\t\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nUser-Agent: KVMD-PSTRun/4.0\r\n\r\n"
        #expect(Self.key(aiohttpStyle) == "x3JJHMbDL1EzLkh9GBhXDw==")
        #expect(Self.key(Self.plain.replacingOccurrences(of: "GET /ws ", with: "GET /ws?from=test ")) == "dGhlIHNhbXBsZSBub25jZQ==")
    }

    @Test("an upgrade that is not valid has no key (RFC 6455 4.2.1)", arguments: [
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.0"),
        ("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        ("Sec-WebSocket-Version: 13\r\n", ""),
        ("Sec-WebSocket-Version: 13\r\n", "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        ("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "abc="),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ"),
        ("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZ!=="),
        ("Connection: Upgrade", "Connection: keep-alive"),
        ("Upgrade: websocket", "Upgrade: h2c"),
        ("Host: localhost\r\n", "Content-Length: 5\r\n"),
        ("Host: localhost\r\n", "Transfer-Encoding: chunked\r\n"),
    ])
    func refusesInvalidUpgrades(original: String, replacement: String) {
        let head = Self.plain.replacingOccurrences(of: original, with: replacement)
        #expect(head != Self.plain)
        #expect(Self.key(head) == nil)
    }

    @Test("what RFC 9112 does not allow is not a request head")
    func refusesWhatIsNotARequestHead() {
        let cases: [(original: String, replacement: String, error: RequestHead.ParseError)] = [
        ("GET /ws HTTP/1.1", "GET  /ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.1 ", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws http/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/1.10", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws#frag HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /w\u{E9}s HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "G(T /ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET ?ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET 1http://x/ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET localhost:80 HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "\r\nGET /ws HTTP/1.1", .malformedRequestLine),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/2.0", .unsupportedVersion),
        ("GET /ws HTTP/1.1", "GET /ws HTTP/0.9", .unsupportedVersion),
        ("Host: localhost\r\n", "Host: localhost\r\n  folded\r\n", .malformedField),
        ("Host: localhost\r\n", "Host: localhost\n", .malformedField),
        ("Host: localhost\r\n", "Host: local\rhost\r\n", .malformedField),
        ("Host: localhost\r\n", "Bad Name: x\r\n", .malformedField),
        ("Host: localhost\r\n", "Host : localhost\r\n", .malformedField),
        ("Host: localhost\r\n", ": localhost\r\n", .malformedField),
        ("Host: localhost\r\n", "X-Control: a\u{1}b\r\n", .malformedField),
        ("Host: localhost\r\n", "X-Nul: a\u{0}b\r\n", .malformedField),
        ("Host: localhost\r\n", "Host: a\r\nHost: b\r\n", .duplicateHost),
        ("Host: localhost\r\n", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", .ambiguousBody),
        ("Host: localhost\r\n", "Content-Length: 5\r\nContent-Length: 6\r\n", .ambiguousBody),
        ("Host: localhost\r\n", "Content-Length: -1\r\n", .ambiguousBody),
        ("Host: localhost\r\n", "Content-Length: 0x10\r\n", .ambiguousBody),
        ("Host: localhost\r\n", "Content-Length: 99999999999999999999\r\n", .ambiguousBody),
        ("Host: localhost\r\n", "Transfer-Encoding: chunked, gzip\r\n", .ambiguousBody),
        ]
        for (original, replacement, error) in cases {
            let head = Self.plain.replacingOccurrences(of: original, with: replacement)
            #expect(head != Self.plain)
            #expect(throws: error, "\(head.debugDescription)") { try Self.parse(head) }
        }
    }

    @Test("the path: origin-form up to the query, absolute-form's path, not decoded; body framing; HTTP/1.0")
    func pathsAndBodies() throws {
        let paths = [
            "/state": "/state", "/state?x": "/state", "/state?": "/state", "/ws?a=http://x": "/ws",
            "http://localhost/state": "/state", "HTTP://localhost:0/ws?x=1": "/ws", "http://localhost": "/",
            "http://localhost?x": "/", "svn+ssh://h/ws": "/ws", "/st%61te": "/st%61te", "*": "*", "//state": "//state",
        ]
        for (target, path) in paths {
            #expect(try Self.parse("GET \(target) HTTP/1.1\r\n\r\n").path == path, "\(target)")
        }
        #expect(try Self.parse("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").body == .contentLength(5))
        #expect(throws: RequestHead.ParseError.ambiguousBody) { try Self.parse("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n") }
        #expect(throws: RequestHead.ParseError.ambiguousBody) { try Self.parse("POST / HTTP/1.1\r\nContent-Length: 0\r\ncontent-length: 0\r\n\r\n") }
        #expect(try Self.parse("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body == RequestHead.Body.none)
        #expect(try Self.parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n").body == .chunked)
        let old = try Self.parse("get /state HTTP/1.0\r\n\r\n")
        #expect(old.minorVersion == 0 && old.method == "get" && old.fields.isEmpty)
    }

    @Test("scanning for the end of a head: byte by byte resumes where it stopped; garbage and bare LF at once; the limit")
    func scanning() {
        func scan(_ chunks: [String], limit: Int = 1024) -> [HTTPHeadScanning.RequestHeadScan] {
            var bytes: [UInt8] = []
            var position = 0
            return chunks.map { chunk in
                bytes += Array(chunk.utf8)
                return bytes.withUnsafeBytes { HTTPHeadScanning.scanRequestHead($0, from: &position, limit: limit) }
            }
        }
        let head = Self.plain
        let byteByByte = scan(head.map(String.init))
        #expect(byteByByte.last == .complete(length: head.utf8.count))
        #expect(byteByByte.dropLast().allSatisfy { $0 == .incomplete })
        #expect(scan(["GET / HTTP/1.1\r", "\n\r", "\n"]) == [.incomplete, .incomplete, .complete(length: 18)])
        #expect(scan(["GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"]) == [.complete(length: 18)])
        #expect(scan(["GET / HTTP/1.1\n"]) == [.notARequestHead])
        #expect(scan(["GET / HTTP/1.1\r", "x"]) == [.incomplete, .notARequestHead])
        #expect(scan(["\u{16}\u{3}\u{1}"]) == [.notARequestHead])
        #expect(scan(["GET / HTTP/1.1\r\nX: \u{7F}"]) == [.notARequestHead])
        #expect(scan([String(repeating: "a", count: 100)], limit: 64) == [.tooLarge])
        #expect(scan(["GET / HTTP/1.1\r\n\r\n"], limit: 18) == [.complete(length: 18)])
        #expect(scan(["GET / HTTP/1.1\r\n\r\n"], limit: 17) == [.tooLarge])
    }

    // MARK: - On the wire

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

    @Test("an upgrade with a query, or with its head split byte by byte, becomes a session", .enabled(if: RealMounts.enabled))
    func unusualUpgradesStillWork() async throws {
        try await withDaemonTestBed { bed in
            let client = try RawUnixSocketClient(path: bed.socketPath)
            let answer = try client.upgradeToWebSocket("/ws?from=test")
            #expect(answer.statusCode == 101)
            #expect(try client.readJSONMessage()?["event_type"] as? String == "loop")
            let event = try #require(try DaemonTestBed.nextStorageEvent(on: client))
            #expect(DaemonTestBed.writeAllowed(in: event) == true)

            let dripping = try RawUnixSocketClient(path: bed.socketPath)
            for byte in Self.plain.utf8 { try dripping.send([byte]) }
            #expect(try dripping.readHTTPResponse().statusCode == 101)
            #expect(try dripping.readJSONMessage()?["event_type"] as? String == "loop")
            #expect(try await eventually { try bed.clients() == 2 })
        }
    }

    /// What a client reads on a fresh connection after sending `bytes`
    /// (and, with `halfClose`, shutting its side down): everything, and
    /// whether the daemon's end came as an end of file or as a reset.
    struct Reading {
        var bytes: [UInt8] = []
        var end = "timed out"
        var text: String { String(decoding: bytes, as: UTF8.self) }
        var statusCode: Int? { text.hasPrefix("HTTP/1.1 ") ? Int(text.dropFirst(9).prefix(3)) : nil }
    }

    static func exchange(_ socketPath: String, _ bytes: [UInt8], halfClose: Bool = false, wait: Int32 = 3000) throws -> Reading {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        #expect(fd >= 0)
        defer { Glibc.close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in socketPath.utf8.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        #expect(connected == 0)
        var reading = Reading()
        var sent = 0
        var buffer = [UInt8](repeating: 0, count: 65536)
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN | POLLOUT), revents: 0)
        while true {
            descriptor.events = Int16(POLLIN) | (sent < bytes.count ? Int16(POLLOUT) : 0)
            guard poll(&descriptor, 1, wait) > 0 else { return reading }
            if descriptor.revents & Int16(POLLOUT) != 0 && sent < bytes.count {
                let count = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if count > 0 { sent += count }
                if count < 0 && errno != EAGAIN { sent = bytes.count }  // the daemon stopped reading: read what it said
                if sent == bytes.count && halfClose { shutdown(fd, Int32(SHUT_WR)) }
            }
            if descriptor.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                if count > 0 {
                    reading.bytes += buffer[0..<count]
                } else if count == 0 {
                    reading.end = "end of file"
                    return reading
                } else if errno != EAGAIN {
                    reading.end = String(cString: strerror(errno))
                    return reading
                }
            }
        }
    }

    @Test("requests that are answered with an error: the answer is read whole and ends in an end of file, not a reset", .enabled(if: RealMounts.enabled))
    func answersAreReadable() async throws {
        let body = String(repeating: "b", count: 200_000)
        let cases: [(name: String, request: String, status: Int)] = [
            ("a body with Content-Length", "GET /state HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", 413),
            ("a chunked body", "GET /state HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 413),
            ("POST with a body", "POST /state HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", 405),
            ("an upgrade with a body", Self.plain.replacingOccurrences(of: "\r\n\r\n", with: "\r\nContent-Length: 5\r\n\r\nhello"), 400),
            ("a head over the limit", "GET /state HTTP/1.1\r\nX: \(String(repeating: "a", count: 100_000))\r\n\r\n", 431),
            ("garbage", "\u{16}\u{3}\u{1}" + body, 400),
            ("a malformed field and more", "GET /state HTTP/1.1\r\nBad Name: x\r\n\r\n" + body, 400),
            ("HTTP/2.0", "GET /state HTTP/2.0\r\n\r\n", 505),
            ("a lowercase method", "get /state HTTP/1.1\r\nHost: x\r\n\r\n", 405),
            ("an unknown path", "GET /nothing HTTP/1.1\r\n\r\n" + body, 404),
            ("two Hosts", "GET /state HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            ("two equal Content-Lengths", "GET /state HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n", 400),
            ("HTTP/2's preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            ("CONNECT", "CONNECT localhost:80 HTTP/1.1\r\n\r\n", 400),
            ("Content-Length and Transfer-Encoding", "POST /state HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", 400),
        ]
        try await withDaemonTestBed { bed in
            for (name, request, status) in cases {
                for halfClose in [false, true] {
                    let reading = try Self.exchange(bed.socketPath, Array(request.utf8), halfClose: halfClose)
                    #expect(reading.statusCode == status, "\(name): \(reading.text.prefix(200))")
                    #expect(reading.end == "end of file", "\(name), half-closed \(halfClose): \(reading.end)")
                    #expect(reading.text.contains("\r\nConnection: close\r\n"), "\(name)")
                    #expect(reading.text.hasSuffix("}"), "\(name): the body read whole: \(reading.text.suffix(100))")
                }
            }
            #expect(try bed.clients() == 0)
        }
    }

    @Test("GET /state answered once: HTTP/1.0, a query, absolute-form, empty lines first; a pipelined second request is not answered", .enabled(if: RealMounts.enabled))
    func plainRequests() async throws {
        try await withDaemonTestBed { bed in
            for request in [
                "GET /state HTTP/1.0\r\n\r\n",
                "\r\n\r\nGET /state HTTP/1.1\r\nHost: a\r\n\r\n",
                "GET /state?x HTTP/1.1\r\nHost: localhost:0\r\n\r\n",
                "GET http://localhost/state HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "GET /state HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: b\r\n\r\n",
                "GET /state HTTP/1.1\r\nHost: a\r\n\r\n" + Self.plain,
            ] {
                // Half-closed: the client shuts its side down once the request is sent, and still gets the answer.
                for halfClose in [false, true] {
                    let reading = try Self.exchange(bed.socketPath, Array(request.utf8), halfClose: halfClose)
                    #expect(reading.statusCode == 200, "\(request.debugDescription), half-closed \(halfClose): \(reading.text.prefix(200))")
                    #expect(reading.text.components(separatedBy: "HTTP/1.1 ").count == 2, "one answer: \(reading.text)")
                    #expect(reading.text.contains(#""write_allowed":false"#))
                    #expect(reading.end == "end of file")
                }
            }
            #expect(try bed.clients() == 0)
        }
    }

    @Test("a peer that keeps sending after its answer is cut off after 1 MiB; the answer was sent first", .enabled(if: RealMounts.enabled))
    func endlessBody() async throws {
        try await withDaemonTestBed { bed in
            let body = Array(repeating: UInt8(ascii: "b"), count: 4 << 20)
            let reading = try Self.exchange(
                bed.socketPath, Array("GET /state HTTP/1.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
            #expect(reading.statusCode == 413, "\(reading.text.prefix(200))")
            #expect(reading.end != "timed out")
        }
    }

    @Test("a client that sends Content-Length and never the body is answered at once and closed at the deadline", .enabled(if: RealMounts.enabled))
    func bodyNeverSent() async throws {
        try await withDaemonTestBed(arguments: ["--http-timeout", "1"]) { bed in
            let client = try RawUnixSocketClient(path: bed.socketPath, timeout: .seconds(5))
            try client.send("POST /state HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
            let started = ContinuousClock.now
            #expect(try client.readHTTPResponse().statusCode == 405)
            // The daemon's end of the socket is shut: the client reads an end of file at once.
            #expect(try client.receiveSome().isEmpty)
            #expect(ContinuousClock.now - started < .milliseconds(900))
            // The client keeps sending into the void: the deadline ends it.
            let silent = try RawUnixSocketClient(path: bed.socketPath, timeout: .seconds(5))
            try silent.send("GET /state HTTP/1.1\r\nHost: x\r\n\r\n")
            #expect(try silent.readHTTPResponse().statusCode == 200)
            for _ in 0..<5 { try? silent.send(Array(repeating: 0x61, count: 1000)) }
            let waited = ContinuousClock.now
            var closed = false
            while !closed && ContinuousClock.now - waited < .seconds(4) {
                do {
                    try silent.send([0x61])
                    try await Task.sleep(for: .milliseconds(50))
                } catch {
                    closed = true
                }
            }
            #expect(closed, "the daemon must close a drained connection at the request deadline")
        }
    }
}
