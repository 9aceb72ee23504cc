import Foundation
import Glibc
import PersistentStorageTestSupport
import Testing

/// A real `kvmd-pst` process serving a real loop-mounted image, reached over
/// raw sockets, with the probes tests assert end states with: the session
/// count and remount counters from `GET /state`, and sessions at the byte level.
public struct DaemonTestBed: Sendable {
    public let fixture: StorageFixture
    public let daemon: DaemonProcess
    public let socketPath: String
    /// What the daemon was started with, to start it again the same way.
    public let arguments: [String]

    /// A bed around a daemon the caller started (and stops).
    public init(fixture: StorageFixture, daemon: DaemonProcess, socketPath: String, arguments: [String] = []) {
        self.fixture = fixture
        self.daemon = daemon
        self.socketPath = socketPath
        self.arguments = arguments
    }

    /// Arguments every test passes: the fixture's fstab, a socket of its own,
    /// no socket group, short delays so tests stay fast. `extra` come last and win.
    public static func arguments(
        fixture: StorageFixture, socketPath: String, extra: [String], logLevel: String = "debug"
    ) -> [String] {
        ["--run", "--fstab", fixture.fstabPath, "--socket", socketPath, "--socket-group", "",
         "--ro-cleanup-delay", "0.2", "--ro-retries-delay", "0.3", "--log-level", logLevel] + extra
    }

    // MARK: - GET /state

    /// `GET /state` on a fresh connection; the `result` object.
    public func state() throws -> [String: Any] {
        let response = try RawUnixSocketClient(path: socketPath).request("GET", "/state")
        let body = try #require(response.jsonObject, "GET /state: \(response.bodyText)")
        return try #require(body["result"] as? [String: Any])
    }

    public func writeAllowed() throws -> Bool? {
        try (state()["data"] as? [String: Any])?["write_allowed"] as? Bool
    }

    public func clients() throws -> Int? {
        try state()["clients"] as? Int
    }

    /// The daemon's `remounts` counters.
    public struct RemountCounts: Equatable, CustomStringConvertible, Sendable {
        public var rw: Int, ro: Int, failed: Int
        public init(rw: Int, ro: Int, failed: Int) {
            self.rw = rw
            self.ro = ro
            self.failed = failed
        }
        public var description: String { "rw=\(rw) ro=\(ro) failed=\(failed)" }
    }

    public func remounts() throws -> RemountCounts {
        let counters = try #require(state()["remounts"] as? [String: Int])
        return RemountCounts(rw: counters["rw"] ?? -1, ro: counters["ro"] ?? -1, failed: counters["failed"] ?? -1)
    }

    /// No session left and the kernel says read-only, within `timeout`.
    public func settlesReadOnlyWithNoSession(within timeout: Duration = .seconds(2)) async -> Bool {
        await eventually(within: timeout) {
            fixture.state == .readOnly && (try? clients()) == 0
        }
    }

    // MARK: - Sessions

    /// A new raw session: upgraded, with its `loop` event read.
    public func openSession() throws -> RawUnixSocketClient {
        let client = try RawUnixSocketClient(path: socketPath)
        let answer = try client.upgradeToWebSocket()
        try #require(answer.statusCode == 101, "upgrade answered \(answer.statusCode): \(answer.bodyText)")
        let loop = try #require(try client.readJSONMessage())
        #expect(loop["event_type"] as? String == "loop")
        return client
    }

    /// A raw session that has been told `write_allowed: true`.
    public func openWritableSession() throws -> RawUnixSocketClient {
        let session = try openSession()
        while true {
            let event = try #require(try Self.nextStorageEvent(on: session), "the session closed before it was served")
            if Self.writeAllowed(in: event) == true { return session }
        }
    }

    /// The next `storage` event's `event` object on a session.
    public static func nextStorageEvent(on session: RawUnixSocketClient) throws -> [String: Any]? {
        while let message = try session.readJSONMessage() {
            if message["event_type"] as? String == "storage" { return message["event"] as? [String: Any] }
        }
        return nil
    }

    public static func writeAllowed(in event: [String: Any]?) -> Bool? {
        (event?["data"] as? [String: Any])?["write_allowed"] as? Bool
    }
}

/// A directory for sockets that any user may traverse (mkdtemp makes 0700).
public func makeSocketDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/pst-sock.XXXXXX").utf8CString)
    let made = try #require(mkdtemp(&template))
    let path = String(cString: made)
    chmod(path, 0o755)
    return path
}

/// Runs `body` against a daemon on `fixture`; the daemon is killed and its
/// socket directory removed afterwards, however `body` ends. On failure the
/// daemon's log is attached to the test's issues.
///
/// - Parameter executablePrefix: a wrapper that execs the daemon, such as
///   `["prlimit", "--nofile=1024"]`; the pid stays the daemon's.
public func withDaemonTestBed<T>(
    on fixture: StorageFixture, arguments extra: [String] = [], logLevel: String = "debug",
    environment: [String: String] = [:], executablePrefix: [String] = [],
    _ body: (DaemonTestBed) async throws -> T
) async throws -> T {
    let directory = try makeSocketDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let socketPath = directory + "/pst.sock"
    let arguments = DaemonTestBed.arguments(fixture: fixture, socketPath: socketPath, extra: extra, logLevel: logLevel)
    let executable = executablePrefix.first ?? BuiltProducts.path(of: "kvmd-pst")
    let fullArguments = executablePrefix.isEmpty
        ? arguments : Array(executablePrefix.dropFirst()) + [BuiltProducts.path(of: "kvmd-pst")] + arguments
    return try await withDaemonProcess(
        arguments: fullArguments, socketPath: socketPath, executable: executable, environment: environment
    ) { daemon in
        do {
            return try await body(DaemonTestBed(fixture: fixture, daemon: daemon, socketPath: socketPath, arguments: arguments))
        } catch {
            Issue.record("daemon log:\n\(daemon.log.suffix(20_000))")
            throw error
        }
    }
}

/// A fresh fixture and a daemon on it; both are torn down however `body` ends.
public func withDaemonTestBed<T>(
    fixture options: StorageFixture.Options = .init(), arguments extra: [String] = [], logLevel: String = "debug",
    environment: [String: String] = [:], executablePrefix: [String] = [],
    _ body: (DaemonTestBed) async throws -> T
) async throws -> T {
    try await withStorageFixture(options) { fixture in
        try await withDaemonTestBed(
            on: fixture, arguments: extra, logLevel: logLevel, environment: environment,
            executablePrefix: executablePrefix, body)
    }
}
