import Foundation
import Glibc
import PersistentStorage
import PersistentStorageTestSupport
import Testing

/// The real kvmd's harness (`../shared/reference/harness`), brought up by
/// `make test-kvmd` (Scripts/test-kvmd.sh) with `PST_NO_DAEMON=1`: a real
/// ext4 loop mount in a private mount namespace, kvmd's config paths and the
/// real, unmodified kvmd 4.197 `kvmd-pst`, `kvmd-pstrun` and remount helper.
/// Tests start the daemon they need on that storage (kvmd's or ours) and run
/// either `kvmd-pstrun` in the namespace, where the storage is mounted.
///
/// `PST_KVMD_ANCHOR_ENV` is the harness's `anchor.env`, `PST_KVMD_HARNESS`
/// its directory; without them the suite is disabled (`make test` does not
/// set up the harness; `make test-kvmd` does and checks that nothing was
/// skipped).
struct KvmdAnchor: Sendable {
    static let environmentFile = ProcessInfo.processInfo.environment["PST_KVMD_ANCHOR_ENV"]
    static var enabled: Bool { environmentFile != nil }

    /// The heartbeat both daemons run with here (`pst.server.heartbeat` in the
    /// harness's override, `--heartbeat` for ours): short, so that a session
    /// of a few seconds outlasts several.
    static let heartbeatSeconds = 2.0
    /// `pst.ro_cleanup_delay` / `--ro-cleanup-delay`: a shutdown with clients waits this long.
    static let cleanupDelaySeconds = 1.0

    let harness: String
    let directory: String
    let socket: String
    let mount: String
    let namespace: String
    let bin: String
    let log: String
    let kvmdVersion: String
    /// The venv kvmd runs in, and kvmd's source tree.
    let venv: String
    let kvmdSource: String

    static func load() throws -> KvmdAnchor {
        let file = try #require(environmentFile, "PST_KVMD_ANCHOR_ENV is not set (run make test-kvmd)")
        let harness = try #require(ProcessInfo.processInfo.environment["PST_KVMD_HARNESS"], "PST_KVMD_HARNESS is not set")
        var values: [String: String] = [:]
        for line in try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            values[String(line[..<equals])] = String(line[line.index(after: equals)...])
        }
        func value(_ key: String) throws -> String { try #require(values[key], "\(key) missing in \(file)") }
        return KvmdAnchor(
            harness: harness, directory: try value("PST_ANCHOR_DIR"), socket: try value("PST_SOCK"), mount: try value("PST_MOUNT"),
            namespace: try value("PST_NS"), bin: try value("PST_BIN"), log: try value("PST_LOG"),
            kvmdVersion: try value("KVMD_VERSION"), venv: try value("KVMD_VENV"), kvmdSource: try value("KVMD_SRC"))
    }

    // MARK: - Inside the namespace

    /// `arguments` run inside the anchor's mount namespace, where the storage is mounted.
    func inNamespace(_ arguments: [String]) -> [String] {
        ["nsenter", "--mount=" + namespace, "--wd=/", "--"] + arguments
    }

    /// Runs `arguments` in the namespace and waits for it.
    @discardableResult
    func run(_ arguments: [String]) async throws -> (status: Int32, standardOutput: String, standardError: String) {
        try await execute(inNamespace(arguments))
    }

