import Foundation
import Glibc
import PersistentStorage
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
            #expect(text.contains("storage: \(bed.fixture.mountPath): read-write (from the kernel)"), "\(text)")
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

    @Test("sessions from several processes and users: each with its own pid, uid, user and command, in GET /state and in status",
          .enabled(if: SystemCommand.exists("setpriv")))
    func severalProcessesAndUsers() async throws {
        try await withReliabilityBed(arguments: ["--socket-mode", "0660", "--socket-group", "nogroup"]) { bed in
            // mkdtemp made the fixture's directory 0700; nobody must reach the mount inside.
            chmod(bed.fixture.directory, 0o755)
            let script = ["/bin/sh", "-c", "echo held; exec sleep 3"]
            let asRoot = try ChildProcess(pstrunOn: bed.socketPath, command: script)
            defer { kill(asRoot.pid, SIGKILL) }
            // setpriv execs kvmd-pstrun: the pid stays the one started here.
            let asNobody = try ChildProcess(executable: "/usr/bin/setpriv", arguments: [
                "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                BuiltProducts.path(of: "kvmd-pstrun"), "--socket", bed.socketPath, "--",
            ] + script)
            defer { kill(asNobody.pid, SIGKILL) }
            #expect(await asRoot.nextOutputLine() == "held")
            #expect(await asNobody.nextOutputLine() == "held")

            let sessions = try #require(try bed.state()["sessions"] as? [[String: Any]])
            #expect(sessions.count == 2, "\(sessions)")
            let root = sessions.first { $0["uid"] as? Int == 0 }
            let nobody = sessions.first { $0["uid"] as? Int == 65534 }
            #expect(root?["pid"] as? Int == Int(asRoot.pid) && root?["user"] as? String == "root", "\(sessions)")
            #expect(nobody?["pid"] as? Int == Int(asNobody.pid) && nobody?["user"] as? String == "nobody", "\(sessions)")
            #expect(sessions.allSatisfy { $0["command"] as? String == "kvmd-pstrun" }, "\(sessions)")

            let result = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            #expect(result.status == 0, "\(result.standardOutput)")
            #expect(result.standardOutput.contains("sessions: 2\n"), "\(result.standardOutput)")
            #expect(result.standardOutput.contains("pid \(asRoot.pid) (kvmd-pstrun), user root, open for "), "\(result.standardOutput)")
            #expect(result.standardOutput.contains("pid \(asNobody.pid) (kvmd-pstrun), user nobody, open for "), "\(result.standardOutput)")
            #expect(await asRoot.finish()?.status == 0)
            #expect(await asNobody.finish()?.status == 0)
            #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
        }
    }

    @Test("no daemon: says so, exit 3; and warns when the storage is writable without one")
    func noDaemon() async throws {
        try await withStorageFixture { fixture in
            let socket = fixture.directory + "/nobody-here.sock"
            let readOnly = try await Self.status(["--socket", socket, "--fstab", fixture.fstabPath])
            #expect(readOnly.status == 3)
            #expect(readOnly.standardOutput.contains("storage: \(fixture.mountPath): read-only"), "\(readOnly.standardOutput)")
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

    @Test("a daemon that listens but does not answer (stopped): 'not answering', exit 3, and no advice to remount by hand")
    func daemonNotAnswering() async throws {
        try await withReliabilityBed { bed in
            let session = try bed.openWritableSession()
            defer { session.close() }
            kill(bed.daemon.pid, SIGSTOP)
            defer { kill(bed.daemon.pid, SIGCONT) }
            let result = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            kill(bed.daemon.pid, SIGCONT)
            #expect(result.status == 3, "\(result.standardOutput)")
            #expect(result.standardOutput.contains("daemon: not answering on \(bed.socketPath): "), "\(result.standardOutput)")
            #expect(result.standardOutput.contains("do not remount by hand"), "\(result.standardOutput)")
            #expect(!result.standardOutput.contains("mount -o remount,ro"), "\(result.standardOutput)")
        }
    }

    @Test("a report nobody receives (stdout is /dev/full) exits 1 and says so on stderr")
    func stdoutFull() async throws {
        try await withStorageFixture { fixture in
            let result = try await SystemCommand.execute([
                "/bin/sh", "-c", "\"$0\" status --socket \"$1\" --fstab \"$2\" > /dev/full",
                BuiltProducts.path(of: "kvmd-pst"), fixture.directory + "/nobody-here.sock", fixture.fstabPath,
            ])
            #expect(result.status == 1, "\(result.standardError)")
            #expect(result.standardError.contains("cannot write the report: No space left on device"), "\(result.standardError)")
        }
    }

    @Test("--json with no daemon: daemon is null, daemonError says why")
    func jsonWithoutDaemon() async throws {
        try await withStorageFixture { fixture in
            let socket = fixture.directory + "/nobody-here.sock"
            let result = try await Self.status(["--socket", socket, "--fstab", fixture.fstabPath, "--json"])
            #expect(result.status == 3)
            let object = try #require(try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8)) as? [String: Any])
            #expect(object.keys.contains("daemon") && object["daemon"] is NSNull, "\(result.standardOutput)")
            #expect((object["daemonError"] as? String)?.contains("no PST daemon at \(socket)") == true)
        }
    }

    @Test("control characters in a peer's command and in a busy file's name are escaped, not sent to the terminal")
    func escapesPeerText() async throws {
        try await withReliabilityBed { bed in
            // A session from a program whose name clears the screen and forges a line.
            let link = bed.fixture.directory + "/x\u{1B}[2J\nok"
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: BuiltProducts.path(of: "kvmd-pstrun"))
            let client = try ChildProcess(executable: link, arguments: ["--socket", bed.socketPath, "--", "/bin/sh", "-c", "echo held; exec sleep 1"])
            defer { kill(client.pid, SIGKILL) }
            #expect(await client.nextOutputLine() == "held")
            // A busy holder of a file whose name does the same.
            let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/a\u{1B}[2J\nstorage: fine")
            defer { kill(holder.pid, SIGKILL) }
            let withSession = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            #expect(withSession.standardOutput.contains(#"(x\x1b[2J\nok), user root"#), "\(withSession.standardOutput)")
            _ = await client.finish()
            #expect(try await eventually(within: .seconds(5)) { try bed.state()["busy"] != nil })
            let busy = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            for result in [withSession, busy] {
                #expect(!result.standardOutput.contains("\u{1B}"), "\(result.standardOutput)")
                #expect(!result.standardOutput.split(separator: "\n").contains { $0.hasPrefix("storage: fine") || $0.hasPrefix("ok)") })
            }
            #expect(busy.standardOutput.contains(#"/a\x1b[2J\nstorage: fine, open for writing"#), "\(busy.standardOutput)")
            kill(holder.pid, SIGKILL)
            _ = await holder.finish()
        }
    }

    @Test("a GET /state answer over 64 KiB (16 busy holders with 4 KiB paths) is read by the library and by status")
    func largeStateAnswer() async throws {
        try await withReliabilityBed { bed in
            let session = try bed.openWritableSession()
            // A directory chain 16 × 250 bytes deep, 16 files open for writing at its end.
            var directory = bed.fixture.dataPath
            for level in 0..<15 { directory += "/" + String(repeating: Character(String(level % 10)), count: 250) }
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var holders: [ChildProcess] = []
            defer { for holder in holders { kill(holder.pid, SIGKILL) } }
            for index in 0..<16 {
                holders.append(try await ChildProcess.holdingOpenForWriting(directory + "/" + String(repeating: "f", count: 200) + "\(index)"))
            }
            session.close()
            #expect(try await eventually(within: .seconds(5)) { (try bed.state()["busy"] as? [Any])?.count == 16 })
            let state = try await PersistentStorageClient(socketPath: bed.socketPath).state()
            #expect(state.busy?.count == 16)
            let result = try await Self.status(["--socket", bed.socketPath, "--fstab", bed.fixture.fstabPath])
            #expect(result.status == 1, "\(result.standardOutput.prefix(2000))")
            #expect(result.standardOutput.components(separatedBy: ", open for writing").count == 17)
            for holder in holders { kill(holder.pid, SIGKILL) }
            for holder in holders { _ = await holder.finish() }
            #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
        }
    }
}
