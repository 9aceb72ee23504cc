import Foundation
import Glibc

/// A stand-in for the Python `kvmd-pst`, written by this project from the
/// protocol contract on top of aiohttp, the library the reference uses
/// (`Tests/Interop/pst_peer.py`). Compatibility with the real kvmd is tested
/// against the real one (`make test-kvmd`); the stand-in plays only what
/// that harness cannot boot: a kvmd 4.8 to 4.35 daemon, whose event is
/// named `storage_state`.
public enum ReferencePeer {
    /// `Tests/Interop/pst_peer.py` in this checkout.
    public static let script: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Tests/Interop/pst_peer.py").path

    /// Whether python3 with aiohttp is here. CI installs it
    /// (`Scripts/install-deps.sh`) and requires the tests, like real mounts.
    public static let available: Bool =
        (try? SystemCommand.execute(["python3", "-c", "import aiohttp"]).status) == 0

    /// Use as `@Test(.enabled(if: ReferencePeer.enabled))`.
    public static var enabled: Bool { (available && RealMounts.available) || RealMounts.required }

    /// Runs `body` while the aiohttp `kvmd-pst` stand-in serves `socketPath`,
    /// remounting with `remountCommand` (`{mode}` becomes rw or ro) and
    /// naming its event `eventType` (`storage`, or `storage_state`). The
    /// daemon is killed however `body` ends. `body` gets the daemon's pid.
    public static func withDaemon<T>(
        socketPath: String, dataPath: String, remountCommand: [String], eventType: String = "storage",
        _ body: (pid_t) async throws -> T
    ) async throws -> T {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "daemon", "--socket", socketPath, "--data-path", dataPath,
                             "--remount-cmd", remountCommand.joined(separator: " "), "--event-type", eventType]
        process.standardInput = FileHandle.nullDevice
        try SystemCommand.launch(process)
        defer {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        let started = await eventually(within: .seconds(15)) {
            RawUnixSocketClient.isAccepting(socketPath) || !process.isRunning
        }
        guard started, process.isRunning else {
            throw SystemCommandError(arguments: process.arguments ?? [], status: process.isRunning ? -1 : process.terminationStatus,
                                     output: "the aiohttp daemon did not start listening on \(socketPath)")
        }
        return try await body(process.processIdentifier)
    }
}
