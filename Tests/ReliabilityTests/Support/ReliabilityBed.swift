import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

/// The reliability tests' test bed is the shared one; here are the probes
/// only they need: a well-behaved client timed while hostile peers are at
/// work, and the daemon's own resource use from procfs.
typealias ReliabilityBed = DaemonTestBed

extension DaemonTestBed {
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

    /// CPU time (user and system) the daemon has used so far, from `/proc/PID/stat`.
    func daemonCPUTime() throws -> Duration {
        let stat = try String(contentsOfFile: "/proc/\(daemon.pid)/stat", encoding: .utf8)
        // Fields after the command name, which may hold spaces: state is the first, utime the 12th, stime the 13th.
        let fields = try #require(stat.lastIndex(of: ")").map { stat[stat.index($0, offsetBy: 2)...].split(separator: " ") })
        let ticks = try #require(Int(fields[11])) + (try #require(Int(fields[12])))
        return .milliseconds(ticks * 1000 / sysconf(Int32(_SC_CLK_TCK)))
    }

    /// The daemon's log, one entry per line.
    var daemonLogLines: [Substring] { daemon.log.split(separator: "\n") }

    /// Open file descriptors, from `/proc/PID/fd`.
    func daemonOpenDescriptors() throws -> Int {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(daemon.pid)/fd").count
    }
}


/// A daemon on `fixture`, logging at info level (the load tests make a lot of debug lines).
func withReliabilityBed<T>(
    on fixture: StorageFixture, arguments extra: [String] = [], executablePrefix: [String] = [],
    _ body: (ReliabilityBed) async throws -> T
) async throws -> T {
    try await withDaemonTestBed(on: fixture, arguments: extra, logLevel: "info", executablePrefix: executablePrefix, body)
}

/// A fresh fixture and a daemon on it.
func withReliabilityBed<T>(
    fixture options: StorageFixture.Options = .init(), arguments extra: [String] = [], executablePrefix: [String] = [],
    _ body: (ReliabilityBed) async throws -> T
) async throws -> T {
    try await withDaemonTestBed(fixture: options, arguments: extra, logLevel: "info", executablePrefix: executablePrefix, body)
}

/// Whether process `pid` is alive: it exists and is not a zombie (an orphan's
/// zombie may wait for a reaper that a container does not have).
func processIsAlive(_ pid: pid_t) -> Bool {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return false }
    let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
    return state != "Z" && state != "X"
}
