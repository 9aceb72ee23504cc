import SystemSupport
import PersistentStorageProtocol
import Foundation
import Logging
import NIOCore
import NIOWebSocket
import Testing

@testable import PersistentStorage

/// `kvmd-pstrun`'s blocking session against a scripted daemon: the same side
/// of PROTOCOL.md as the async client's (``ClientProtocolTests``), read by
/// one thread that polls the socket.
@Suite("Blocking session", .timeLimit(.minutes(1)))
struct BlockingSessionTests {
    private static let dataPath = "/var/lib/kvmd/pst/data"

    /// Opens a session on a thread of its own (as `kvmd-pstrun` does on its
    /// main thread, off the test's thread pool), runs `hold` with it there,
    /// and closes it.
    private static func withBlockingSession<T: Sendable>(
        socketPath: String, timeout: Duration = .seconds(5),
        _ hold: @escaping @Sendable (BlockingSession) -> T
    ) async throws(PersistentStorageError) -> T {
        let result: Result<T, PersistentStorageError> = await withCheckedContinuation { continuation in
            DetachedThread.run {
                do throws(PersistentStorageError) {
                    let session = try BlockingSession.open(socketPath: socketPath, timeout: timeout, logger: Logger(label: "test"))
                    let value = hold(session)
                    session.close()
                    continuation.resume(returning: .success(value))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        return try result.get()
    }

    /// Polls the session until write access ends, as `kvmd-pstrun` does
    /// while its script runs; nil if it still holds after 10 s.
    private static func untilRevoked(_ session: BlockingSession) -> RevocationReason? {
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            if let reason = session.readAvailable() { return reason }
        } while BlockingSession.pollReadable(session.descriptor, until: deadline)
        return nil
    }

    @Test("read-only before writable is waited through, a fragmented event is read whole, and close is a masked close frame")
    func opensAndCloses() async throws {
        let (frames, framesSink) = AsyncStream<[WebSocketFrame]>.makeStream()
        let status = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.loop)
            try await session.send(.storage(writeAllowed: false, path: Self.dataPath))
            try await session.sendFragmented(.storage(writeAllowed: true, path: Self.dataPath, clients: 2), size: 7)
            framesSink.yield(try await session.untilClientCloses())
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath) { $0.initialStatus }
        }
        #expect(status == StorageStatus(clients: 2, data: .init(path: Self.dataPath, writeAllowed: true)))
        let sent = try #require(await frames.first { _ in true })
        #expect(sent.map(\.opcode) == [.connectionClose])
        #expect(sent.allSatisfy { $0.maskKey != nil })
        var code = try #require(sent.first?.unmaskedData)
        #expect(code.readWebSocketErrorCode() == .normalClosure)
    }

    @Test("a ping while the session is held is answered with a masked pong carrying its payload")
    func answersPings() async throws {
        let (pongs, pongSink) = AsyncStream<WebSocketFrame>.makeStream()
        let reason = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath))
            try await session.send(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "beat")))
            for try await frame in session.inbound where frame.opcode == .pong {
                pongSink.yield(frame)
                break
            }
            // Returning ends the connection without a close frame, like a crash.
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath, Self.untilRevoked)
        }
        #expect(reason == .connectionClosed)
        let pong = try #require(await pongs.first { _ in true })
        #expect(pong.maskKey != nil)
        #expect(String(buffer: pong.unmaskedData) == "beat")
    }

    @Test("write_allowed turning false ends write access, and the session still closes cleanly")
    func readOnlyRevokes() async throws {
        let (frames, framesSink) = AsyncStream<[WebSocketFrame]>.makeStream()
        let reason = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath))
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath, clients: 2))
            try await session.send(.storage(writeAllowed: false, path: Self.dataPath))
            framesSink.yield(try await session.untilClientCloses())
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath, Self.untilRevoked)
        }
        #expect(reason == .writeNoLongerAllowed)
        #expect(try #require(await frames.first { _ in true }).map(\.opcode) == [.connectionClose])
    }

    @Test("kvmd-pstrun's session reads storage_state (kvmd 4.8 to 4.35) for write access and its end")
    func legacyEventName() async throws {
        let (status, reason) = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.loop)
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath, eventType: "storage_state"))
            try await session.send(.storage(writeAllowed: false, path: Self.dataPath, eventType: "storage_state"))
            try await session.untilClientCloses()
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath) { ($0.initialStatus, Self.untilRevoked($0)) }
        }
        #expect(status == StorageStatus(clients: 1, data: .init(path: Self.dataPath, writeAllowed: true)))
        #expect(reason == .writeNoLongerAllowed)
    }

    @Test("the daemon's close frame is answered with its status code and ends write access")
    func daemonCloses() async throws {
        let (frames, framesSink) = AsyncStream<[WebSocketFrame]>.makeStream()
        let reason = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath))
            var code = ByteBuffer()
            code.write(webSocketErrorCode: .goingAway)
            try await session.send(WebSocketFrame(fin: true, opcode: .connectionClose, data: code))
            // Whatever ends the exchange (the client's close frame, or the
            // connection going away), what was received is reported, so the
            // test never waits on a stream nobody will feed.
            var received: [WebSocketFrame] = []
            defer {
                framesSink.yield(received)
                framesSink.finish()
            }
            for try await frame in session.inbound {
                received.append(frame)
                if frame.opcode == .connectionClose { break }
            }
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath, Self.untilRevoked)
        }
        #expect(reason == .connectionClosed)
        let sent = try #require(await frames.first { _ in true })
        #expect(sent.map(\.opcode) == [.connectionClose])
        var code = try #require(sent.first?.unmaskedData)
        #expect(code.readWebSocketErrorCode() == .goingAway)
    }

    @Test("a binary frame or an oversized one while held is a protocol violation")
    func brokenFrames() async throws {
        let binary = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath))
            try await session.send(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(string: "?")))
            try await session.untilClientCloses()
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath, Self.untilRevoked)
        }
        #expect(binary == .protocolViolation("the daemon sent a binary frame"))

        // The close code that goes with it is DaemonEventReaderTests' to
        // check: the client stops reading at the oversized header, so the
        // scripted daemon may see the connection reset before our close frame.
        let oversized = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: Self.dataPath))
            try await session.send(StorageEventText(text: String(repeating: " ", count: 200_000)))
            try await session.untilClientCloses()
        }) { socketPath in
            try await Self.withBlockingSession(socketPath: socketPath, Self.untilRevoked)
        }
        #expect(oversized == .protocolViolation("invalid WebSocket frame (a frame larger than 65536 bytes)"))
    }

    @Test("a daemon that only says read-only is a refusal with the reason from /state")
    func refusalCarriesReason() async throws {
        var state = ScriptedDaemon.StateAnswer()
        state.status = .internalServerError
        state.body = #"{"ok": false, "result": {"error": "RemountError", "error_msg": "the device is write-protected"}}"#
        await #expect(throws: PersistentStorageError.writeRefused(reason: "the device is write-protected (RemountError)")) {
            try await ScriptedDaemon.withDaemon(state: state, greeting: .storage(writeAllowed: false, path: Self.dataPath), session: { session in
                try await session.untilClientCloses()
            }) { socketPath in
                try await Self.withBlockingSession(socketPath: socketPath, timeout: .seconds(1)) { _ in }
            }
        }
    }

    @Test("a silent daemon times out waiting for write access")
    func silentDaemonTimesOut() async throws {
        // Long enough for the scripted daemon's upgrade on a loaded machine:
        // the wait for write access, not the upgrade, must be what times out.
        await #expect(throws: PersistentStorageError.timedOut(after: .milliseconds(1500), waitingFor: "the PST daemon to make the storage writable")) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.loop)
                try await session.untilClientCloses()
            }) { socketPath in
                try await Self.withBlockingSession(socketPath: socketPath, timeout: .milliseconds(1500)) { _ in }
            }
        }
    }

    @Test("a missing socket says the daemon is not running; a socket nobody listens on too")
    func noDaemon() async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "pst-blocking-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appending(path: "missing.sock").path(percentEncoded: false)
        await #expect(throws: PersistentStorageError.daemonNotRunning(socketPath: missing)) {
            try await Self.withBlockingSession(socketPath: missing) { _ in }
        }
        // A stale socket file: bound once, nobody listening.
        let stale = directory.appending(path: "stale.sock").path(percentEncoded: false)
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(descriptor) }
        let address = try #require(UnixSocketAddress(path: stale))
        #expect(address.withSocketAddress { bind(descriptor, $0, $1) } == 0)
        await #expect(throws: PersistentStorageError.daemonNotRunning(socketPath: stale)) {
            try await Self.withBlockingSession(socketPath: stale) { _ in }
        }
    }
}
