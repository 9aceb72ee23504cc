import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

/// How a daemon that had to give up ended: promptly, non-zero, with the
/// cause in one line.
struct DaemonExit: CustomStringConvertible {
    var status: Int32
    var log: String
    var elapsed: Duration
    var description: String { "exit \(status) after \(elapsed); log:\n\(log)" }

    /// The critical lines: the one line that says why the daemon stopped.
    var criticalLines: [Substring] { log.split(separator: "\n").filter { $0.contains("CRITICAL --") } }
}

/// Runs `kvmd-pst` expecting it to stop by itself; kills it (and fails) if
/// it is still running after `timeout`.
func runDaemonToExit(_ arguments: [String], asUser user: String? = nil, timeout: Duration = .seconds(10)) async throws -> DaemonExit {
    let directory = try makeSocketDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let logPath = directory + "/daemon.log"
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    let process = Process()
    let daemon = BuiltProducts.path(of: "kvmd-pst")
    if let user {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments = ["--reuid", user, "--regid", "nogroup", "--clear-groups", daemon] + arguments
    } else {
        process.executableURL = URL(fileURLWithPath: daemon)
        process.arguments = arguments
    }
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    process.standardError = log
    process.standardOutput = log
    process.standardInput = FileHandle.nullDevice
    let clock = ContinuousClock()
    let start = clock.now
    try SystemCommand.launch(process)
    try? log.close()
    defer {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }
    while process.isRunning {
        if clock.now - start > timeout {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            Issue.record("kvmd-pst still running after \(timeout); log:\n\(text)")
            break
        }
        try await Task.sleep(for: .milliseconds(10))
    }
    let elapsed = clock.now - start
    if process.isRunning {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
    let status = process.terminationReason == .uncaughtSignal ? 128 + process.terminationStatus : process.terminationStatus
    return DaemonExit(status: status, log: (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "", elapsed: elapsed)
}

extension Reliability {
    /// Issue 13, items 5, 6 and 7: every way the daemon can fail to start ends
    /// the process at once, with one line naming the cause, a non-zero status,
    /// nothing of the administrator's deleted, and the storage read-only.
    @Suite("Start-up failures", .enabled(if: RealMounts.enabled))
    struct StartUpFailureTests {
        private static func arguments(_ fixture: StorageFixture, socket: String, _ extra: [String] = []) -> [String] {
            ["--run", "--fstab", fixture.fstabPath, "--socket", socket, "--socket-group", "", "--log-level", "info"] + extra
        }

        private func expectCleanFailure(
            _ exit: DaemonExit, naming cause: String, fixture: StorageFixture,
            sourceLocation: SourceLocation = #_sourceLocation
        ) {
            #expect(exit.status == 1, "\(exit)", sourceLocation: sourceLocation)
            #expect(exit.elapsed < .seconds(5), "\(exit)", sourceLocation: sourceLocation)
            #expect(exit.criticalLines.count == 1, "\(exit)", sourceLocation: sourceLocation)
            #expect(exit.criticalLines.first?.contains(cause) == true, "expected '\(cause)' in: \(exit)", sourceLocation: sourceLocation)
            #expect(!exit.log.contains("Cannot schedule tasks"), "\(exit)", sourceLocation: sourceLocation)
            #expect(fixture.state == .readOnly, "\(exit)", sourceLocation: sourceLocation)
        }

        @Test("A socket path it cannot use: missing directory, a directory, under /proc, a file, a FIFO, a symlink")
        func unusableSocketPaths() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let file = directory + "/file.sock"
                try "the administrator's file".write(toFile: file, atomically: false, encoding: .utf8)
                let fifo = directory + "/fifo.sock"
                #expect(mkfifo(fifo, 0o600) == 0)
                let link = directory + "/link.sock"
                #expect(symlink(file, link) == 0)
                let cases: [(socket: String, cause: String)] = [
                    (directory + "/missing/pst.sock", "its directory \(directory)/missing does not exist"),
                    (directory, "a directory is there, not a socket"),
                    ("/proc/pst.sock", "/proc/pst.sock"),
                    (file, "a regular file is there, not a socket"),
                    (fifo, "a FIFO is there, not a socket"),
                    (link, "a symbolic link is there, not a socket"),
                ]
                for (socket, cause) in cases {
                    let exit = try await runDaemonToExit(Self.arguments(fixture, socket: socket))
                    expectCleanFailure(exit, naming: cause, fixture: fixture)
                }
                // Nothing the administrator had there was touched.
                #expect(try String(contentsOfFile: file, encoding: .utf8) == "the administrator's file")
                var info = stat()
                #expect(lstat(fifo, &info) == 0 && info.st_mode & S_IFMT == S_IFIFO)
                #expect(lstat(link, &info) == 0 && info.st_mode & S_IFMT == S_IFLNK)
                // And nothing touched the mount: no remount was counted anywhere, the storage stayed RO.
                #expect(fixture.state == .readOnly)
            }
        }

        @Test("An fstab that is a FIFO or /dev/zero, or names nothing mounted: one line, at once")
        func unusableFstab() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let fifo = directory + "/fstab"
                #expect(mkfifo(fifo, 0o600) == 0)
                let unmounted = directory + "/fstab-unmounted"
                try "/dev/null \(directory)/nothing ext4 ro,X-kvmd.pst-user=nobody 0 0\n"
                    .write(toFile: unmounted, atomically: false, encoding: .utf8)
                let cases: [(fstab: String, cause: String)] = [
                    (fifo, "cannot read \(fifo): it is a FIFO, not a regular file"),
                    ("/dev/zero", "cannot read /dev/zero: it is a character device, not a regular file"),
                    (unmounted, "nothing is mounted at \(directory)/nothing"),
                ]
                for (fstab, cause) in cases {
                    let socket = directory + "/pst.sock"
                    let exit = try await runDaemonToExit(Self.arguments(fixture, socket: socket) + ["--fstab", fstab])
                    expectCleanFailure(exit, naming: cause, fixture: fixture)
                    #expect(!FileManager.default.fileExists(atPath: socket))
                }
            }
        }

        @Test("A configuration that cannot work: a config file that is a device, a remount command that does not exist")
        func unusableConfiguration() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let socket = directory + "/pst.sock"
                let config = try await runDaemonToExit(Self.arguments(fixture, socket: socket) + ["--config", "/dev/zero"])
                #expect(config.status != 0 && config.elapsed < .seconds(5), "\(config)")
                #expect(config.criticalLines.count == 1 && config.log.contains("/dev/zero: it is a character device, not a regular file"), "\(config)")
                let command = try await runDaemonToExit(
                    Self.arguments(fixture, socket: socket) + ["--remount-command", "/nonexistent/helper {mode}"])
                expectCleanFailure(command, naming: "cannot run the remount command '/nonexistent/helper rw'", fixture: fixture)
            }
        }

        @Test("Run as an unprivileged user with no remount command (kvmd's unit): kvmd's default, sudo and its helper, is used and said so; the storage stays read-only")
        func unprivilegedUsesKvmdDefaultCommand() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                #expect(chown(directory, getpwnam("nobody")!.pointee.pw_uid, gid_t.max) == 0)
                // The fixture's own directory is root's alone; nobody may read this copy.
                let fstab = directory + "/fstab"
                try FileManager.default.copyItem(atPath: fixture.fstabPath, toPath: fstab)
                #expect(chmod(fstab, 0o644) == 0)
                // Whether sudo is installed or not, the daemon may not remount by
                // itself: either the command cannot run (exit 1 at start), or sudo
                // refuses (the daemon serves and says why); `timeout` ends the second.
                let result = try await SystemCommand.execute([
                    "timeout", "5", "setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                    BuiltProducts.path(of: "kvmd-pst"),
                ] + Self.arguments(fixture, socket: directory + "/pst.sock") + ["--fstab", fstab])
                let log = result.standardOutput + result.standardError
                #expect(log.contains("this process may not remount (it is not root and lacks CAP_SYS_ADMIN): using kvmd's default, /usr/bin/sudo --non-interactive /usr/bin/kvmd-helper-pst-remount {mode}"), "\(log)")
                #expect(!log.contains("not permitted (needs root"), "\(log)")
                #expect(fixture.state == .readOnly)
            }
        }

        @Test("A second instance on the same socket refuses to start and touches neither the socket nor the mount")
        func secondInstanceRefused() async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                defer { session.close() }
                let before = try bed.remounts()
                let exit = try await runDaemonToExit(Self.arguments(bed.fixture, socket: bed.socketPath))
                #expect(exit.status == 1, "\(exit)")
                #expect(exit.criticalLines.count == 1, "\(exit)")
                #expect(exit.criticalLines.first?.contains("another kvmd-pst is already running on \(bed.socketPath)") == true, "\(exit)")
                // The first daemon still serves its session, on its own socket, and nobody remounted.
                #expect(bed.fixture.state == .readWrite)
                #expect(try bed.remounts() == before)
                #expect(try bed.clients() == 1)
                try session.sendText(#"{"event_type": "ping", "event": {}}"#)
                #expect(try session.readJSONMessage()?["event_type"] as? String == "pong")
                try bed.expectWellBehavedClientServed("after the second instance gave up")
            }
        }

        @Test("A foreign daemon already serving on the socket (no lock of ours) is not displaced")
        func foreignServerNotDisplaced() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let socket = directory + "/pst.sock"
                let listener = try ListeningTestSocket(path: socket)
                defer { listener.close() }
                let exit = try await runDaemonToExit(Self.arguments(fixture, socket: socket))
                expectCleanFailure(exit, naming: "another daemon is already serving on \(socket)", fixture: fixture)
                #expect(RawUnixSocketClient.isAccepting(socket))
            }
        }

        @Test("A stale socket left by a crash is replaced, and the lock left by a crash does not block")
        func staleSocketAndLockReplaced() async throws {
            try await withStorageFixture { fixture in
                let arguments = ["--ro-cleanup-delay", "0"]
                try await withDaemonTestBed(on: fixture, arguments: arguments) { bed in
                    bed.daemon.terminate(signal: SIGKILL)
                    _ = try await bed.daemon.waitForExit()
                    #expect(FileManager.default.fileExists(atPath: bed.socketPath))
                    #expect(FileManager.default.fileExists(atPath: bed.socketPath + ".lock"))
                    try await withDaemonProcess(arguments: bed.arguments, socketPath: bed.socketPath) { (again: DaemonProcess) async throws -> Void in
                        #expect(try bed.clients() == 0)
                        again.terminate()
                        #expect(try await again.waitForExit() == 0)
                    }
                }
            }
        }
    }
}

/// A plain listening Unix socket: what another daemon on the path looks like.
final class ListeningTestSocket {
    let fd: Int32

    init(path: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(bound == 0 && listen(fd, 8) == 0, "cannot listen on \(path): \(String(cString: strerror(errno)))")
    }

    func close() { _ = Glibc.close(fd) }
}
