import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

/// `kvmd-pst status` against a real daemon on a real mount, and without one.
@Suite("kvmd-pst status", .serialized, .enabled(if: RealMounts.enabled))
struct StatusCommandTests {
    private static func status(_ arguments: [String]) async throws -> SystemCommand.Result {
        try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "status"] + arguments)
    }

    @Test("with sessions: the mount state, each session (pid, user, command, age), remounts; --json the same as data; exit 0")
    func sessions() async throws {
        try await withReliabilityBed { bed in
            let session = try bed.openWritableSession()
            defer { session.close() }
            let result = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            #expect(result.status == 0, "\(result.standardOutput)\(result.standardError)")
            let text = result.standardOutput
            #expect(text.contains("storage: \(bed.fixture.mountPath) is read-write (from the kernel)"), "\(text)")
            #expect(text.contains("daemon: running on \(bed.socketPath)"), "\(text)")
            #expect(text.contains("sessions: 1\n  #1: pid \(getpid()) ("), "\(text)")
            #expect(text.contains("user root, open for "), "\(text)")
            #expect(text.contains("remounts: 2 read-write, 1 read-only, 0 failed"), "\(text)")

            let json = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath, "--json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(json.standardOutput.utf8)) as? [String: Any])
            #expect(object["mountState"] as? String == "read-write")
            let daemon = try #require(object["daemon"] as? [String: Any])
            #expect((daemon["sessions"] as? [[String: Any]])?.first?["pid"] as? Int == Int(getpid()))
        }
    }

    @Test("no daemon: says so, exit 3; and warns when the storage is writable without one")
    func noDaemon() async throws {
        try await withStorageFixture { fixture in
            let socket = fixture.directory + "/nobody-here.sock"
            let readOnly = try await Self.status(["--socket", socket, "--fstab", fixture.fstabPath])
            #expect(readOnly.status == 3)
            #expect(readOnly.standardOutput.contains("storage: \(fixture.mountPath) is read-only"), "\(readOnly.standardOutput)")
            #expect(readOnly.standardOutput.contains("daemon: not running: no answer on \(socket)"), "\(readOnly.standardOutput)")
            #expect(!readOnly.standardOutput.contains("warning"))

            try await fixture.remountExternally(.readWrite)
            let writable = try await Self.status(["--socket", socket, "--fstab", fixture.fstabPath])
            #expect(writable.status == 3)
            #expect(writable.standardOutput.contains("warning: the storage is writable and no daemon is there to make it read-only again"), "\(writable.standardOutput)")
            #expect(writable.standardOutput.contains("mount -o remount,ro \(fixture.mountPath)"))
            try await fixture.remountExternally(.readOnly)
        }
    }

    @Test("busy: who holds the storage and what to do; exit 1 while it is writable with no session")
    func busy() async throws {
        try await withReliabilityBed { bed in
            let session = try bed.openWritableSession()
            let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/held-open")
            defer { kill(holder.pid, SIGKILL) }
            session.close()
            #expect(try await eventually(within: .seconds(5)) { try bed.state()["busy"] != nil })
            let result = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            #expect(result.status == 1, "\(result.standardOutput)")
            #expect(result.standardOutput.contains("busy: the kernel refused to make it read-only because of:\n  pid \(holder.pid) (sleep): \(bed.fixture.dataPath)/held-open, open for writing"), "\(result.standardOutput)")
            #expect(result.standardOutput.contains("last error: cannot remount"), "\(result.standardOutput)")
            kill(holder.pid, SIGKILL)
            _ = await holder.finish()
            #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
        }
    }
}
