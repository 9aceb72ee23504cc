import Foundation
import PersistentStorageTestSupport
import Testing

/// Where the repository's files are, found from this file's own path.
enum Repository {
    static let root: URL = URL(filePath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func path(_ relative: String) -> String {
        root.appending(path: relative).path(percentEncoded: false)
    }

    static func text(_ relative: String) throws -> String {
        try String(contentsOfFile: path(relative), encoding: .utf8)
    }
}

/// Runs examples the way a user would on a PiKVM, but against the test's
/// daemon: `PST_SOCKET` names its socket and `KVMD_PSTRUN` the built
/// `kvmd-pstrun`, the two variables every example honours.
struct ExampleRunner {
    let socketPath: String

    var environment: [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["PST_SOCKET"] = socketPath
        environment["KVMD_PSTRUN"] = BuiltProducts.path(of: "kvmd-pstrun")
        return environment
    }

    /// Runs `arguments` and returns what it printed; records the output as
    /// the issue's comment when the status is not the one expected.
    @discardableResult
    func run(_ arguments: [String], expecting status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) throws -> SystemCommand.Result {
        let result = try SystemCommand.execute(arguments, environment: environment)
        #expect(
            result.status == status,
            "\(arguments.joined(separator: " ")) exited with \(result.status)\nstdout:\n\(result.standardOutput)\nstderr:\n\(result.standardError)",
            sourceLocation: sourceLocation)
        return result
    }

    /// Runs one of the shell examples in Examples/ with bash.
    @discardableResult
    func script(_ name: String, _ arguments: [String] = [], expecting status: Int32 = 0, sourceLocation: SourceLocation = #_sourceLocation) throws -> SystemCommand.Result {
        try run(["bash", Repository.path("Examples/\(name)")] + arguments, expecting: status, sourceLocation: sourceLocation)
    }
}

/// What `GET /state` says, with our additions (`remounts`).
struct DaemonState {
    var clients: Int
    var path: String
    var writeAllowed: Bool
    var remountsToReadWrite: Int
    var remountsToReadOnly: Int

    static func fetch(from socketPath: String) throws -> DaemonState {
        let response = try RawUnixSocketClient(path: socketPath).request("GET", "/state")
        let result = try #require(response.jsonObject?["result"] as? [String: Any], "GET /state: \(response.bodyText)")
        let data = try #require(result["data"] as? [String: Any])
        let remounts = try #require(result["remounts"] as? [String: Int])
        return DaemonState(
            clients: try #require(result["clients"] as? Int),
            path: try #require(data["path"] as? String),
            writeAllowed: try #require(data["write_allowed"] as? Bool),
            remountsToReadWrite: try #require(remounts["rw"]),
            remountsToReadOnly: try #require(remounts["ro"]))
    }

    /// Waits until the daemon is idle again after a session: no client, read-only,
    /// and as many remounts back to read-only as to read-write.
    static func settled(_ socketPath: String) async throws -> DaemonState {
        let state = try await eventually(within: .seconds(10)) {
            let state = try fetch(from: socketPath)
            let idle = state.clients == 0 && !state.writeAllowed
                && state.remountsToReadOnly == state.remountsToReadWrite
            return idle ? state : nil
        }
        let last = String(describing: try? fetch(from: socketPath))
        return try #require(state, "the daemon did not go back to read-only: \(last)")
    }
}

/// A private temporary directory, removed when `body` ends however it ends.
func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = FileManager.default.temporaryDirectory
        .appending(path: "pst-examples-\(UUID().uuidString)").path(percentEncoded: false)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}
