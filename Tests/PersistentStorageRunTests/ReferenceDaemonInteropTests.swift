import Foundation
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// Our `kvmd-pstrun` and library against an aiohttp daemon that behaves like
/// the Python `kvmd-pst`: they must depend only on what the protocol promises.
@Suite("Our client against an aiohttp kvmd-pst", .enabled(if: ReferencePeer.enabled))
struct ReferenceDaemonInteropTests {
    /// The fixture served by the aiohttp daemon, remounting through our helper.
    private func withReferenceDaemon<T>(_ body: (StorageFixture, String, pid_t) async throws -> T) async throws -> T {
        try await withStorageFixture { fixture in
            // The reference daemon runs the fix step only through its helper's
            // first rw; do it once so the data directory exists from the start.
            let helper = BuiltProducts.path(of: "kvmd-helper-pst-remount")
            try await SystemCommand.run([helper, "--fstab", fixture.fstabPath, "rw"])
            try await SystemCommand.run([helper, "--fstab", fixture.fstabPath, "ro"])
            let socketPath = fixture.directory + "/reference.sock"
            return try await ReferencePeer.withDaemon(
                socketPath: socketPath, dataPath: fixture.dataPath,
                remountCommand: [helper, "--fstab", fixture.fstabPath, "{mode}"]
            ) { pid in
                try await body(fixture, socketPath, pid)
            }
        }
    }

    @Test("kvmd-pstrun runs the script with write access and exits with its code")
    func pstrunRuns() async throws {
        try await withReferenceDaemon { fixture, socketPath, _ in
            let run = try RunningPstRun(
                socketPath: socketPath,
                command: ["sh", "-c", "echo swift > \"$KVMD_PST_DATA/interop\"; exit 3"])
            let finished = await run.finish()
            #expect(finished.status == 3, "\(finished.standardError)")
            #expect(finished.standardError.contains("PST write is allowed: \(fixture.dataPath)"))
            #expect(try String(contentsOfFile: fixture.dataPath + "/interop", encoding: .utf8) == "swift\n")
            #expect(await eventually { fixture.state == .readOnly })
        }
    }

    @Test("withWritableStorage writes, returns the body's value, and the state reads back")
    func libraryWrites() async throws {
        try await withReferenceDaemon { fixture, socketPath, _ in
            let storage = PersistentStorage(socketPath: socketPath)
            let written = try await storage.withWritableStorage(subdirectory: "interop") { directory in
                try writeFile("library", to: directory.appending(path: "file").path)
                return directory.path
            }
            #expect(written == fixture.dataPath + "/interop")
            #expect(try String(contentsOfFile: written + "/file", encoding: .utf8) == "library")
            let state = try await storage.state()
            #expect(state.data.path == fixture.dataPath)
            #expect(await eventually { fixture.state == .readOnly })
        }
    }

    // The reference daemon does not watch the mount table, so an external
    // remount reaches no client through it; its death is what every client
    // must notice.
    @Test("The daemon's death revokes a running withWritableStorage body")
    func revocation() async throws {
        try await withReferenceDaemon { fixture, socketPath, daemonPID in
            let storage = PersistentStorage(socketPath: socketPath)
            let started = AsyncStream<Void>.makeStream()
            async let outcome: Void = storage.withWritableStorage { _ in
                started.continuation.yield()
                try await Task.sleep(for: .seconds(30))
            }
            for await _ in started.stream { break }
            kill(daemonPID, SIGKILL)
            do {
                try await outcome
                Issue.record("the body must not finish normally")
            } catch let error as PersistentStorageError {
                guard case .revoked = error else {
                    Issue.record("expected revoked, got \(error)")
                    return
                }
            }
        }
    }
}
