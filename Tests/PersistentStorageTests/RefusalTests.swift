import Foundation
import Glibc
import PersistentStorage
import PersistentStorageTestSupport
import Testing

/// The daemon's deliberate refusals reach the caller as what they are, not
/// as "the PST daemon broke the protocol". (403 needs another user than the
/// test's root: kvmd-pstrun as nobody shows it, in RealDaemonRunTests.)
@Suite("Refusals by a real daemon", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
struct RefusalTests {
    @Test("a daemon with as many sessions as --max-sessions allows: 503 is daemonUnavailable, and the held session is untouched")
    func fullDaemon() async throws {
        try await withStorageDaemon(extraArguments: ["--max-sessions", "1"]) { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let held = try await storage.openSession()
            do {
                try await storage.withWritableStorage { _ -> Void in Issue.record("the body ran") }
                Issue.record("a second session was opened past --max-sessions 1")
            } catch let error as PersistentStorageError {
                guard case .daemonUnavailable(let socketPath, _) = error else {
                    Issue.record("503 was reported as: \(error)")
                    await held.close()
                    return
                }
                #expect(socketPath == daemon.socketPath)
                #expect(error.description.contains("cannot take a session now (503 Service Unavailable"), "\(error)")
                #expect(!error.description.contains("broke the protocol"))
            }
            #expect(try await storage.state().clients == 1)
            #expect(fixture.state == .readWrite)
            await held.close()
            #expect(await eventually { fixture.state == .readOnly })
        }
    }
}
