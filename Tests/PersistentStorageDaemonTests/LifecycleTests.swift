import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@Suite("Daemon start-up, shutdown and failures against a real mount", .serialized)
struct LifecycleTests {
    @Test("SIGTERM with sessions open: write_allowed false, close, wait, RO, socket removed, exit 0", .enabled(if: RealMounts.enabled))
    func orderedShutdown() async throws {
        try await withDaemonTestBed(arguments: ["--ro-cleanup-delay", "0.5"]) { bed in
            let sessions = try (0..<2).map { _ in try bed.openSession() }
            for session in sessions {
                #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == true)
            }
            let signalledAt = ContinuousClock.now
            bed.daemon.terminate()
            for session in sessions {
                // The first session may still get the count update the second
                // one's open caused (sent a moment later): skip it.
                var event = try DaemonTestBed.nextStorageEvent(on: session)
                if DaemonTestBed.writeAllowed(in: event) == true, event?["clients"] as? Int == sessions.count {
                    event = try DaemonTestBed.nextStorageEvent(on: session)
                }
                #expect(DaemonTestBed.writeAllowed(in: event) == false)
                // Then the close frame and the end of the connection.
                while try session.readFrame() != nil {}
            }
            // Clients get the cleanup delay before the storage goes read-only.
            #expect(bed.fixture.state == .readWrite)
            #expect(try await bed.daemon.waitForExit() == 0)
            #expect(ContinuousClock.now - signalledAt >= .milliseconds(500))
            #expect(bed.fixture.state == .readOnly)
            #expect(access(bed.socketPath, F_OK) != 0, "the socket file should be gone")
        }
    }

