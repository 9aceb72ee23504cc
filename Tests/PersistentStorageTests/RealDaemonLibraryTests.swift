import Foundation
import Glibc
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorage

/// `withWritableStorage` against a real `kvmd-pst` on a real loop-mounted image.
@Suite("Library against a real daemon", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
struct RealDaemonLibraryTests {
    /// The storage is read-only again and the daemon counts no client; the
    /// daemon's log is attached when not.
    private func expectNoSessionLeft(
        _ storage: PersistentStorageClient, _ fixture: StorageFixture, _ daemon: DaemonProcess,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async {
        let settled = await eventually {
            guard fixture.state == .readOnly else { return false }
            return (try? await storage.state().clients) == 0
        }
        if !settled {
            Issue.record("still \(fixture.state) or a client counted; the daemon's log:\n\(daemon.log)", sourceLocation: sourceLocation)
        }
    }

    @Test("the body's value is returned, the storage was writable meanwhile, and the session ends")
    func returnsValue() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let clientsDuring = try await storage.withWritableStorage(subdirectory: "svc") { url in
                try writeFile("hello", to: url.appending(path: "greeting").path)
                return try await storage.state().clients
            }
            #expect(clientsDuring == 1)
            #expect(try String(contentsOfFile: fixture.dataPath + "/svc/greeting", encoding: .utf8) == "hello")
            await expectNoSessionLeft(storage, fixture, daemon)
        }
    }

    @Test("state() shows swift-pst's additions: remount counts and who holds a session (issue 16)")
    func fullState() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let during = try await storage.withWritableStorage { _ in try await storage.state() }
            #expect(during.clients == 1)
            #expect(during.remounts?.rw == 2, "start-up and this session")
            let session = try #require(during.sessions?.first)
            #expect(during.sessions?.count == 1)
            #expect(session.pid == getpid() && session.uid == getuid() && session.user == "root")
            #expect(session.since.hasSuffix("Z"))
            #expect(during.busy == nil && during.error == nil)
            await expectNoSessionLeft(storage, fixture, daemon)
            #expect(try await storage.state().sessions == [])
        }
    }

    @Test("the body's error is rethrown and the session ends")
    func rethrowsAndCloses() async throws {
        struct Failed: Error, Equatable {}
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            await #expect(throws: Failed()) {
                try await storage.withWritableStorage { _ in throw Failed() }
            }
            await expectNoSessionLeft(storage, fixture, daemon)
        }
    }

    @Test("cancelling the caller cancels the body and ends the session")
    func cancellationCloses() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let (started, startedSink) = AsyncStream<Void>.makeStream()
            let task = Task {
                try await storage.withWritableStorage { _ in
                    startedSink.yield()
                    try await Task.sleep(for: .seconds(60))
                }
            }
            for await _ in started { break }
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            await expectNoSessionLeft(storage, fixture, daemon)
        }
    }

    @Test("an external read-only remount cancels the body and throws a revocation")
    func externalRemountRevokes() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            await #expect(throws: PersistentStorageError.revoked(.writeNoLongerAllowed)) {
                try await storage.withWritableStorage { _ in
                    _ = try await SystemCommand.run(["mount", "-o", "remount,ro", fixture.mountPath])
                    try await Task.sleep(for: .seconds(60))
                }
            }
        }
    }

    @Test("the daemon dying cancels the body and throws a revocation")
    func daemonDeathRevokes() async throws {
        try await withStorageDaemon { _, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let started = ContinuousClock.now
            await #expect(throws: PersistentStorageError.revoked(.connectionClosed)) {
                try await storage.withWritableStorage { _ in
                    daemon.terminate(signal: SIGKILL)
                    try await Task.sleep(for: .seconds(60))
                }
            }
            #expect(ContinuousClock.now - started < .seconds(5))
        }
    }

    @Test("from an actor, the body runs on it: its state without await, a result that is not Sendable")
    func bodyRunsOnTheCallersActor() async throws {
        try await withStorageDaemon { fixture, daemon in
            let journal = Journal(storage: PersistentStorageClient(socketPath: daemon.socketPath))
            let receipt = try await journal.append("first")
            #expect(receipt.line == "first" && receipt.ranOnTheActor)
            #expect(await journal.lines == ["first"])
            #expect(try String(contentsOfFile: fixture.dataPath + "/journal/first", encoding: .utf8) == "first")
            await expectNoSessionLeft(journal.storage, fixture, daemon)
        }
    }

    @Test("a body on the caller's actor is still cancelled by a revocation, and the actor is free while it waits")
    func revocationCancelsABodyOnTheActor() async throws {
        try await withStorageDaemon { fixture, daemon in
            let journal = Journal(storage: PersistentStorageClient(socketPath: daemon.socketPath))
            let holding = Task { try await journal.hold() }
            // The actor answers while its body sleeps inside the session.
            #expect(await eventually { await journal.holding })
            _ = try await SystemCommand.run(["mount", "-o", "remount,ro", fixture.mountPath])
            await #expect(throws: PersistentStorageError.revoked(.writeNoLongerAllowed)) { try await holding.value }
            #expect(await journal.bodyWasCancelled)
        }
    }

    @Test("a bad subdirectory is rejected without opening a session")
    func badSubdirectory() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            await #expect(throws: PersistentStorageError.self) {
                try await storage.withWritableStorage(subdirectory: "../escape") { _ in }
            }
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("nested subdirectories are created; a file in the way is a clear error and the session ends")
    func subdirectoryCreation() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let url = try await storage.withWritableStorage(subdirectory: "svc/cache/deep") { url in
                try writeFile("x", to: url.appending(path: "file").path)
                return url
            }
            #expect(url.path(percentEncoded: false) == fixture.dataPath + "/svc/cache/deep/")
            #expect(FileManager.default.fileExists(atPath: fixture.dataPath + "/svc/cache/deep/file"))

            // The file itself, and a path through it: both name the file.
            for subdirectory in ["svc/cache/deep/file", "svc/cache/deep/file/below"] {
                do {
                    _ = try await storage.withWritableStorage(subdirectory: subdirectory) { _ in Issue.record("the body ran") }
                    Issue.record("no error for \(subdirectory)")
                } catch PersistentStorageError.cannotCreateDirectory(let path, let reason) {
                    #expect(path == fixture.dataPath + "/\(subdirectory)/")
                    #expect(reason == fixture.dataPath + "/svc/cache/deep/file exists and is not a directory")
                }
            }
            await expectNoSessionLeft(storage, fixture, daemon)
        }
    }

    @Test("a missing socket names the daemon; an unreadable one names the group")
    func connectionErrors() async throws {
        try await withStorageDaemon { fixture, daemon in
            await #expect(throws: PersistentStorageError.daemonNotRunning(socketPath: fixture.directory + "/absent.sock")) {
                try await PersistentStorageClient(socketPath: fixture.directory + "/absent.sock").state()
            }
            // As an unprivileged user, the socket's 0660 mode keeps us out.
            let result = try await SystemCommand.execute(
                ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                 BuiltProducts.path(of: "kvmd-pstrun"), "--socket", daemon.socketPath, "--", "true"]
            )
            #expect(result.status == 1)
            #expect(result.standardError.contains("permission denied on \(daemon.socketPath)"))
        }
    }
}

/// Not `Sendable`: `withWritableStorage` hands it back all the same.
private final class Receipt {
    let line: String
    let ranOnTheActor: Bool
    init(line: String, ranOnTheActor: Bool) {
        self.line = line
        self.ranOnTheActor = ranOnTheActor
    }
}

/// A service as an actor, which writes through `withWritableStorage`.
private actor Journal {
    let storage: PersistentStorageClient
    var lines: [String] = []
    var holding = false
    var bodyWasCancelled = false

    init(storage: PersistentStorageClient) { self.storage = storage }

    func append(_ line: String) async throws -> sending Receipt {
        let receipt = try await storage.withWritableStorage(subdirectory: "journal") { directory in
            try writeFile(line, to: directory.appending(path: line).path)
            // The actor's state, with no await: the body runs on the actor.
            lines.append(line)
            // Swift checks this at run time too: it stops the process if not.
            preconditionIsolated("the body ran off the actor")
            return Receipt(line: line, ranOnTheActor: true)
        }
        return receipt
    }

    func hold() async throws {
        try await storage.withWritableStorage { _ in
            holding = true
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                bodyWasCancelled = Task.isCancelled
                throw error
            }
        }
    }
}
