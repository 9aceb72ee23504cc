import Foundation
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// Our daemon, driven by an aiohttp client that behaves like the Python
/// `kvmd-pstrun`: it must work unchanged.
@Suite("An aiohttp kvmd-pstrun against our daemon", .enabled(if: ReferencePeer.enabled))
struct ReferenceClientInteropTests {
    @Test("It gets write access, its script writes the data directory, and the storage is read-only afterwards")
    func scriptRuns() async throws {
        try await withStorageDaemon { fixture, daemon in
            let result = try await ReferencePeer.runPstrun(
                socketPath: daemon.socketPath,
                command: ["sh", "-c", "echo \"$0\" > \"$KVMD_PST_DATA/interop\"", "from aiohttp"])
            #expect(result.status == 0, "\(result.standardError)")
            #expect(result.standardError.contains("PST write is allowed: \(fixture.dataPath)"))
            #expect(result.standardError.contains("Process finished: returncode=0"))
            #expect(try String(contentsOfFile: fixture.dataPath + "/interop", encoding: .utf8) == "from aiohttp\n")
            #expect(await eventually { fixture.state == .readOnly })
        }
    }

    @Test("An external remount to read-only reaches it as revocation and its script is stopped")
    func revocation() async throws {
        try await withStorageDaemon { fixture, daemon in
            let marker = fixture.directory + "/script-started"
            async let outcome = Task.detached {
                try await ReferencePeer.runPstrun(
                    socketPath: daemon.socketPath,
                    command: ["sh", "-c", "touch \"$0\"; sleep 30", marker])
            }.value
            #expect(await eventually(within: .seconds(10)) { FileManager.default.fileExists(atPath: marker) })
            try await fixture.remountExternally(.readOnly)
            let result = try await outcome
            #expect(result.status != 0)
            #expect(result.standardError.contains("revoked"))
        }
    }
}
