import PersistentStorageProtocol
import Foundation
import Glibc
import NIOCore
import NIOWebSocket
import PersistentStorageTestSupport
import Synchronization
import Testing

@testable import PersistentStorage

/// An async session's life on the thread that holds it (``SessionHolder``):
/// closing it from several tasks, from a cancelled one, not at all, and
/// many at once.
@Suite("Session lifetime", .timeLimit(.minutes(1)))
final class SessionLifetimeTests {
    // Each test gets its own instance, and with it its own data directory.
    private let dataRoot: TemporaryDataDirectory

    init() throws {
        dataRoot = try TemporaryDataDirectory("pst-lifetime")
    }

    private var dataPath: String { dataRoot.path }

    /// The threads of this process that hold a session (named by ``SessionHolder``'s
    /// ``BlockingCall``), from /proc: other tests run beside these and start
    /// threads of their own.
    private static func sessionThreadCount() -> Int {
        guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return 0 }
        return tasks.filter { task in
            (try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8))?.hasPrefix("pst-session") == true
        }.count
    }

    /// Opens a session against a daemon that grants write access, runs
    /// `body` with it, and returns the frames the client sent until it closed.
    private func framesSent(_ body: (StorageSession) async throws -> Void) async throws -> [WebSocketFrame] {
        let dataPath = self.dataPath
        let (frames, framesSink) = AsyncStream<[WebSocketFrame]>.makeStream()
        try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: dataPath))
            framesSink.yield(try await session.untilClientCloses())
        }) { socketPath in
            try await body(try await PersistentStorageClient(socketPath: socketPath).openSession())
        }
        return try #require(await frames.first { _ in true })
    }

    @Test("close() twice, and from two tasks at once: one close frame is sent, every call returns, and the updates end without an error")
    func closeTwiceAndFromTwoTasks() async throws {
        let sent = try await framesSent { session in
            async let first: Void = session.close()
            async let second: Void = session.close()
            _ = await (first, second)
            await session.close()
            var statuses = 0
            for try await _ in session.statusUpdates { statuses += 1 }
            #expect(statuses == 0)
            #expect(await session.waitUntilRevoked() == nil)
        }
        #expect(sent.filter { $0.opcode == .connectionClose }.count == 1)
    }

    @Test("close() from a task that is cancelled meanwhile still completes the close handshake")
    func closeFromACancelledTask() async throws {
        let sent = try await framesSent { session in
            let closing = Task {
                withUnsafeCurrentTask { $0?.cancel() }
                await session.close()
            }
            await closing.value
        }
        #expect(sent.last?.opcode == .connectionClose)
    }

    @Test("a session dropped without close() keeps its connection and still answers the daemon's pings")
    func droppedSessionHolds() async throws {
        let dataPath = self.dataPath
        let (dropped, droppedSink) = AsyncStream<Void>.makeStream()
        let (pongs, pongSink) = AsyncStream<WebSocketFrame>.makeStream()
        try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: dataPath))
            for await _ in dropped { break }
            try await session.send(WebSocketFrame(fin: true, opcode: .ping, data: ByteBuffer(string: "still there")))
            for try await frame in session.inbound where frame.opcode == .pong {
                pongSink.yield(frame)
                break
            }
            // Returning ends the connection, and with it the thread that held it.
        }) { socketPath in
            _ = try await PersistentStorageClient(socketPath: socketPath).openSession()
            droppedSink.yield()
            let pong = await pongs.first { _ in true }
            #expect(pong.map { String(buffer: $0.unmaskedData) } == "still there")
        }
    }

    @Test("200 sessions at once in one process: all open, all close, and their threads end with them")
    func manySessions() async throws {
        let dataPath = self.dataPath
        let before = Self.sessionThreadCount()
        try await ScriptedDaemon.withDaemon(session: { session in
            try await session.send(.storage(writeAllowed: true, path: dataPath))
            _ = try await session.untilClientCloses()
        }) { socketPath in
            let storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(20))
            let sessions = try await withThrowingTaskGroup(of: StorageSession.self) { group in
                for _ in 0..<200 { group.addTask { try await storage.openSession() } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(sessions.count == 200)
            // One thread per session, and no more: the other suites that
            // run meanwhile hold a few sessions at most.
            let during = Self.sessionThreadCount()
            #expect(during >= 200 && during <= before + 200 + 8, "\(during) session threads, \(before) before")
            await withTaskGroup(of: Void.self) { group in
                for session in sessions { group.addTask { await session.closeConnection() } }
            }
            for session in sessions { #expect(await session.waitUntilRevoked() == nil) }
        }
        #expect(await eventually { Self.sessionThreadCount() <= before + 8 }, "\(Self.sessionThreadCount()) session threads, \(before) before")
    }

    @Test("openSession() cancelled at seeded moments from before the connect to after the grant: a session or CancellationError, and no connection is left open")
    func cancelledAtAnyMoment() async throws {
        let dataPath = self.dataPath
        let connections = Atomic<Int>(0)
        var random = SeededRandom(seed: 15)
        // The grant is the greeting, sent on the daemon's event loop: in the
        // whole suite the cooperative pool, where the script runs, can be
        // slow to get to, and the moments are meant for the client's stages.
        try await ScriptedDaemon.withDaemon(greeting: .storage(writeAllowed: true, path: dataPath), session: { session in
            connections.add(1, ordering: .relaxed)
            defer { connections.subtract(1, ordering: .relaxed) }
            _ = try? await session.untilClientCloses()
        }) { socketPath in
            let storage = PersistentStorageClient(socketPath: socketPath)
            // Moments up to twice an open's usual time, measured here: a
            // loaded machine opens slower.
            var times: [Duration] = []
            for _ in 0..<5 {
                let start = ContinuousClock.now
                await (try await storage.openSession()).close()
                times.append(.now - start)
            }
            // The window follows the outcomes, so that both keep coming on a
            // machine whose load changes while this runs: narrower after a
            // session (the cancel came too late), wider after a cancellation.
            var window = Int(times.sorted()[2] / .microseconds(1)) * 2
            var opened = 0
            var cancelled = 0
            var rounds = 0
            // Each round takes about two opens: few enough rounds for a
            // loaded machine, where an open is slow, to stay in the time limit.
            while rounds < 60 || (rounds < 200 && (opened < 5 || cancelled < 5)) {
                rounds += 1
                let task = Task { try await storage.openSession() }
                try await Task.sleep(for: .microseconds(Int.random(in: 0...window, using: &random)))
                task.cancel()
                switch await task.result {
                case .success(let session):
                    opened += 1
                    window = window * 3 / 4
                    await session.close()
                case .failure(let error):
                    #expect(error is CancellationError, "\(error)")
                    cancelled += 1
                    window = window * 5 / 4 + 10
                }
            }
            // Both outcomes happen, or the moments missed the window.
            #expect(opened > 0 && cancelled > 0, "\(opened) opened, \(cancelled) cancelled")
            #expect(await eventually { connections.load(ordering: .relaxed) == 0 }, "\(connections.load(ordering: .relaxed)) left open")
        }
    }
}
