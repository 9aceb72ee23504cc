import SystemSupport
import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@Suite("How the daemon is deployed: remount helper, systemd", .serialized)
struct DeploymentTests {
    static var helperIsBuilt: Bool {
        RealMounts.enabled && FileManager.default.isExecutableFile(atPath: BuiltProducts.path(of: "kvmd-helper-pst-remount"))
    }

    @Test("--remount-command runs the helper with {mode}, like the reference's remount_cmd", .enabled(if: helperIsBuilt))
    func remountThroughHelper() async throws {
        try await withStorageFixture { fixture in
            let command = "\(BuiltProducts.path(of: "kvmd-helper-pst-remount")) {mode} --fstab \(fixture.fstabPath)"
            try await withDaemonTestBed(on: fixture, arguments: ["--remount-command", command]) { bed in
                #expect(try bed.remounts() == .init(rw: 1, ro: 1, failed: 0))
                let session = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == true)
                #expect(fixture.state == .readWrite)
                session.close()
                #expect(await eventually { fixture.state == .readOnly })
            }
        }
    }

    @Test("a failing remount command's stderr is the reason shown in /state", .enabled(if: RealMounts.enabled))
    func failingCommand() async throws {
        try await withStorageFixture { fixture in
            let script = fixture.directory + "/refuse.sh"
            try "#!/bin/sh\necho \"sudo: a password is required ($1)\" >&2\nexit 1\n".write(toFile: script, atomically: true, encoding: .utf8)
            chmod(script, 0o755)
            try await withDaemonTestBed(on: fixture, arguments: ["--remount-command", "\(script) {mode}"]) { bed in
                let session = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == false)
                let error = try #require(bed.state()["error"] as? String)
                #expect(error.contains("sudo: a password is required (rw)"), "\(error)")
                #expect(bed.daemon.isRunning)
            }
        }
    }

    @Test("READY=1 once listening, STATUS= with the session count, and STOPPING=1 on shutdown go to NOTIFY_SOCKET (a path, or an abstract \"@name\")",
          .enabled(if: RealMounts.enabled), arguments: [false, true])
    func systemdNotification(abstract: Bool) async throws {
        try await withStorageFixture { fixture in
            let receiver = try DatagramReceiver(
                path: abstract ? "@swift-pst-notify-\(getpid())-\(UInt32.random(in: 0 ... .max))" : fixture.directory + "/notify")
            // An abstract name is no file: so the daemon can only reach it in the abstract namespace.
            #expect(FileManager.default.fileExists(atPath: receiver.path) == !abstract)
            try await withDaemonTestBed(on: fixture, environment: ["NOTIFY_SOCKET": receiver.path]) { bed in
                let ready = try #require(receiver.receive(timeout: .seconds(5)))
                #expect(ready.contains("READY=1"), "\(ready)")
                let session = try bed.openSession()
                var status = ""
                while !status.contains("STATUS=1 session(s), storage read-write"),
                      let message = receiver.receive(timeout: .seconds(5)) {
                    status = message
                }
                #expect(status == "STATUS=1 session(s), storage read-write")
                session.close()
                bed.daemon.terminate()
                var stopping = false
                while !stopping, let message = receiver.receive(timeout: .seconds(5)) {
                    stopping = message.contains("STOPPING=1")
                }
                #expect(stopping)
                #expect(try await bed.daemon.waitForExit() == 0)
            }
        }
    }
}

/// A bound Unix datagram socket standing in for systemd's notify socket;
/// a path starting with "@" is a name in the abstract namespace.
final class DatagramReceiver {
    let path: String
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        let address = try #require(UnixSocketAddress(path: path, abstract: true))
        let result = address.withSocketAddress { bind(fd, $0, $1) }
        // On failure deinit closes the descriptor (it runs for a class whose init throws).
        try #require(result == 0, "bind \(path): \(String(cString: strerror(errno)))")
    }

    deinit {
        close(fd)
        if !path.hasPrefix("@") { unlink(path) }
    }

    /// The next datagram as text, or nil after `timeout`.
    func receive(timeout: Duration) -> String? {
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, Int32(timeout.components.seconds * 1000)) == 1 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : nil
    }
}
