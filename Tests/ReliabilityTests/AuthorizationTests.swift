import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Who may use the daemon, where its socket goes, and where a client writes.
    ///
    /// Already covered elsewhere with the same assertions: `GET /state` as an
    /// outsider through a 0666 socket is 403 and as a group member is 200
    /// (`PeerAuthorizationTests`), and the client's message for a 0660 socket it
    /// may not open (`RealDaemonLibraryTests`). Here: sessions, real scripts, and
    /// the end state after each attempt.
    @Suite("Authorization, the socket path and the data directory", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
    struct AuthorizationTests {
        static var canSwitchUsers: Bool { SystemCommand.exists("setpriv") && SystemCommand.exists("curl") }

        /// Runs `command` as nobody (65534); `group` nil clears every group but
        /// nogroup, the primary.
        static func asNobody(_ command: [String]) throws -> SystemCommand.Result {
            try SystemCommand.execute(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"] + command)
        }

        static func upgradeAsNobody(_ socketPath: String) throws -> String {
            try asNobody([
                "curl", "-s", "-i", "--max-time", "3", "--unix-socket", socketPath,
                "-H", "Upgrade: websocket", "-H", "Connection: Upgrade",
                "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", "Sec-WebSocket-Version: 13",
                "http://localhost:0/ws",
            ]).standardOutput
        }

        @Test("an outsider through a 0666 socket: the upgrade is 403, kvmd-pstrun exits 1 without running its script, no session, RO", .enabled(if: canSwitchUsers))
        func outsiderRefusedByPeerCredentials() async throws {
            try await withReliabilityBed(arguments: ["--socket-mode", "0666"]) { bed in
                let before = try bed.remounts()
                let answer = try Self.upgradeAsNobody(bed.socketPath)
                #expect(answer.hasPrefix("HTTP/1.1 403"), "\(answer)")

                let marker = bed.fixture.directory + "/outsider-ran"
                let run = try Self.asNobody([BuiltProducts.path(of: "kvmd-pstrun"), "--socket", bed.socketPath, "--", "/bin/sh", "-c", "touch \(marker)"])
                #expect(run.status == 1)
                #expect(access(marker, F_OK) != 0)

                #expect(try bed.clients() == 0)
                #expect(bed.fixture.state == .readOnly)
                #expect(try bed.remounts() == before, "an outsider must not cause a remount")
            }
        }

        @Test("an outsider through a 0660 socket cannot connect at all", .enabled(if: canSwitchUsers))
        func outsiderRefusedBySocketMode() async throws {
            try await withReliabilityBed(arguments: ["--socket-mode", "0660", "--socket-group", "root"]) { bed in
                let result = try Self.asNobody(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", bed.socketPath, "http://localhost:0/state"])
                #expect(result.standardOutput == "000", "curl got \(result.standardOutput)")
                #expect(result.status == 7, "curl: couldn't connect")
                #expect(try bed.clients() == 0)
            }
        }

        @Test("a member of the socket's group runs a script that writes as that user; the file is there after RO", .enabled(if: canSwitchUsers))
        func memberIsServed() async throws {
            try await withReliabilityBed(arguments: ["--socket-mode", "0660", "--socket-group", "nogroup"]) { bed in
                // mkdtemp made the fixture's directory 0700; the member must reach the mount inside.
                chmod(bed.fixture.directory, 0o755)
                let run = try Self.asNobody([
                    BuiltProducts.path(of: "kvmd-pstrun"), "--socket", bed.socketPath, "--",
                    "/bin/sh", "-c", #"id -u > "$KVMD_PST_DATA/member-was-here""#,
                ])
                #expect(run.status == 0, "\(run.standardError)")
                #expect(await bed.settlesReadOnlyWithNoSession())
                #expect(try String(contentsOfFile: bed.fixture.dataPath + "/member-was-here", encoding: .utf8) == "65534\n")
            }
        }

        @Test("a symlink planted at the socket path is never followed: refused at start, left alone at shutdown; its target keeps its mode and content")
        func symlinkAtSocketPath() async throws {
            try await withStorageFixture { fixture in
                let directory = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: directory) }
                let socketPath = directory + "/pst.sock"
                let victim = directory + "/victim"
                try "precious\n".write(toFile: victim, atomically: false, encoding: .utf8)
                chmod(victim, 0o600)
                #expect(symlink(victim, socketPath) == 0)

                let arguments = ReliabilityBed.arguments(fixture: fixture, socketPath: socketPath, extra: ["--socket-mode", "0666"])
                let refused = try await runDaemonToExit(arguments)
                #expect(refused.status == 1 && refused.log.contains("a symbolic link is there, not a socket"), "\(refused)")
                #expect(unlink(socketPath) == 0)
                try await withDaemonProcess(arguments: arguments, socketPath: socketPath) { daemon throws in
                    var info = stat()
                    // Planted while the daemon runs: shutdown must leave it (it is not the daemon's file).
                    #expect(unlink(socketPath) == 0 && symlink(victim, socketPath) == 0)
                    daemon.terminate()
                    #expect(try await daemon.waitForExit() == 0)
                    #expect(lstat(socketPath, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK, "the planted link is not the daemon's to remove")
                }
                var info = stat()
                #expect(stat(victim, &info) == 0 && info.st_mode & 0o777 == 0o600 && (info.st_mode & S_IFMT) == S_IFREG)
                #expect(try String(contentsOfFile: victim, encoding: .utf8) == "precious\n")
                // Only our own staging directories could have been made beside it, and none is left; the lock stays.
                #expect(try FileManager.default.contentsOfDirectory(atPath: directory).sorted() == ["pst.sock", "pst.sock.lock", "victim"])
            }
        }

        @Test("subdirectory arguments cannot leave the data directory, nor can a symlink planted inside it")
        func subdirectoryEscapes() async throws {
            try await withReliabilityBed { bed in
                let storage = PersistentStorageClient(socketPath: bed.socketPath, timeout: .seconds(3))
                let before = try bed.remounts()
                for escape in ["..", "../x", "/etc", "a/../../x", "./..", "a/b/../../..", "//etc", "a/\0/b"] {
                    await #expect(throws: PersistentStorageError.self, "\(escape)") {
                        try await storage.withWritableStorage(subdirectory: escape) { url in
                            Issue.record("the body ran with \(url) for \(escape)")
                        }
                    }
                }
                #expect(try bed.remounts() == before, "a rejected subdirectory must not open a session")

                // Someone with write access plants a link to a directory outside.
                let outside = bed.fixture.directory + "/outside"
                try FileManager.default.createDirectory(atPath: outside, withIntermediateDirectories: true)
                let session = try bed.openWritableSession()
                #expect(symlink(outside, bed.fixture.dataPath + "/planted") == 0)
                session.close()
                #expect(await bed.settlesReadOnlyWithNoSession())
                do {
                    try await storage.withWritableStorage(subdirectory: "planted/svc") { url in
                        Issue.record("the body ran with \(url)")
                    } as Void
                    Issue.record("a subdirectory through a symlink was accepted")
                } catch PersistentStorageError.invalidSubdirectory(_, let reason) {
                    #expect(reason.contains("symbolic link"), "\(reason)")
                }
                #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "nothing may be created outside")
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }
    }
}
