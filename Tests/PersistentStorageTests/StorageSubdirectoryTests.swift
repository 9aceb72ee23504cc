import Foundation
import Testing

@testable import PersistentStorage

@Suite("Subdirectory validation")
struct StorageSubdirectoryTests {
    @Test("a plain relative path is kept, with . and repeated slashes dropped",
          arguments: [("my-service", ["my-service"]), ("a/b", ["a", "b"]), ("./a//b/.", ["a", "b"]), ("a/", ["a"])])
    func acceptsRelativePaths(text: String, components: [String]) throws {
        #expect(try StorageSubdirectory(validating: text).components == components)
    }

    @Test("absolute, empty, parent and self-referencing paths are rejected",
          arguments: ["", "/etc", "..", "a/../b", "a/..", ".", "./", "a\0b"])
    func rejectsEscapingPaths(text: String) {
        #expect {
            try StorageSubdirectory(validating: text)
        } throws: { error in
            guard case PersistentStorageError.invalidSubdirectory(let rejected, _) = error else { return false }
            return rejected == text
        }
    }

    @Test("a subdirectory resolves inside the data root")
    func resolvesInsideRoot() throws {
        let url = StorageSubdirectory.resolve(try StorageSubdirectory(validating: "svc/cache"), in: "/var/lib/kvmd/pst/data")
        #expect(url.path(percentEncoded: false).hasPrefix("/var/lib/kvmd/pst/data/svc/cache"))
        #expect(StorageSubdirectory.resolve(nil, in: "/data").path(percentEncoded: false).hasPrefix("/data"))
    }

    @Test("the public API rejects a bad subdirectory before contacting the daemon")
    func publicAPIRejectsBeforeConnecting() async {
        let storage = PersistentStorageClient(socketPath: "/nonexistent/pst.sock")
        await #expect(throws: PersistentStorageError.invalidSubdirectory("../x", reason: "\"..\" would leave the data directory")) {
            try await storage.withWritableStorage(subdirectory: "../x") { _ in }
        }
        await #expect(throws: PersistentStorageError.self) {
            try await storage.dataDirectory(subdirectory: "/abs")
        }
    }
}
