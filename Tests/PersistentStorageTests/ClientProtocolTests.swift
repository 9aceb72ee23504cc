import PersistentStorageProtocol
import Foundation
import NIOCore
import NIOWebSocket
import Testing

@testable import PersistentStorage

/// The client's side of PROTOCOL.md, against a scripted daemon, so that the
/// rare cases (fragments, pings, refusals, garbage) are covered without root.
@Suite("Client protocol", .timeLimit(.minutes(1)))
final class ClientProtocolTests {
    // Each test gets its own instance, and with it its own data directory.
    private let dataRoot: TemporaryDataDirectory

    init() throws {
        dataRoot = try TemporaryDataDirectory("pst-client")
    }

    private var dataPath: String { dataRoot.path }

    @Test("a session sends Host, masks its frames, creates the subdirectory and returns the body's value")
    func happyPath() async throws {
        let (frames, framesSink) = AsyncStream<[WebSocketFrame]>.makeStream()
        let (hosts, hostsSink) = AsyncStream<String?>.makeStream()
        let dataPath = self.dataPath
        let value = try await ScriptedDaemon.withDaemon(session: { session in
            hostsSink.yield(session.requestHead.headers.first(name: "Host"))
            try await session.send(.loop)
            try await session.send(.storage(writeAllowed: true, path: dataPath))
            framesSink.yield(try await session.untilClientCloses())
        }) { socketPath in
            try await PersistentStorageClient(socketPath: socketPath).withWritableStorage(subdirectory: "svc/nested") { url in
                try Data("x".utf8).write(to: url.appending(path: "file"))
                return 42
            }
        }
        #expect(value == 42)
        #expect(FileManager.default.fileExists(atPath: dataPath + "/svc/nested/file"))
        #expect(await hosts.first { _ in true } == "localhost")
        let sent = try #require(await frames.first { _ in true })
        #expect(sent.last?.opcode == .connectionClose)
        #expect(sent.allSatisfy { $0.maskKey != nil })
    }