    /// Whether the storage's mount is read-write (`rw`) or read-only (`ro`),
    /// from the mount table of the namespace the daemons and clients share.
    func mountMode() async throws -> String {
        let options = try await run(["findmnt", "-n", "-o", "OPTIONS", "--mountpoint", mount]).standardOutput
        return String(options.prefix { $0 != "," }).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether the storage becomes read-only within `timeout`.
    func becomesReadOnly(within timeout: Duration = .seconds(20)) async -> Bool {
        await eventually(within: timeout) { (try? await mountMode()) == "ro" }
    }

    /// A file on the storage, as the namespace sees it; nil if it cannot be read.
    func contents(of path: String) async throws -> String? {
        let result = try await run(["cat", path])
        return result.status == 0 ? result.standardOutput : nil
    }

    /// `GET /state`, raw: the status line and headers, and the body as JSON.
    func rawState() async throws -> (head: String, json: [String: Any]) {
        let curl = try await execute(["curl", "-sS", "-i", "--max-time", "10", "--unix-socket", socket, "http://localhost/state"])
        guard curl.status == 0 else { throw AnchorError("GET /state: \(curl.standardError)") }
        let output = curl.standardOutput
        let parts = output.components(separatedBy: "\r\n\r\n")
        let head = parts.first ?? ""
        let body = parts.dropFirst().joined(separator: "\r\n\r\n")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any], "not a JSON object: \(body)")
        return (head, json)
    }

    // MARK: - Daemons

    enum Daemon: String, CustomTestStringConvertible, Sendable {
        case kvmd, ours
        var testDescription: String { self == .kvmd ? "kvmd's daemon" : "our daemon" }
    }

    /// Runs `body` while `daemon` serves the anchor's storage; stops it
    /// (SIGTERM, as systemd does) however `body` ends, unless `body` did.
    /// `ourOptions` are added to our daemon's command line.
    func withDaemon<T>(_ daemon: Daemon, ourOptions: [String] = [], _ body: (RunningDaemon) async throws -> T) async throws -> T {
        let running = try await start(daemon, ourOptions: ourOptions)
        do {
            let result = try await body(running)
            try await running.stop()
            return result
        } catch {
            _ = try? await running.stop()
            throw error
        }
    }

    /// The harness's `daemon.sh`, which controls kvmd's daemon only.
    func daemonScript(_ action: String) -> [String] {
        ["env", "PST_ANCHOR_DIR=" + directory, harness + "/daemon.sh", action]
    }

    private func start(_ daemon: Daemon, ourOptions: [String]) async throws -> RunningDaemon {
        switch daemon {
        case .kvmd:
            let started = try await execute(daemonScript("start"))
            guard started.status == 0 else { throw AnchorError("kvmd's kvmd-pst did not start: \(started.standardError)") }
            return RunningDaemon(anchor: self, kind: .kvmd, process: nil)
        case .ours:
            let process = try ChildProcess(inNamespace([
                BuiltProducts.path(of: "kvmd-pst"), "--run", "--socket", socket, "--fstab", "/etc/fstab",
                "--heartbeat", String(Self.heartbeatSeconds), "--ro-cleanup-delay", String(Self.cleanupDelaySeconds),
            ] + ourOptions), standardOutput: log, standardError: log)
            let running = RunningDaemon(anchor: self, kind: .ours, process: process)
            let serving = await eventually(within: .seconds(30)) {
                guard process.isRunning else { return true }
                return (try? await PersistentStorageClient(socketPath: socket).state()) != nil
            }
            guard serving, process.isRunning else {
                _ = try? await running.stop()
                throw AnchorError("our kvmd-pst did not start serving \(socket); see \(log)")
            }
            return running
        }
    }

    // MARK: - Clients

    enum Client: String, CustomTestStringConvertible, Sendable {
        case kvmd, ours
        var testDescription: String { self == .kvmd ? "kvmd's kvmd-pstrun" : "our kvmd-pstrun" }
    }

    /// `kvmd-pstrun ARGS -- COMMAND`, as `client` is started: kvmd's finds the
    /// socket in kvmd's config tree (the harness's override), ours is told it.
    func pstrunArguments(_ client: Client, options: [String] = [], command: [String]) -> [String] {
        switch client {
        case .kvmd: [bin + "/kvmd-pstrun"] + options + ["--"] + command
        // No --socket: ours finds it in kvmd's configuration tree of the
        // harness (pst.server.unix in /etc/kvmd/override.d), as kvmd's does.
        case .ours: [BuiltProducts.path(of: "kvmd-pstrun")] + options + ["--"] + command
        }
    }

    /// Starts `kvmd-pstrun -- command` in the namespace, in the background.
    func startPstrun(_ client: Client, command: [String]) throws -> RunningCommand {
        try RunningCommand(inNamespace(pstrunArguments(client, command: command)))
    }

    /// Runs `kvmd-pstrun -- command` in the namespace and waits for it.
    func pstrun(_ client: Client, command: [String]) async throws -> RunningCommand.Finished {
        let running = try startPstrun(client, command: command)
        let exited = await running.exits(within: .seconds(60))
        let finished = try running.finish()
        #expect(exited, "kvmd-pstrun did not exit within 60 s: \(finished.standardError)")
        return finished
    }
}