    @Test("after kill -9 left the storage RW, a restarted daemon makes it RO at start", .enabled(if: RealMounts.enabled))
    func restartAfterCrash() async throws {
        try await withStorageFixture { fixture in
            let directory = try makeSocketDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let socketPath = directory + "/pst.sock"
            let arguments = DaemonTestBed.arguments(fixture: fixture, socketPath: socketPath, extra: [])
            try await withDaemonProcess(arguments: arguments, socketPath: socketPath) { daemon in
                let bed = DaemonTestBed(fixture: fixture, daemon: daemon, socketPath: socketPath)
                let session = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == true)
                daemon.terminate(signal: SIGKILL)
                #expect(try await daemon.waitForExit() == 128 + SIGKILL)
            }
            #expect(fixture.state == .readWrite)
            // The stale socket file is still there; the new daemon replaces it.
            try await withDaemonProcess(arguments: arguments, socketPath: socketPath) { daemon in
                #expect(fixture.state == .readOnly)
                let bed = DaemonTestBed(fixture: fixture, daemon: daemon, socketPath: socketPath)
                let writeAllowed = try bed.writeAllowed()
                #expect(writeAllowed == false)
            }
        }
    }

    @Test("a refused RW remount answers write_allowed false; the daemon stays up and shows the error", .enabled(if: RealMounts.enabled))
    func refusedReadWrite() async throws {
        try await withDaemonTestBed(fixture: .init(writeProtectedDevice: true)) { bed in
            let session = try bed.openSession()
            let event = try #require(try DaemonTestBed.nextStorageEvent(on: session))
            #expect(DaemonTestBed.writeAllowed(in: event) == false)
            let state = try bed.state()
            let error = try #require(state["error"] as? String)
            #expect(error.contains("write-protected"), "\(error)")
            #expect((state["remounts"] as? [String: Int])?["failed"] ?? 0 >= 1)
            // The session stays usable and the daemon answers.
            try session.sendText(#"{"event_type": "ping", "event": {}}"#)
            #expect(try session.readJSONMessage()?["event_type"] as? String == "pong")
            #expect(bed.daemon.isRunning)
        }
    }

    @Test("RO refused while a file is open: retried, and a new session meanwhile is served RW at once", .enabled(if: RealMounts.enabled))
    func busyReadOnlyRetry() async throws {
        try await withDaemonTestBed(arguments: ["--ro-retries-delay", "0.3"]) { bed in
            let first = try bed.openSession()
            #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: first)) == true)
            // A file open for writing keeps ext4 from going read-only (EBUSY).
            let holder = open(bed.fixture.dataPath + "/held", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            try #require(holder >= 0)
            var holderOpen = true
            defer { if holderOpen { close(holder) } }
            first.close()
            #expect(try await eventually { try bed.remounts().failed >= 1 })
            #expect(try (bed.state()["error"] as? String)?.contains("busy") == true)
            #expect(bed.fixture.state == .readWrite)

            let second = try bed.openSession()
            let event = try DaemonTestBed.nextStorageEvent(on: second)
            #expect(DaemonTestBed.writeAllowed(in: event) == true)
            let failuresWithSession = try bed.remounts().failed
            try await Task.sleep(for: .milliseconds(700))
            #expect(try bed.remounts().failed == failuresWithSession, "no RO attempts while a session is open")

            close(holder)
            holderOpen = false
            second.close()
            #expect(await eventually { bed.fixture.state == .readOnly })
        }
    }

    @Test("a kvmd-style --config file sets the socket's mode and the heartbeat; its other sections are skipped", .enabled(if: RealMounts.enabled))
    func configFile() async throws {
        let directory = try makeSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/override.yaml"
        try """
            kvmd:
                gpio: &gpio
                    drivers: !include gpio.yaml
                other: *gpio
            pst:
                server: {unix_mode: 0o600}   # comment
                heartbeat: 0.4
            """.write(toFile: config, atomically: true, encoding: .utf8)
        try await withDaemonTestBed(arguments: ["--config", config]) { bed in
            var info = stat()
            #expect(stat(bed.socketPath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o600)
            // A 0.4 s heartbeat: a session that never answers is dropped.
            let silent = try RawUnixSocketClient(path: bed.socketPath)
            try silent.upgradeToWebSocket()
            var sawPing = false
            while let frame = try silent.readFrame() {
                if frame.opcode == RawWebSocketFrame.ping { sawPing = true }
            }
            #expect(sawPing)
        }
    }

    @Test("a --config file the reader refuses stops the start with the file and line", .enabled(if: FileManager.default.fileExists(atPath: BuiltProducts.path(of: "kvmd-pst"))))
    func refusedConfigFile() throws {
        let directory = try makeSocketDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let config = directory + "/override.yaml"
        try "pst:\n    remount_cmd: !cmd x\n".write(toFile: config, atomically: true, encoding: .utf8)
        let result = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "--config", config, "--socket", directory + "/pst.sock"])
        #expect(result.status != 0)
        #expect(result.standardError.contains(config))
        #expect(result.standardError.contains("line 2"))
    }

    @Test("without --run nothing is started or remounted: one line says why, exit 2, as kvmd's daemons refuse", .enabled(if: RealMounts.enabled))
    func refusesWithoutRun() async throws {
        try await withStorageFixture { fixture in
            let directory = try makeSocketDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let mountsBefore = fixture.mountedOptions
            let result = try await onOwnThread {
                try SystemCommand.execute([
                    BuiltProducts.path(of: "kvmd-pst"), "--fstab", fixture.fstabPath, "--socket", directory + "/pst.sock",
                ])
            }
            #expect(result.status == 2)
            #expect(result.standardError.hasPrefix("kvmd-pst: not started: --run is needed"), "\(result.standardError)")
            #expect(result.standardError.split(separator: "\n").count == 1, "\(result.standardError)")
            #expect(!FileManager.default.fileExists(atPath: directory + "/pst.sock"))
            #expect(fixture.mountedOptions == mountsBefore)
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("kvmd-pst --run with nothing but kvmd's configuration tree (and the fstab) serves on the socket the tree names; -m prints what is in effect", .enabled(if: RealMounts.enabled))
    func servesFromTheConfigTree() async throws {
        try await withStorageFixture { fixture in
            let directory = try makeSocketDirectory()
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let socketPath = directory + "/from-tree.sock"
            try FileManager.default.createDirectory(atPath: directory + "/override.d", withIntermediateDirectories: false)
            try "kvmd:\n    server:\n        unix: /run/kvmd/kvmd.sock\npst:\n    server:\n        unix: /nowhere.sock\n"
                .write(toFile: directory + "/main.yaml", atomically: true, encoding: .utf8)
            try "pst:\n    server:\n        unix: \(socketPath)\n        heartbeat: 2.5\n    ro_cleanup_delay: 0\n"
                .write(toFile: directory + "/override.d/50-pst.yaml", atomically: true, encoding: .utf8)
            try "pst:\n    ro_retries_delay: 0.5\n".write(toFile: directory + "/override.yaml", atomically: true, encoding: .utf8)
            let tree = ["--main-config", directory + "/main.yaml", "--override-dir", directory + "/override.d",
                        "--override-config", directory + "/override.yaml", "--fstab", fixture.fstabPath, "--socket-group", ""]

            let dump = try await onOwnThread { try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "-m"] + tree) }
            #expect(dump.status == 0, "\(dump.standardError)")
            #expect(dump.standardOutput.contains("        unix: \(socketPath)\n"))
            #expect(dump.standardOutput.contains("        heartbeat: 2.5\n"))
            #expect(dump.standardOutput.contains("    ro_retries_delay: 0.5\n"))
            #expect(dump.standardOutput.contains("    ro_cleanup_delay: 0\n"))
            #expect(fixture.state == .readOnly)

            try await withDaemonProcess(arguments: ["--run"] + tree, socketPath: socketPath) { daemon in
                let bed = DaemonTestBed(fixture: fixture, daemon: daemon, socketPath: socketPath)
                let session = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == true)
                session.close()
                daemon.terminate()
                #expect(try await daemon.waitForExit() == 0)
            }
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("invalid options are rejected at start with one clear line", .enabled(if: FileManager.default.fileExists(atPath: BuiltProducts.path(of: "kvmd-pst"))))
    func invalidOptions() throws {
        let result = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pst"), "--socket-mode", "999", "--socket", "/tmp/x.sock"])
        #expect(result.status != 0)
        let lines = result.standardError.split(separator: "\n")
        #expect(lines.count == 1, "\(result.standardError)")
        #expect(result.standardError.contains("--socket-mode"))
    }
}