    @Test("write_allowed false before true is waited through, and a fragmented event is read whole")
    func waitsForWritableAcrossFragments() async throws {
        let dataPath = self.dataPath
        let url = try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.loop)
            try await session.send(.storage(writeAllowed: false, path: dataPath))
            try await session.sendFragmented(.storage(writeAllowed: true, path: dataPath), size: 7)
            try await session.untilClientCloses()
        }) { socketPath in
            try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { $0 }
        }
        #expect(url.path(percentEncoded: false).hasPrefix(dataPath))
    }

    @Test("a server ping is answered with a masked pong carrying its payload, without anyone reading updates")
    func answersPings() async throws {
        let dataPath = self.dataPath
        let (pongs, pongSink) = AsyncStream<WebSocketFrame>.makeStream()
        try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: dataPath))
            try await session.send(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "beat")))
            for try await frame in session.inbound where frame.opcode == .pong {
                pongSink.yield(frame)
                break
            }
            // Ending the session tells the client the exchange is over.
        }) { socketPath in
            let session = try await PersistentStorageClient(socketPath: socketPath).openSession()
            #expect(await session.waitUntilRevoked() == .connectionClosed)
            await session.close()
        }
        let pong = try #require(await pongs.first { _ in true })
        #expect(pong.maskKey != nil)
        #expect(String(buffer: pong.unmaskedData) == "beat")
    }

    @Test("a kvmd 4.8 to 4.35 daemon's storage_state events give write access and take it away")
    func legacyEventName() async throws {
        let dataPath = self.dataPath
        let (started, startedSink) = AsyncStream<Void>.makeStream()
        let (bodyPaths, bodyPathSink) = AsyncStream<String>.makeStream()
        await #expect(throws: PersistentStorageError.revoked(.writeNoLongerAllowed)) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.loop)
                try await session.send(.storage(writeAllowed: true, path: dataPath, eventType: "storage_state"))
                for await _ in started { break }
                try await session.send(.storage(writeAllowed: false, path: dataPath, eventType: "storage_state"))
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { url in
                    bodyPathSink.yield(url.path(percentEncoded: false))
                    startedSink.yield()
                    try await Task.sleep(for: .seconds(60))
                }
            }
        }
        let bodyPath = await bodyPaths.first { _ in true }
        #expect(bodyPath.map { $0.hasPrefix(dataPath) } == true, "\(bodyPath ?? "the body never ran")")
    }

    @Test("write_allowed turning false cancels the body and throws a revocation")
    func revocationCancelsBody() async throws {
        let dataPath = self.dataPath
        let (started, startedSink) = AsyncStream<Void>.makeStream()
        let (bodySawCancellation, cancellationSink) = AsyncStream<Bool>.makeStream()
        await #expect(throws: PersistentStorageError.revoked(.writeNoLongerAllowed)) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.storage(writeAllowed: true, path: dataPath))
                for await _ in started { break }
                try await session.send(.storage(writeAllowed: false, path: dataPath))
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { _ in
                    startedSink.yield()
                    do {
                        try await Task.sleep(for: .seconds(60))
                    } catch {
                        cancellationSink.yield(error is CancellationError)
                        throw error
                    }
                }
            }
        }
        #expect(await bodySawCancellation.first { _ in true } == true)
    }

    @Test("the daemon closing the connection mid-body is a revocation")
    func connectionLossRevokes() async throws {
        let dataPath = self.dataPath
        let (started, startedSink) = AsyncStream<Void>.makeStream()
        await #expect(throws: PersistentStorageError.revoked(.connectionClosed)) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.storage(writeAllowed: true, path: dataPath))
                for await _ in started { break }
                // Returning closes the connection without a close frame, like a crash.
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { _ in
                    startedSink.yield()
                    try await Task.sleep(for: .seconds(60))
                }
            }
        }
    }

    @Test("the body's error is rethrown")
    func bodyErrorRethrown() async throws {
        struct BodyFailed: Error, Equatable {}
        let dataPath = self.dataPath
        await #expect(throws: BodyFailed()) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.storage(writeAllowed: true, path: dataPath))
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { _ in throw BodyFailed() }
            }
        }
    }

    @Test("a daemon that only says read-only is a refusal with the reason from /state")
    func refusalCarriesReason() async throws {
        let dataPath = self.dataPath
        var state = ScriptedDaemon.StateAnswer()
        state.status = .internalServerError
        state.body = #"{"ok": false, "result": {"error": "RemountError", "error_msg": "the device is write-protected"}}"#
        await #expect(throws: PersistentStorageError.writeRefused(reason: "the device is write-protected (RemountError)")) {
            try await ScriptedDaemon.withDaemon(state: state, greeting: .storage(writeAllowed: false, path: dataPath), session: { session in
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath, timeout: .seconds(1)).withWritableStorage { _ in }
            }
        }
    }

    @Test("a silent daemon times out")
    func silentDaemonTimesOut() async throws {
        await #expect {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await session.send(.loop)
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath, timeout: .milliseconds(300)).withWritableStorage { _ in }
            }
        } throws: { error in
            guard case PersistentStorageError.timedOut = error else { return false }
            return true
        }
    }

    @Test("a binary frame is a protocol violation")
    func binaryFrameIsViolation() async throws {
        await expectProtocolViolation { session in
            try await session.send(WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(string: "?")))
        }
    }

    @Test("a frame larger than the bound is a protocol violation, not an allocation")
    func oversizedFrameIsViolation() async throws {
        let dataPath = self.dataPath
        await expectProtocolViolation { session in
            try await session.send(StorageEventText(text: String(repeating: " ", count: 200_000)
                + StorageEventText.storage(writeAllowed: true, path: dataPath).text))
        }
    }

    /// `withWritableStorage` against a daemon that sends what `misbehave`
    /// sends, then waits for the client to hang up: it must throw
    /// `protocolViolation`.
    private func expectProtocolViolation(
        sourceLocation: SourceLocation = #_sourceLocation,
        _ misbehave: @escaping @Sendable (ScriptedSession) async throws -> Void
    ) async {
        await #expect(sourceLocation: sourceLocation) {
            try await ScriptedDaemon.withDaemon(session: { session in
                try await misbehave(session)
                try await session.untilClientCloses()
            }) { socketPath in
                try await PersistentStorageClient(socketPath: socketPath).withWritableStorage { _ in }
            }
        } throws: { error in
            guard case PersistentStorageError.protocolViolation = error else { return false }
            return true
        }
    }

    @Test("state() decodes GET /state, and dataDirectory appends the subdirectory")
    func stateAndDataDirectory() async throws {
        var state = ScriptedDaemon.StateAnswer()
        state.body = #"{"ok": true, "result": {"clients": 2, "data": {"path": "/var/lib/kvmd/pst/data", "write_allowed": true}}}"#
        try await ScriptedDaemon.withDaemon(state: state, session: { _ in }) { socketPath in
            let storage = PersistentStorageClient(socketPath: socketPath)
            let status = try await storage.state()
            #expect(status.status == StorageStatus(clients: 2, data: .init(path: "/var/lib/kvmd/pst/data", writeAllowed: true)))
            // The reference's answer has none of swift-pst's additions: absent, not an error.
            #expect(status.remounts == nil && status.sessions == nil && status.busy == nil && status.error == nil)
            let directory = try await storage.dataDirectory(subdirectory: "svc")
            #expect(directory.path(percentEncoded: false).hasPrefix("/var/lib/kvmd/pst/data/svc"))
        }
    }

    @Test("a missing socket says the daemon is not running")
    func missingSocket() async {
        await #expect(throws: PersistentStorageError.daemonNotRunning(socketPath: "/nonexistent/pst.sock")) {
            try await PersistentStorageClient(socketPath: "/nonexistent/pst.sock").state()
        }
    }
}
