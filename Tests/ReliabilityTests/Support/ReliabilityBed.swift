import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// A real `kvmd-pst` on a real loop-mounted image, reached over raw sockets,
/// with the probes the reliability tests assert end states with: the session
/// count and remount counters from `GET /state`, RO/RW from the kernel, and
/// the daemon's own resource use from procfs.
struct ReliabilityBed {
    let fixture: StorageFixture
    let daemon: DaemonProcess
    let socketPath: String
    let arguments: [String]

    /// Arguments every test passes; `extra` come last and win.
    static func arguments(fixture: StorageFixture, socketPath: String, extra: [String]) -> [String] {
        ["--fstab", fixture.fstabPath, "--socket", socketPath, "--socket-group", "",
         "--ro-cleanup-delay", "0.2", "--ro-retries-delay", "0.3", "--log-level", "info"] + extra
    }

    // MARK: - GET /state

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

    struct Remounts: Equatable, CustomStringConvertible {
        var rw: Int, ro: Int, failed: Int
        var description: String { "rw=\(rw) ro=\(ro) failed=\(failed)" }
    }

    func remounts() throws -> Remounts {
        let counters = try #require(state()["remounts"] as? [String: Int])
        return Remounts(rw: counters["rw"] ?? -1, ro: counters["ro"] ?? -1, failed: counters["failed"] ?? -1)
    }

    /// No session left and the kernel says read-only, within `timeout`.
    func settlesReadOnlyWithNoSession(within timeout: Duration = .seconds(2)) async -> Bool {
        await eventually(within: timeout) {
            fixture.state == .readOnly && (try? clients()) == 0
        }
    }

    // MARK: - Sessions

    /// A new raw session: upgraded, with its `loop` event read.
    func openSession() throws -> RawUnixSocketClient {
        let client = try RawUnixSocketClient(path: socketPath)
        let answer = try client.upgradeToWebSocket()
        try #require(answer.statusCode == 101, "upgrade answered \(answer.statusCode): \(answer.bodyText)")
        let loop = try #require(try client.readJSONMessage())
        try #require(loop["event_type"] as? String == "loop")
        return client
    }

    /// A raw session that has been told `write_allowed: true`.
    func openWritableSession() throws -> RawUnixSocketClient {
        let session = try openSession()
        while true {
            let event = try #require(try Self.nextStorageEvent(on: session), "the session closed before it was served")
            if Self.writeAllowed(in: event) == true { return session }
        }
    }

    static func nextStorageEvent(on session: RawUnixSocketClient) throws -> [String: Any]? {
        while let message = try session.readJSONMessage() {
            if message["event_type"] as? String == "storage" { return message["event"] as? [String: Any] }
        }
        return nil
    }

    static func writeAllowed(in event: [String: Any]?) -> Bool? {
        (event?["data"] as? [String: Any])?["write_allowed"] as? Bool
    }

    // MARK: - A well-behaved client

    /// What a well-behaved client saw: `GET /state` answered, and a session
    /// served RW and closed, each timed.
    struct ServiceCheck: CustomStringConvertible {
        var stateLatency: Duration
        var sessionLatency: Duration
        var description: String { "GET /state in \(stateLatency), a session served RW in \(sessionLatency)" }
    }

    /// The latency bounds a well-behaved client must meet while hostile peers
    /// are at work. A quiet daemon answers in about a millisecond and serves a
    /// session (one RW remount) in tens; these leave room for a loaded 2-core
    /// CI machine without letting a stalled daemon pass.
    static let normalStateLatency: Duration = .milliseconds(500)
    static let normalSessionLatency: Duration = .seconds(1)

    /// Serves one well-behaved client and times it; the session is closed
    /// again before returning.
    func serveWellBehavedClient() throws -> ServiceCheck {
        let clock = ContinuousClock()
        let stateStart = clock.now
        let response = try RawUnixSocketClient(path: socketPath).request("GET", "/state")
        try #require(response.statusCode == 200)
        let stateLatency = clock.now - stateStart
        let sessionStart = clock.now
        let session = try openWritableSession()
        let sessionLatency = clock.now - sessionStart
        session.close()
        return ServiceCheck(stateLatency: stateLatency, sessionLatency: sessionLatency)
    }

    /// Records an issue unless a well-behaved client is served within the normal bounds.
    func expectWellBehavedClientServed(_ comment: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws {
        let check = try serveWellBehavedClient()
        #expect(check.stateLatency < Self.normalStateLatency, "\(comment): \(check)", sourceLocation: sourceLocation)
        #expect(check.sessionLatency < Self.normalSessionLatency, "\(comment): \(check)", sourceLocation: sourceLocation)
    }

    // MARK: - The daemon's resources

    /// Resident memory in KiB, from `/proc/PID/status`.
    func daemonResidentKiB() throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(daemon.pid)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    /// Open file descriptors, from `/proc/PID/fd`.
    func daemonOpenDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count
    }
}

/// A directory for sockets that any user may traverse (mkdtemp makes 0700).
func makeSocketDirectory() throws -> String {
    var template = Array((NSTemporaryDirectory() + "/pst-rel.XXXXXX").utf8CString)
    let made = try #require(mkdtemp(&template))
    let path = String(cString: made)
    chmod(path, 0o755)
    return path
}

/// Runs `body` against a daemon on `fixture`; the daemon is killed and its
/// socket directory removed afterwards, however `body` ends. On failure the
/// daemon's log is attached to the test's issues.
func withReliabilityBed<T>(
    on fixture: StorageFixture, arguments extra: [String] = [], executablePrefix: [String] = [],
    _ body: (ReliabilityBed) async throws -> T
) async throws -> T {
    let directory = try makeSocketDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let socketPath = directory + "/pst.sock"
    let arguments = ReliabilityBed.arguments(fixture: fixture, socketPath: socketPath, extra: extra)
    // `prlimit --nofile=... -- kvmd-pst ...` execs the daemon, so the pid stays the daemon's.
    let executable = executablePrefix.first ?? BuiltProducts.path(of: "kvmd-pst")
    let fullArguments = executablePrefix.isEmpty
        ? arguments : Array(executablePrefix.dropFirst()) + [BuiltProducts.path(of: "kvmd-pst")] + arguments
    return try await withDaemonProcess(arguments: fullArguments, socketPath: socketPath, executable: executable) { daemon in
        do {
            return try await body(ReliabilityBed(fixture: fixture, daemon: daemon, socketPath: socketPath, arguments: arguments))
        } catch {
            Issue.record("daemon log:\n\(daemon.log.suffix(20_000))")
            throw error
        }
    }
}

/// A fresh fixture and a daemon on it.
func withReliabilityBed<T>(
    fixture options: StorageFixture.Options = .init(), arguments extra: [String] = [], executablePrefix: [String] = [],
    _ body: (ReliabilityBed) async throws -> T
) async throws -> T {
    try await withStorageFixture(options) { fixture in
        try await withReliabilityBed(on: fixture, arguments: extra, executablePrefix: executablePrefix, body)
    }
}

/// Whether process `pid` is alive: it exists and is not a zombie (an orphan's
/// zombie may wait for a reaper that a container does not have).
func processIsAlive(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
