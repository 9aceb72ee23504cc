import Foundation
import Glibc
import PersistentStorage
import PersistentStorageTestSupport
import SystemSupport
import Testing

/// Cancelling a call at each of its stages: it throws `CancellationError`
/// (not an error of the connection its cancellation closed, and no crash in
/// a debug build), and leaves no session open.
@Suite("Cancellation at every stage", .serialized, .timeLimit(.minutes(1)))
struct CancellationTests {
    /// What `operation` throws when run in a task that cancels itself first
    /// (nil if it does not throw).
    private static func errorWhenCancelledFirst(_ operation: @escaping @Sendable () async throws -> Void) async -> (any Error)? {
        await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            do {
                try await operation()
                return nil
            } catch {
                return error
            }
        }.value
    }

    /// What `operation` throws when its task is cancelled once `started` yields.
    private static func errorWhenCancelled(
        after started: AsyncStream<Void>, _ operation: @escaping @Sendable () async throws -> Void
    ) async -> (any Error)? {
        let task = Task { try await operation() }
        for await _ in started { break }
        task.cancel()
        do {
            try await task.value
            return nil
        } catch {
            return error
        }
    }

    private static func noSessionLeft(_ storage: PersistentStorageClient, _ fixture: StorageFixture) async -> Bool {
        await eventually {
            guard fixture.state == .readOnly else { return false }
            return (try? await storage.state().clients) == 0
        }
    }

    @Test("cancelled before it connects: state(), openSession() and withWritableStorage() throw CancellationError, and no session opens",
          .enabled(if: RealMounts.enabled))
    func beforeConnecting() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            // Repeated: a cancellation that races the start of the call's
            // thread must still be CancellationError (the NIO client once
            // raced it against its channel's set-up).
            for _ in 0..<20 {
                let errors = [
                    await Self.errorWhenCancelledFirst { _ = try await storage.state() },
                    await Self.errorWhenCancelledFirst { await (try await storage.openSession()).close() },
                    await Self.errorWhenCancelledFirst { try await storage.withWritableStorage { _ -> Void in Issue.record("the body ran") } },
                ]
                for error in errors { #expect(error is CancellationError, "\(String(describing: error))") }
            }
            #expect(await Self.noSessionLeft(storage, fixture))
        }
    }

    @Test("cancelled while the daemon has not answered the upgrade or GET /state: CancellationError", arguments: ["GET /ws", "GET /state"])
    func whileUpgrading(request: String) async throws {
        let (received, receivedSink) = AsyncStream<Void>.makeStream()
        // A daemon that reads the request and never answers.
        try await CannedAnswerServer.withServer(answer: { _ in receivedSink.yield(); return nil }) { socketPath in
            let storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(30))
            let error = await Self.errorWhenCancelled(after: received) {
                if request == "GET /ws" {
                    try await storage.withWritableStorage { _ -> Void in Issue.record("the body ran") }
                } else {
                    _ = try await storage.state()
                }
            }
            #expect(error is CancellationError, "\(String(describing: error))")
        }
    }

    @Test("cancelled while connect(2) finds the daemon's listen queue full: CancellationError at once, not after the timeout",
          arguments: ["GET /ws", "GET /state"])
    func whileConnecting(request: String) async throws {
        let directory = FileManager.default.temporaryDirectory.appending(path: "pst-queue-\(UUID().uuidString)").path(percentEncoded: false)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = directory + "/pst.sock"
        let address = try #require(UnixSocketAddress(path: socketPath))
        // A listener that never accepts, with the shortest queue, filled up.
        let listener = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var fillers: [CInt] = []
        defer {
            fillers.forEach { _ = close($0) }
            close(listener)
        }
        #expect(address.withSocketAddress { bind(listener, $0, $1) } == 0 && listen(listener, 0) == 0)
        while fillers.count < 64 {
            let filler = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
            guard address.withSocketAddress({ connect(filler, $0, $1) }) == 0 else {
                #expect(errno == EAGAIN)
                close(filler)
                break
            }
            fillers.append(filler)
        }
        let storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(30))
        let task = Task {
            if request == "GET /ws" {
                try await storage.withWritableStorage { _ -> Void in Issue.record("the body ran") }
            } else {
                _ = try await storage.state()
            }
        }
        // Retrying a full queue has no outward sign to wait for: give the
        // call time to be in its retries.
        try await Task.sleep(for: .milliseconds(200))
        let cancelledAt = ContinuousClock.now
        task.cancel()
        let error = await task.result.failure
        #expect(error is CancellationError, "\(String(describing: error))")
        // Far below the 30 s timeout; not tighter, since in the whole suite
        // the cooperative pool (as many threads as cores) can be slow to run
        // the cancelled task on.
        #expect(ContinuousClock.now - cancelledAt < .seconds(10))
    }

    @Test("cancelled while the daemon remounts read-write for it: CancellationError, and no session is left once the remount is done",
          .enabled(if: RealMounts.enabled))
    func whileWaitingForWriteAccess() async throws {
        try await withStorageFixture { fixture in
            // A remount command that, while the gate file exists, says it has
            // started and waits for the gate to go before remounting.
            let gate = fixture.directory + "/gate"
            let started = fixture.directory + "/remount-started"
            let script = fixture.directory + "/gated-remount.sh"
            try """
                #!/bin/sh
                if [ "$1" = rw ] && [ -e \(gate) ]; then
                    : > \(started)
                    while [ -e \(gate) ]; do sleep 0.02; done
                fi
                exec mount -o remount,"$1" \(fixture.mountPath)

                """.write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
            let socketPath = fixture.directory + "/pst.sock"
            try await withDaemonProcess(
                arguments: ["--run", "--fstab", fixture.fstabPath, "--socket", socketPath, "--ro-cleanup-delay", "0", "--socket-group", "",
                            "--remount-command", "\(script) {mode}"],
                socketPath: socketPath
            ) { daemon in
                defer { unlink(gate) }
                let storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(30))
                #expect(FileManager.default.createFile(atPath: gate, contents: nil))
                let (remounting, remountingSink) = AsyncStream<Void>.makeStream()
                let watcher = Task {
                    if await eventually(within: .seconds(10), { access(started, F_OK) == 0 }) { remountingSink.yield() }
                    remountingSink.finish()
                }
                defer { watcher.cancel() }
                let error = await Self.errorWhenCancelled(after: remounting) {
                    try await storage.withWritableStorage { _ -> Void in Issue.record("the body ran") }
                }
                #expect(access(started, F_OK) == 0, "the remount never started")
                #expect(error is CancellationError, "\(String(describing: error))")
                unlink(gate)
                #expect(await Self.noSessionLeft(storage, fixture))
            }
        }
    }

    @Test("cancelled while the body runs: CancellationError even when the body returns normally, and the session ends",
          .enabled(if: RealMounts.enabled))
    func whileTheBodyRuns() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let (started, startedSink) = AsyncStream<Void>.makeStream()
            let error = await Self.errorWhenCancelled(after: started) {
                let value = try await storage.withWritableStorage { _ in
                    startedSink.yield()
                    // A body that notices cancellation and returns rather than throwing.
                    try? await Task.sleep(for: .seconds(60))
                    return 42
                }
                Issue.record("returned \(value) to a cancelled caller")
            }
            #expect(error is CancellationError, "\(String(describing: error))")
            #expect(await Self.noSessionLeft(storage, fixture))
        }
    }
}

private extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
