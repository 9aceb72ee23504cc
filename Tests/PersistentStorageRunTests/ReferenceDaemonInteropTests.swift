import Foundation
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// Our `kvmd-pstrun` and library against a daemon that names its event
/// `storage_state`, as kvmd 4.8 to 4.35 did. The real kvmd 4.197 is the
/// judge of everything else (`make test-kvmd`); its harness does not boot
/// 4.35, so an aiohttp stand-in plays that daemon here. (Revocation by a
/// `storage_state` event: `BlockingSessionTests` and `ClientProtocolTests`.)
@Suite("Our client against a kvmd 4.35-style daemon (storage_state)", .enabled(if: ReferencePeer.enabled))
struct ReferenceDaemonInteropTests {
    /// The fixture served by the aiohttp daemon, remounting through our helper.
    private func withLegacyDaemon<T>(_ body: (StorageFixture, String, pid_t) async throws -> T) async throws -> T {
        try await withStorageFixture { fixture in
            // The reference daemon runs the fix step only through its helper's
            // first rw; do it once so the data directory exists from the start.
            let helper = BuiltProducts.path(of: "kvmd-helper-pst-remount")
            try await SystemCommand.run([helper, "--fstab", fixture.fstabPath, "rw"])
            try await SystemCommand.run([helper, "--fstab", fixture.fstabPath, "ro"])
            let socketPath = fixture.directory + "/reference.sock"
            return try await ReferencePeer.withDaemon(
                socketPath: socketPath, dataPath: fixture.dataPath,
                remountCommand: [helper, "--fstab", fixture.fstabPath, "{mode}"],
                eventType: "storage_state"
            ) { pid in
                try await body(fixture, socketPath, pid)
            }
        }
    }

    @Test("kvmd-pstrun gets write access from storage_state, runs the script and exits with its code")
    func pstrunRuns() async throws {
        try await withLegacyDaemon { fixture, socketPath, _ in
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

    @Test("withWritableStorage writes through storage_state, returns the body's value, and the state reads back")
    func libraryWrites() async throws {
        try await withLegacyDaemon { fixture, socketPath, _ in
            let storage = PersistentStorageClient(socketPath: socketPath)
            let written = try await storage.withWritableStorage(subdirectory: "interop") { directory in
                try writeFile("library", to: directory.appending(path: "file").path)
                return directory.path
            }
            #expect(written == fixture.dataPath + "/interop")
            #expect(try String(contentsOfFile: written + "/file", encoding: .utf8) == "library")
            #expect(await eventually { fixture.state == .readOnly })
        }
    }
}
