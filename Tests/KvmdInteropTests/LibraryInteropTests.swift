import Foundation
import PersistentStorage
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    @Suite("Our library against kvmd's daemon")
    struct Library {
        @Test("A service built on the library (Examples/SettingsService) keeps its settings on the storage, read-only after")
        func settingsService() async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(.kvmd) { _ in
                let service = ["env", "PST_SOCKET=" + anchor.socket, BuiltProducts.path(of: "SettingsService")]
                let set = try await anchor.run(service + ["set", "theme", "dark"])
                #expect(set.status == 0, "\(set.standardError)")
                let file = try #require(try await anchor.contents(of: anchor.mount + "/settings-service/settings.json"))
                #expect(file.contains("\"theme\""), "\(file)")
                #expect(file.contains("\"dark\""), "\(file)")
                #expect(await anchor.becomesReadOnly())
                let get = try await anchor.run(service + ["get", "theme"])
                #expect(get.standardOutput == "dark\n", "\(get.standardError)")
            }
        }

        @Test("withWritableStorage gets the mount point, the storage is writable in its body, read-only after")
        func writableBody() async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(.kvmd) { _ in
                let storage = PersistentStorageClient(socketPath: anchor.socket)
                // The library runs in the test's own mount namespace, where
                // the storage is not mounted; what the body writes goes
                // through the anchor's namespace.
                let (path, write) = try await storage.withWritableStorage { url in
                    let path = url.path
                    return (path, try await anchor.run(["sh", "-c", #"echo library > "$0/library-file""#, path]))
                }
                #expect(path == anchor.mount)
                #expect(write.status == 0, "\(write.standardError)")
                #expect(await anchor.becomesReadOnly())
                #expect(try await anchor.contents(of: anchor.mount + "/library-file") == "library\n")
            }
        }

        @Test("kvmd's daemon shutting down revokes a running withWritableStorage body")
        func revokedByShutdown() async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(.kvmd) { daemon in
                let storage = PersistentStorageClient(socketPath: anchor.socket)
                let (started, startedSink) = AsyncStream<Void>.makeStream()
                async let outcome: Void = storage.withWritableStorage { _ in
                    startedSink.yield()
                    try await Task.sleep(for: .seconds(60))
                }
                for await _ in started { break }
                try await daemon.stop()
                do {
                    try await outcome
                    Issue.record("the body must not finish normally")
                } catch let error as PersistentStorageError {
                    guard case .revoked = error else {
                        Issue.record("expected a revocation, got \(error)")
                        return
                    }
                }
                #expect(try await anchor.mountMode() == "ro")
            }
        }
    }
}
