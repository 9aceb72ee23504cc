import PersistentStorageProtocol
import ArgumentParser
import Foundation
import Glibc
import KvmdConfiguration
import PersistentStorage
import PersistentStorageDaemon
import PersistentStorageMount
import SystemSupport

/// `kvmd-pst status`: who holds the storage, and who blocks it, for a person
/// (or with `--json` for a script). Asks the running daemon; when none
/// answers, reads the mount state from the kernel and says so.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the storage's mount state, the sessions, remounts, the last error and who holds it busy.",
        discussion: """
            Takes the daemon's --socket and --fstab, and kvmd's configuration options (see kvmd-pst --help), to find the socket and the storage as the daemon does.

            Exit status: 0 when the daemon answers, 1 when it answers but the storage is writable with no session or is not usable (not mounted, covered by another mount, filesystem errors), or the report could not be written, 2 when the options or the fstab are wrong, 3 when no daemon answers (not running, or listening but not answering: then it says so and gives no advice to remount).
            """)

    /// `--socket`, `--fstab` and kvmd's configuration options are the
    /// daemon's own (`kvmd-pst status --socket PATH` works as with `--run`).
    @ParentCommand var daemon: KvmdPst

    @Flag(name: .long, help: "Print JSON: the daemon's GET /state result (null when none answers) and the mount state.")
    var json = false

    func run() async throws {
        let settings: DaemonConfiguration
        let mountPath: String
        do {
            settings = try daemon.configurationForStatus()
            mountPath = try FstabReader(path: settings.fstabPath).findStorage().location.mountPath
        } catch {
            throw ValidationError("\(error)")
        }
        let socketPath = settings.socketPath
        let mountState = MountedStorage(mountPath: mountPath, fstabPath: settings.fstabPath).state()
        var daemon: DaemonState?
        var daemonError: String?
        var daemonIsThere = false
        do {
            daemon = try await PersistentStorageClient(socketPath: socketPath, timeout: .seconds(3)).state()
        } catch {
            daemonError = "\(error)"
            // Only "nothing listens" means no daemon; a timeout, a refusal or
            // a broken answer comes from one that is there.
            if case PersistentStorageError.daemonNotRunning = error {} else { daemonIsThere = true }
        }
        let report = StatusReport(
            mountPath: mountPath, mountState: mountState, socketPath: socketPath, daemon: daemon, daemonError: daemonError,
            daemonIsThere: daemonIsThere, now: time(nil))
        let output: String
        if json {
            struct Output: Encodable {
                var mountPath: String
                var mountState: String
                var socketPath: String
                var daemon: DaemonState?
                var daemonError: String?

                /// `daemon` and `daemonError` as `null` when absent, as documented.
                func encode(to encoder: any Encoder) throws {
                    enum Key: String, CodingKey { case mountPath, mountState, socketPath, daemon, daemonError }
                    var container = encoder.container(keyedBy: Key.self)
                    try container.encode(mountPath, forKey: .mountPath)
                    try container.encode(mountState, forKey: .mountState)
                    try container.encode(socketPath, forKey: .socketPath)
                    try container.encode(daemon, forKey: .daemon)
                    try container.encode(daemonError, forKey: .daemonError)
                }
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            let data = try encoder.encode(Output(
                mountPath: mountPath, mountState: "\(mountState)", socketPath: socketPath, daemon: daemon, daemonError: daemonError))
            output = String(decoding: data, as: UTF8.self) + "\n"
        } else {
            output = report.text
        }
        // A report nobody received (stdout full or closed) is no success.
        if let error = writeAll(output, to: STDOUT_FILENO) {
            writeToStandardError("kvmd-pst status: cannot write the report: \(String(cString: strerror(error)))\n")
            throw ExitCode(1)
        }
        if report.exitStatus != 0 { throw ExitCode(report.exitStatus) }
    }
}
