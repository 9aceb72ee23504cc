import SystemSupport
import PersistentStorageProtocol
import Foundation
import Logging
import NIOCore
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorage

/// The client's own opening handshake against answers a daemon should not give.
@Suite("WebSocket opening handshake", .timeLimit(.minutes(1)))
struct WebSocketHandshakeTests {
    @Test("Sec-WebSocket-Accept is RFC 6455's example, and SHA-1 its test vectors")
    func acceptValue() {
        #expect(WebSocketAccept.value(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let hex = { (bytes: [UInt8]) in bytes.map { String(format: "%02x", $0) }.joined() }
        #expect(hex(SHA1.digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(SHA1.digest([])) == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        // Two blocks: the padding spills over.
        #expect(hex(SHA1.digest(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
            == "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        // Whole blocks and a remainder; whole blocks and nothing left over.
        #expect(hex(SHA1.digest(Array(("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
            + "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu").utf8)))
            == "a49b2446a02c645bf419f995b67091253a04a259")
        #expect(hex(SHA1.digest([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
            == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    @Test("base64 is Foundation's, for every length of a key and a digest and around them")
    func base64() {
        var random = SeededRandom(seed: 6455)
        for count in 0...48 {
            let bytes = (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
            #expect(Base64.encoded(bytes) == Data(bytes).base64EncodedString(), "\(count) bytes")
        }
    }

    /// The key the client sent, from its request head.
    private static func key(in head: String) -> String {
        head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("sec-websocket-key:") }
            .map { String($0.dropFirst("sec-websocket-key:".count).trimmingCharacters(in: .whitespaces)) } ?? ""
    }

    /// The two ways into the one session core: the async API services use
    /// (on a thread of its own per session), and `kvmd-pstrun`'s blocking
    /// call. Both must read a daemon's answer alike.
    enum Client: CaseIterable, Sendable {
        case async
        case blocking
    }

    private func openError(
        _ client: Client, answer: @escaping @Sendable (String) -> String?, trailing: [UInt8] = [], thenClose: Bool = false, timeout: Duration = .seconds(5)
    ) async throws -> PersistentStorageError? {
        try await CannedAnswerServer.withServer(answer: { head in answer(head).map { Array($0.utf8) + trailing } }, thenClose: thenClose) { socketPath in
            if client == .blocking { return await Self.blockingOpenError(socketPath: socketPath, timeout: timeout) }
            do {
                let session = try await PersistentStorageClient(socketPath: socketPath, timeout: timeout).openSession()
                await session.close()
                return nil
            } catch let error as PersistentStorageError {
                return error
            }
        }
    }

    /// Opens and closes a ``BlockingSession`` on a thread of its own, as
    /// `kvmd-pstrun` does on its main thread, off the test's thread pool.
    static func blockingOpenError(socketPath: String, timeout: Duration) async -> PersistentStorageError? {
        await withCheckedContinuation { continuation in
            DetachedThread.run {
                do throws(PersistentStorageError) {
                    let session = try BlockingSession.open(socketPath: socketPath, timeout: timeout, logger: Logger(label: "test"))
                    session.close()
                    continuation.resume(returning: nil)
                } catch {
                    continuation.resume(returning: error)
                }
            }
        }
    }

    @Test("the request is a GET /ws upgrade with Host, a version and a fresh key", arguments: Client.allCases)
    func request(client: Client) async throws {
        let heads = LockedHeads()
        _ = try await openError(client, answer: { head in heads.append(head); return "HTTP/1.1 503 Service Unavailable\r\n\r\n" })
        _ = try await openError(client, answer: { head in heads.append(head); return "HTTP/1.1 503 Service Unavailable\r\n\r\n" })
        let all = heads.all
        #expect(all.count == 2)
        let lines = all.first?.split(separator: "\r\n").map(String.init) ?? []
        #expect(lines.first == "GET /ws HTTP/1.1")
        for header in ["Host: localhost", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"] {
            #expect(lines.contains(header))
        }
        #expect(Data(base64Encoded: Self.key(in: all[0]))?.count == 16)
        #expect(Self.key(in: all[0]) != Self.key(in: all[1]))
    }

    @Test("503 (full or stopping) and 403 (not allowed) are their own errors; another status names the daemon's status line", arguments: Client.allCases)
    func refused(client: Client) async throws {
        var error = try await openError(client, answer: { _ in "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n" })
        guard case .daemonUnavailable(_, "Service Unavailable")? = error else {
            Issue.record("503 gave \(String(describing: error))")
            return
        }
        #expect(error?.description.contains("cannot take a session now (503 Service Unavailable") == true)
        error = try await openError(client, answer: { _ in "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" })
        guard case .forbidden? = error else {
            Issue.record("403 gave \(String(describing: error))")
            return
        }
        #expect(error?.description.contains("refused this user (403 Forbidden)") == true)
        error = try await openError(client, answer: { _ in "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n" })
        #expect(error == .protocolViolation("the daemon answered GET /ws with 418 I'm a teapot"))
    }

    @Test("a 101 with the wrong accept value is not a WebSocket", arguments: Client.allCases)
    func wrongAccept(client: Client) async throws {
        let error = try await openError(client, answer: { _ in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n"
        })
        #expect(error == .protocolViolation("the daemon's 101 answer to GET /ws has a wrong Sec-WebSocket-Accept"))
    }

    @Test("a 101 without the upgrade headers is not a WebSocket", arguments: Client.allCases)
    func missingUpgradeHeaders(client: Client) async throws {
        let error = try await openError(client, answer: { head in
            "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: \(WebSocketAccept.value(forKey: Self.key(in: head)))\r\n\r\n"
        })
        #expect(error == .protocolViolation("the daemon's 101 answer to GET /ws lacks Upgrade: websocket or Connection: Upgrade"))
    }

    @Test("an answer that is not HTTP, or a head without end, is a protocol violation", arguments: Client.allCases)
    func garbage(client: Client) async throws {
        #expect(try await openError(client, answer: { _ in "SSH-2.0-OpenSSH\r\n\r\n" })
            == .protocolViolation("the daemon's answer to GET /ws is not HTTP: SSH-2.0-OpenSSH"))
        #expect(try await openError(client, answer: { _ in "HTTP/1.1 101 Switching Protocols\r\n" + String(repeating: "X-Filler: y\r\n", count: 2000) })
            == .protocolViolation("the daemon's answer to GET /ws has no end of head within 16384 bytes"))
    }

    @Test("a daemon that never answers the upgrade times out", arguments: Client.allCases)
    func silent(client: Client) async throws {
        let error = try await openError(client, answer: { _ in nil }, timeout: .milliseconds(300))
        #expect(error == .timedOut(after: .milliseconds(300), waitingFor: "the WebSocket upgrade of GET /ws"))
    }

    /// A daemon's first event, storage writable, as one unmasked text frame.
    private static let writableEventFrame: [UInt8] = {
        let event = StorageEvent.storage(StorageStatus(clients: 1, data: .init(path: "/tmp", writeAllowed: true))).encodedText()
        return [0x81, UInt8(event.utf8.count)] + Array(event.utf8)
    }()

    @Test("a correct 101 with the first event in the same segment opens the session", arguments: Client.allCases)
    func acceptedWithEvent(client: Client) async throws {
        let error = try await openError(client, answer: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n"
                + "Sec-WebSocket-Accept:  \(WebSocketAccept.value(forKey: Self.key(in: head)))\t\r\n\r\n"
        }, trailing: Self.writableEventFrame)
        #expect(error == nil)
    }

    @Test("a connection that ends in the middle of the first frame says so", arguments: Client.allCases)
    func endsMidFrame(client: Client) async throws {
        let error = try await openError(client, answer: { head in
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: \(WebSocketAccept.value(forKey: Self.key(in: head)))\r\n\r\n"
        }, trailing: Array(Self.writableEventFrame.prefix(10)), thenClose: true)
        #expect(error == .protocolViolation("the daemon closed the connection in the middle of a WebSocket frame"))
    }

    @Test("lower-case header names and a status line without a reason are accepted", arguments: Client.allCases)
    func acceptedPlainly(client: Client) async throws {
        let error = try await openError(client, answer: { head in
            "\r\nHTTP/1.1 101\r\nupgrade: websocket\r\nconnection: upgrade\r\n"
                + "sec-websocket-accept: \(WebSocketAccept.value(forKey: Self.key(in: head)))\r\n\r\n"
        }, trailing: Self.writableEventFrame)
        #expect(error == nil)
    }

    @Test("a status line that is not HTTP/1 is named in the error", arguments: Client.allCases)
    func notHTTP1(client: Client) async throws {
        #expect(try await openError(client, answer: { _ in "HTTP/2 101\r\n\r\n" })
            == .protocolViolation("the daemon's answer to GET /ws is not HTTP: HTTP/2 101"))
        #expect(try await openError(client, answer: { _ in "HTTP/1.1\r\n\r\n" })
            == .protocolViolation("the daemon's answer to GET /ws is not HTTP: HTTP/1.1"))
        // A status code is three digits, 100 to 999 (RFC 9112 4).
        for line in ["HTTP/1.1 0101 Switching", "HTTP/1.1 1010", "HTTP/1.1 10", "HTTP/1.1 099 Low", "HTTP/1.1 +01", "HTTP/1.1 abc"] {
            #expect(try await openError(client, answer: { _ in line + "\r\n\r\n" })
                == .protocolViolation("the daemon's answer to GET /ws is not HTTP: \(line)"))
        }
    }

    @Test("the request is sent whole on the connected socket; a full socket is waited on until the deadline or a wake-up; a peer gone is no SIGPIPE")
    func sendOnTheSocket() throws {
        var pair: [CInt] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer { close(pair[0]) }
        let request = WebSocketClientHandshake.Request(path: "/ws", socketPath: "/test.sock").bytes

        // An empty socket takes all of it, and the peer reads it unchanged.
        #expect(DaemonConnection.send(request, on: pair[0], until: .now + .seconds(5)) == .sent)
        var received = [UInt8](repeating: 0, count: 4096)
        let count = read(pair[1], &received, received.count)
        #expect(Array(received.prefix(max(count, 0))) == Array(request.readableBytesView))

        // A full socket takes none of it: the send waits for room until its
        // deadline, or until its wake-up is woken.
        let filler = [UInt8](repeating: 0x2A, count: 4096)
        while write(pair[0], filler, filler.count) > 0 {}
        let started = ContinuousClock.now
        #expect(DaemonConnection.send(request, on: pair[0], until: .now + .milliseconds(100)) == .failed)
        #expect(ContinuousClock.now - started >= .milliseconds(100))
        let wakeUp = try WakeUp()
        wakeUp.wake()
        #expect(DaemonConnection.send(request, on: pair[0], wakeUp: wakeUp, until: .now + .seconds(30)) == .interrupted)

        // A peer that has gone away is no SIGPIPE: the send fails.
        close(pair[1])
        #expect(DaemonConnection.send(request, on: pair[0], until: .now + .seconds(5)) == .failed)
    }
}

private final class LockedHeads: @unchecked Sendable {
    private let lock = NSLock()
    private var heads: [String] = []
    func append(_ head: String) { lock.withLock { heads.append(head) } }
    var all: [String] { lock.withLock { heads } }
}