@Suite("Who may connect", .serialized)
struct PeerAuthorizationTests {
    static var canSwitchUsers: Bool {
        RealMounts.enabled && SystemCommand.exists("setpriv") && SystemCommand.exists("curl")
    }

    /// `curl` run as nobody (uid/gid 65534) against the daemon.
    static func stateAsNobody(_ socketPath: String, supplementaryGroups: [gid_t] = []) throws -> String {
        let groups = supplementaryGroups.isEmpty
            ? "--clear-groups" : "--groups=" + supplementaryGroups.map(String.init).joined(separator: ",")
        let result = try SystemCommand.execute([
            "setpriv", "--reuid=65534", "--regid=65534", groups, "--",
            "curl", "-s", "-i", "--unix-socket", socketPath, "http://localhost:0/state",
        ])
        return result.standardOutput
    }

    @Test("a peer outside the socket's group gets 403 even when the file mode lets it connect", .enabled(if: canSwitchUsers))
    func outsiderIsRefused() async throws {
        try await withDaemonTestBed(arguments: ["--socket-mode", "0666"]) { bed in
            let answer = try Self.stateAsNobody(bed.socketPath)
            #expect(answer.hasPrefix("HTTP/1.1 403"), "\(answer)")
            #expect(answer.contains(#""ok":false"#))
        }
    }

    @Test("a peer in the socket's group is served", .enabled(if: canSwitchUsers))
    func memberIsServed() async throws {
        try await withDaemonTestBed(arguments: ["--socket-mode", "0660", "--socket-group", "nogroup"]) { bed in
            var info = stat()
            #expect(lstat(bed.socketPath, &info) == 0)
            #expect(info.st_mode & 0o777 == 0o660)
            #expect(info.st_gid == 65534)
            let answer = try Self.stateAsNobody(bed.socketPath)
            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(answer)")
        }
    }

    @Test("a peer given the socket's group only at run time (SupplementaryGroups=) is served; without it, 403",
          .enabled(if: canSwitchUsers && getgrnam("users") != nil))
    func runtimeSupplementaryGroupIsEnough() async throws {
        // nobody is not listed as a member of `users` in /etc/group.
        let users = getgrnam("users")!.pointee.gr_gid
        try await withDaemonTestBed(arguments: ["--socket-mode", "0666", "--socket-group", "users"]) { bed in
            let member = try Self.stateAsNobody(bed.socketPath, supplementaryGroups: [users])
            #expect(member.hasPrefix("HTTP/1.1 200"), "\(member)")
            let outsider = try Self.stateAsNobody(bed.socketPath)
            #expect(outsider.hasPrefix("HTTP/1.1 403"), "\(outsider)")
        }
    }
}
