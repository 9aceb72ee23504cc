import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// A real `kvmd-pst` process serving a real loop-mounted image, reached over
/// raw sockets.
struct DaemonTestBed {
    let fixture: StorageFixture
    let daemon: DaemonProcess
    let socketPath: String

    /// Arguments every test passes: the fixture's fstab, a socket of its own,
    /// no socket group, short delays so tests stay fast.
    static func arguments(fixture: StorageFixture, socketPath: String, extra: [String]) -> [String] {
        ["--fstab", fixture.fstabPath, "--socket", socketPath, "--socket-group", "",
         "--ro-cleanup-delay", "0.2", "--ro-retries-delay", "0.3", "--log-level", "debug"] + extra
    }

    /// `GET /state` on a fresh connection; the `result` object.
    func state() throws -> [String: Any] {
        let response = try RawUnixSocketClient(path: socketPath).request("GET", "/state")
        let body = try #require(response.jsonObject, "GET /state: \(response.bodyText)")
        return try #require(body["result"] as? [String: Any])
    }

    func writeAllowed() throws -> Bool? {
        try (state()["data"] as? [String: Any])?["write_allowed"] as? Bool
    }

    func clients() throws -> Int? {
        try state()["clients"] as? Int
    }

    /// `remounts` from `/state` as (rw, ro, failed).
    func remounts() throws -> (rw: Int, ro: Int, failed: Int) {
        let counters = try #require(state()["remounts"] as? [String: Int])
        return (counters["rw"] ?? -1, counters["ro"] ?? -1, counters["failed"] ?? -1)
    }

    /// A new session: upgraded, with its `loop` event already checked.
    func openSession() throws -> RawUnixSocketClient {
        let client = try RawUnixSocketClient(path: socketPath)
        let answer = try client.upgradeToWebSocket()
        try #require(answer.statusCode == 101, "upgrade answered \(answer.statusCode): \(answer.bodyText)")
        let loop = try #require(try client.readJSONMessage())
        #expect(loop["event_type"] as? String == "loop")
        return client
    }

    /// The next `storage` event's `event` object on a session.
    static func nextStorageEvent(on session: RawUnixSocketClient) throws -> [String: Any]? {
        while let message = try session.readJSONMessage() {
            if message["event_type"] as? String == "storage" { return message["event"] as? [String: Any] }
        }
        return nil
    }

    static func writeAllowed(in event: [String: Any]?) -> Bool? {
        (event?["data"] as? [String: Any])?["write_allowed"] as? Bool
    }
}

/// A directory for sockets that any user may traverse (mkdtemp makes 0700).
func makeSocketDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/pst-sock.XXXXXX").utf8CString)
    let made = try #require(mkdtemp(&template))
    let path = String(cString: made)
    chmod(path, 0o755)
    return path
}

/// Runs `body` against a fresh fixture and daemon; everything is torn down
/// afterwards, whether the body returns or throws.
func withDaemonTestBed<T>(
    fixture options: StorageFixture.Options = .init(),
    arguments extra: [String] = [],
    _ body: (DaemonTestBed) async throws -> T
) async throws -> T {
    try await withStorageFixture(options) { fixture in
        let directory = try makeSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let socketPath = directory + "/pst.sock"
        return try await withDaemonProcess(
            arguments: DaemonTestBed.arguments(fixture: fixture, socketPath: socketPath, extra: extra),
            socketPath: socketPath
        ) { daemon in
            do {
                return try await body(DaemonTestBed(fixture: fixture, daemon: daemon, socketPath: socketPath))
            } catch {
                Issue.record("daemon log:\n\(daemon.log)")
                throw error
            }
        }
    }
}