struct AnchorError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A daemon serving the anchor's storage.
struct RunningDaemon: Sendable {
    let anchor: KvmdAnchor
    let kind: KvmdAnchor.Daemon
    let process: ChildProcess?

    /// Stops it with SIGTERM as systemd does, and waits for it to exit
    /// (SIGKILL after 30 s). Returns its exit status (nil for kvmd's, which
    /// the harness stops).
    @discardableResult
    func stop() async throws -> Int32? {
        guard let process else {
            let stopped = try await execute(anchor.daemonScript("stop"))
            guard stopped.status == 0 else { throw AnchorError("kvmd's kvmd-pst did not stop: \(stopped.standardError)") }
            return nil
        }
        if let status = process.exitStatus { return status }
        kill(process.pid, SIGTERM)
        if await !process.exits(within: .seconds(30)) {
            kill(process.pid, SIGKILL)
            _ = await process.exits(within: .seconds(5))
            throw AnchorError("our kvmd-pst ignored SIGTERM for 30 s")
        }
        return process.exitStatus
    }
}

/// A command started in the background, its output going to files.
final class RunningCommand: Sendable {
    let process: ChildProcess
    let directory: String

    init(_ arguments: [String]) throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "kvmd-interop-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process = try ChildProcess(arguments, standardOutput: directory + "/stdout", standardError: directory + "/stderr")
    }

    deinit {
        if process.isRunning { kill(process.pid, SIGKILL) }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Whether it exits within `timeout`; if not, it is killed.
    func exits(within timeout: Duration) async -> Bool {
        if await process.exits(within: timeout) { return true }
        kill(process.pid, SIGKILL)
        _ = await process.exits(within: .seconds(5))
        return false
    }

    struct Finished: Sendable {
        var status: Int32
        var standardOutput: String
        var standardError: String

        /// The stderr lines that kvmd-pstrun logged (`--    INFO -- ...`), without their prefix.
        var logLines: [String] {
            standardError.split(separator: "\n").compactMap { line in
                guard line.hasPrefix("-- "), let range = line.range(of: " -- ", range: line.index(line.startIndex, offsetBy: 3)..<line.endIndex) else { return nil }
                return String(line[range.upperBound...])
            }
        }
    }

    /// Its status (128+N for signal N) and output; call after it exited.
    func finish() throws -> Finished {
        guard let status = process.exitStatus else { throw AnchorError("still running") }
        return Finished(
            status: status,
            standardOutput: (try? String(contentsOfFile: directory + "/stdout", encoding: .utf8)) ?? "",
            standardError: (try? String(contentsOfFile: directory + "/stderr", encoding: .utf8)) ?? "")
    }
}

/// A directory for the files a script creates to say where it is, outside
/// the storage (`/tmp` is the same in the anchor's namespace), open to the
/// users scripts run as; removed with this object.
final class Markers: Sendable {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appending(path: "kvmd-markers-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o777)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { directory + "/" + name }

    /// Creates the file `name`, for a script that waits for it.
    func create(_ name: String) { _ = FileManager.default.createFile(atPath: path(name), contents: nil) }

    /// Whether the file `name` appears within `timeout`.
    func wait(for name: String, within timeout: Duration = .seconds(60)) async -> Bool {
        let path = path(name)
        return await eventually(within: timeout) { FileManager.default.fileExists(atPath: path) }
    }
}
