import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Issue 13, items 1, 8, 9, 10 and 11: what a client or an administrator
    /// does to the storage itself, against a real daemon on a real mount.
    @Suite("Attacks on the storage and its state", .enabled(if: RealMounts.enabled))
    struct StorageStateAttackTests {
        /// A root-owned directory and file outside the storage that a client would like to own.
        private struct Victim {
            let directory: String
            let file: String

            init(in base: String) throws {
                directory = base + "/victim"
                file = directory + "/secret"
                try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
                #expect(chmod(directory, 0o700) == 0)
                try "root's".write(toFile: file, atomically: false, encoding: .utf8)
                #expect(chmod(file, 0o600) == 0)
            }

            func expectUntouched(sourceLocation: SourceLocation = #_sourceLocation) {
                for (path, mode) in [(directory, mode_t(0o700)), (file, mode_t(0o600))] {
                    var info = stat()
                    #expect(lstat(path, &info) == 0, sourceLocation: sourceLocation)
                    #expect(info.st_uid == 0 && info.st_gid == 0, "\(path) now belongs to \(info.st_uid):\(info.st_gid)", sourceLocation: sourceLocation)
                    #expect(info.st_mode & 0o7777 == mode, "\(path) is now \(String(info.st_mode & 0o7777, radix: 8))", sourceLocation: sourceLocation)
                }
            }
        }

        /// The storage made read-write, a link to the victim planted at
        /// `mount/link`, and a location whose `X-kvmd.pst-root` is `mount/root`.
        private static func rootThroughPlantedLink(
            _ fixture: StorageFixture, to victim: Victim, link: String, root: String
        ) throws -> StorageLocation {
            try fixture.remountExternally(.readWrite)
            #expect(symlink(victim.directory, fixture.mountPath + "/" + link) == 0)
            return StorageLocation(
                source: "", mountPath: fixture.mountPath, rootPath: fixture.mountPath + "/" + root,
                user: "nobody", group: "nogroup")
        }

        @Test("A client replaces the data directory with a symlink to a root-owned file or directory: the fix step replaces the link and never touches the target", arguments: ["directory", "file"])
        func symlinkedDataDirectory(target: String) async throws {
            try await withReliabilityBed(arguments: ["--data-layout", "data"]) { bed in
                let victim = try Victim(in: bed.fixture.directory)
                let session = try bed.openWritableSession()
                // What a client with write access to the root can do (the
                // test is root; a client as the storage's user could too).
                try FileManager.default.removeItem(atPath: bed.fixture.dataSubdirectoryPath)
                #expect(symlink(target == "directory" ? victim.directory : victim.file, bed.fixture.dataSubdirectoryPath) == 0)
                session.close()
                #expect(await bed.settlesReadOnlyWithNoSession())

                // The next session's RW remount runs the fix step.
                let next = try bed.openWritableSession()
                next.close()
                victim.expectUntouched()
                var info = stat()
                #expect(lstat(bed.fixture.dataSubdirectoryPath, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR, "the data directory is a real directory again")
                #expect(info.st_uid == getpwnam("nobody")!.pointee.pw_uid)
                #expect(bed.daemon.log.contains("\(bed.fixture.dataSubdirectoryPath) was a symbolic link; removed it (its target was not touched)"))
            }
        }

        @Test("The same through kvmd-helper-pst-remount rw: the link is replaced, the target untouched, a warning printed")
        func symlinkedDataDirectoryThroughTheHelper() async throws {
            try await withStorageFixture { fixture in
                let helper = BuiltProducts.path(of: "kvmd-helper-pst-remount")
                let victim = try Victim(in: fixture.directory)
                #expect(try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "--data-layout", "data", "rw"]).status == 0)
                try FileManager.default.removeItem(atPath: fixture.dataSubdirectoryPath)
                #expect(symlink(victim.directory, fixture.dataSubdirectoryPath) == 0)
                let rw = try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "--data-layout", "data", "rw"])
                #expect(rw.status == 0)
                #expect(rw.standardError.contains("warning: \(fixture.dataSubdirectoryPath) was a symbolic link"), "\(rw.standardError)")
                victim.expectUntouched()
                #expect(try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "ro"]).status == 0)
            }
        }

        @Test("The data directory swapped for a link while the storage is writable: kvmd-pstrun (as root) does not run its script, the library throws, nothing is written through the link (second attack pass)")
        func dataDirectorySwappedWhileWritable() async throws {
            try await withReliabilityBed(arguments: ["--data-layout", "data"]) { bed in
                let victim = try Victim(in: bed.fixture.directory)
                let holder = try bed.openWritableSession()
                defer { holder.close() }
                try FileManager.default.moveItem(atPath: bed.fixture.dataSubdirectoryPath, toPath: bed.fixture.dataSubdirectoryPath + ".old")
                #expect(symlink(victim.directory, bed.fixture.dataSubdirectoryPath) == 0)

                let run = try await SystemCommand.execute([
                    BuiltProducts.path(of: "kvmd-pstrun"), "--socket", bed.socketPath, "--",
                    "/bin/sh", "-c", #"echo from-root > "$KVMD_PST_DATA/secret""#,
                ])
                #expect(run.status == 1, "\(run.standardError)")
                #expect(run.standardError.contains("the PST data directory \(bed.fixture.dataSubdirectoryPath) is a symbolic link, not a directory; not writing there"), "\(run.standardError)")
                #expect(!run.standardError.contains("Running the process"))
                #expect(try String(contentsOfFile: victim.file, encoding: .utf8) == "root's")

                let storage = PersistentStorageClient(socketPath: bed.socketPath, timeout: .seconds(3))
                do {
                    try await storage.withWritableStorage { _ in Issue.record("the body ran") } as Void
                    Issue.record("withWritableStorage wrote through a link")
                } catch let error as PersistentStorageError {
                    guard case .unsafeDataDirectory = error else { throw error }
                }
                victim.expectUntouched()
                #expect(try bed.clients() == 1)
            }
        }

        @Test("A storage root that is a symlink (X-kvmd.pst-root) is refused, never followed")
        func symlinkedRoot() async throws {
            try await withStorageFixture { fixture in
                let victim = try Victim(in: fixture.directory)
                let location = try Self.rootThroughPlantedLink(fixture, to: victim, link: "root", root: "root")
                do {
                    try StorageFix(location: location).apply()
                    Issue.record("the fix step followed a symlinked root")
                } catch {
                    #expect("\(error)" == "\(fixture.mountPath)/root is a symbolic link, which is not followed")
                }
                victim.expectUntouched()
                #expect(!FileManager.default.fileExists(atPath: victim.directory + "/data"))
                try fixture.remountExternally(.readOnly)
            }
        }

        @Test("A client puts a file, FIFO, socket or looping link where the data directory belongs: the next session is still served; the thing is moved aside, never deleted (attack round: it locked every client out)", arguments: ["file", "fifo", "socket", "loop"])
        func nonDirectoryInPlaceOfDataDirectory(kind: String) async throws {
            try await withReliabilityBed(arguments: ["--data-layout", "data"]) { bed in
                let data = bed.fixture.dataSubdirectoryPath
                let session = try bed.openWritableSession()
                try FileManager.default.removeItem(atPath: data)
                switch kind {
                case "file": try writeFile("a client's file", to: data)
                case "fifo": #expect(mkfifo(data, 0o600) == 0)
                case "socket": _ = try ListeningTestSocket(path: data)
                default: #expect(symlink(data, data) == 0)
                }
                session.close()
                #expect(await bed.settlesReadOnlyWithNoSession())

                let next = try bed.openWritableSession()
                next.close()
                var info = stat()
                #expect(lstat(data, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR, "the data directory is a directory again")
                if kind == "loop" {
                    #expect(bed.daemon.log.contains("\(data) was a symbolic link; removed it"))
                } else {
                    #expect(bed.daemon.log.contains("\(data) was a"), "\(bed.daemon.log)")
                    #expect(bed.daemon.log.contains("moved it to \(data).moved-aside.1 and made a directory"))
                    #expect(lstat(data + ".moved-aside.1", &info) == 0 && info.st_mode & S_IFMT != S_IFDIR)
                    if kind == "file" {
                        #expect(try String(contentsOfFile: data + ".moved-aside.1", encoding: .utf8) == "a client's file")
                    }
                }
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }

        @Test("Another filesystem mounted over the mount point (a bind mount of an outside directory) is never remounted, re-owned or handed out; sessions are refused until it is gone (attack round)")
        func otherFilesystemOverTheMountPoint() async throws {
            try await withReliabilityBed { bed in
                let victim = try Victim(in: bed.fixture.directory)
                try await SystemCommand.run(["mount", "--bind", victim.directory, bed.fixture.mountPath])
                var mounted = true
                defer { if mounted { _ = try? SystemCommand.run(["umount", bed.fixture.mountPath]) } }
                #expect(try await eventually(within: .seconds(3)) { (try bed.state()["error"] as? String)?.contains("another filesystem is mounted over the storage") == true })
                let refused = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try BedEvents.next(on: refused)) == false)
                refused.close()
                let run = try await SystemCommand.execute([
                    BuiltProducts.path(of: "kvmd-pstrun"), "--socket", bed.socketPath, "--", "/bin/sh", "-c", "touch \"$KVMD_PST_DATA/x\"",
                ])
                #expect(run.status == 1, "\(run.standardError)")
                victim.expectUntouched()
                #expect(!FileManager.default.fileExists(atPath: victim.directory + "/data"))
                let counts = try bed.remounts()
                #expect(counts.failed == 0 && counts.rw == 1, "no remount was even tried: \(counts)")
                // The helper refuses too.
                let helper = try await SystemCommand.execute([BuiltProducts.path(of: "kvmd-helper-pst-remount"), "--fstab", bed.fixture.fstabPath, "rw"])
                #expect(helper.status == 1 && helper.standardError.contains("another filesystem is mounted over the storage"), "\(helper.standardError)")
                victim.expectUntouched()

                try await SystemCommand.run(["umount", bed.fixture.mountPath])
                mounted = false
                try await Task.sleep(for: .milliseconds(1200))
                try bed.expectWellBehavedClientServed("once the other filesystem is gone")
            }
        }

        @Test("The filesystem made writable through a bind mount of it, with no session: made read-only again (second attack pass)")
        func writableThroughABindMount() async throws {
            try await withReliabilityBed { bed in
                let bind = bed.fixture.directory + "/bind"
                try FileManager.default.createDirectory(atPath: bind, withIntermediateDirectories: false)
                try await SystemCommand.run(["mount", "--bind", bed.fixture.mountPath, bind])
                defer { _ = try? SystemCommand.run(["umount", bind]) }
                let before = try bed.remounts()
                try await SystemCommand.run(["mount", "-o", "remount,rw", bind])
                #expect(try await eventually(within: .seconds(3)) { try bed.remounts().ro > before.ro }, "\(bed.daemon.log)")
                #expect(bed.daemon.log.contains("read-only here, but writable through another mount"))
                #expect(!FileManager.default.createFile(atPath: bind + "/written-without-a-session", contents: nil))
                #expect(try bed.writeAllowed() == false)
                try bed.expectWellBehavedClientServed("after the bind mount was made read-only again")
            }
        }

        @Test("Something mounted over the storage during a session: after the session, the state says the storage underneath is left read-write, and it is made read-only once that is unmounted (second attack pass)")
        func otherFilesystemMountedDuringASession() async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                try await SystemCommand.run(["mount", "-t", "tmpfs", "-o", "ro", "pst-test-tmpfs", bed.fixture.mountPath])
                var mounted = true
                defer { if mounted { _ = try? SystemCommand.run(["umount", bed.fixture.mountPath]) } }
                session.close()
                #expect(try await eventually(within: .seconds(3)) {
                    (try bed.state()["error"] as? String)?.contains("the storage underneath is still READ-WRITE") == true
                }, "\(bed.daemon.log)")
                #expect(try bed.writeAllowed() == false)
                try await SystemCommand.run(["umount", bed.fixture.mountPath])
                mounted = false
                #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
            }
        }

        @Test("A bind mount onto the data directory, or a root reached through a link inside the storage: the fix step does not leave the storage (attack round)")
        func fixStepStaysInsideTheStorage() async throws {
            try await withReliabilityBed(arguments: ["--data-layout", "data"]) { bed in
                let victim = try Victim(in: bed.fixture.directory)
                let session = try bed.openWritableSession()
                try await SystemCommand.run(["mount", "--bind", victim.directory, bed.fixture.dataSubdirectoryPath])
                defer { _ = try? SystemCommand.run(["umount", bed.fixture.dataSubdirectoryPath]) }
                session.close()
                #expect(await bed.settlesReadOnlyWithNoSession())
                let refused = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try BedEvents.next(on: refused)) == false)
                refused.close()
                #expect(try (bed.state()["error"] as? String)?.contains("\(bed.fixture.dataSubdirectoryPath) is another filesystem mounted inside the storage") == true)
                victim.expectUntouched()
            }
            try await withStorageFixture { fixture in
                let victim = try Victim(in: fixture.directory)
                let location = try Self.rootThroughPlantedLink(fixture, to: victim, link: "link", root: "link/inner")
                #expect(throws: StorageFixError.self) { try StorageFix(location: location).apply() }
                victim.expectUntouched()
                try fixture.remountExternally(.readOnly)
            }
        }

        @Test("A second daemon on another socket does not touch the storage the first one manages (attack round)")
        func secondDaemonOnAnotherSocket() async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                defer { session.close() }
                let before = try bed.remounts()
                let other = try makeSocketDirectory()
                defer { try? FileManager.default.removeItem(atPath: other) }
                let exit = try await runDaemonToExit(["--run", "--fstab", bed.fixture.fstabPath, "--socket", other + "/b.sock", "--socket-group", ""])
                #expect(exit.status == 1 && exit.criticalLines.count == 1, "\(exit)")
                #expect(exit.log.contains("another kvmd-pst already manages the storage at \(bed.fixture.mountPath)"), "\(exit)")
                #expect(bed.fixture.state == .readWrite)
                #expect(try bed.remounts() == before)
                #expect(try bed.clients() == 1)
            }
        }

        @Test("SIGHUP, SIGUSR1, SIGUSR2 or SIGALRM to the daemon shut it down gracefully: read-only, exit 0; others are ignored (attack round: they killed it with the storage read-write)", arguments: [SIGHUP, SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM, SIGPROF, SIGIO, SIGPWR])
        func otherSignals(signal: Int32) async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                bed.daemon.terminate(signal: signal)
                if [SIGHUP, SIGUSR1, SIGUSR2, SIGALRM].contains(signal) {
                    #expect(try await bed.daemon.waitForExit() == 0, "\(bed.daemon.log)")
                    #expect(bed.fixture.state == .readOnly)
                    session.close()
                } else {
                    try await Task.sleep(for: .milliseconds(300))
                    #expect(bed.daemon.isRunning)
                    session.close()
                    try bed.expectWellBehavedClientServed("after signal \(signal)")
                }
            }
        }

        @Test("One session removes the data directory: the others are not revoked, write_allowed stays true, and the next RW remount recreates it")
        func removedDataDirectoryRevokesNobody() async throws {
            try await withReliabilityBed(arguments: ["--data-layout", "data"]) { bed in
                let bystander = try bed.openWritableSession()
                let remover = try bed.openWritableSession()
                try FileManager.default.removeItem(atPath: bed.fixture.dataSubdirectoryPath)
                // Longer than the daemon's one-second mount re-check, so a revocation would have been sent.
                try await Task.sleep(for: .milliseconds(1500))
                #expect(try bed.writeAllowed() == true)
                try bystander.sendText(#"{"event_type": "ping", "event": {}}"#)
                while let message = try bystander.readJSONMessage() {
                    if message["event_type"] as? String == "pong" { break }
                    if message["event_type"] as? String == "storage" {
                        #expect(DaemonTestBed.writeAllowed(in: message["event"] as? [String: Any]) == true, "revoked: \(message)")
                    }
                }
                remover.close()
                bystander.close()
                #expect(await bed.settlesReadOnlyWithNoSession())
                let next = try bed.openWritableSession()
                next.close()
                var info = stat()
                #expect(lstat(bed.fixture.dataSubdirectoryPath, &info) == 0 && info.st_mode & S_IFMT == S_IFDIR)
            }
        }

        @Test("An administrator's remount,rw with no session is undone: read-only again, and logged")
        func adminRemountReadWriteIsUndone() async throws {
            try await withReliabilityBed { bed in
                let before = try bed.remounts()
                try await bed.fixture.remountExternally(.readWrite)
                #expect(await eventually(within: .seconds(3)) { bed.fixture.state == .readOnly })
                // The kernel's state flips just before the daemon hears its remount returned.
                #expect(try await eventually { try bed.writeAllowed() == false })
                #expect(try await eventually { try bed.remounts().ro == before.ro + 1 })
                #expect(bed.daemon.log.contains("was made read-write by someone else while no session is open (read-write); making it read-only again"))
            }
        }

        @Test("The same while a writer holds the filesystem busy: retried, and read-only once the writer is gone")
        func adminRemountReadWriteWhileBusy() async throws {
            try await withReliabilityBed { bed in
                // Stopped, the daemon cannot undo the remount before the writer holds a file.
                bed.daemon.terminate(signal: SIGSTOP)
                defer { bed.daemon.terminate(signal: SIGCONT) }
                try await bed.fixture.remountExternally(.readWrite)
                let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.mountPath + "/held-open")
                defer { kill(holder.pid, SIGKILL) }
                bed.daemon.terminate(signal: SIGCONT)
                #expect(try await eventually(within: .seconds(3)) { try bed.remounts().failed >= 1 })
                #expect(bed.fixture.state == .readWrite)
                kill(holder.pid, SIGKILL)
                _ = await holder.finish()
                #expect(await eventually(within: .seconds(3)) { bed.fixture.state == .readOnly })
            }
        }

        @Test("SIGTERM while the read-only remount is busy: retried until --stop-timeout, then exit 1 with a line that says the storage is left read-write")
        func shutdownWhileBusy() async throws {
            try await withReliabilityBed(arguments: ["--stop-timeout", "1"]) { bed in
                let session = try bed.openWritableSession()
                let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/held-open")
                defer { kill(holder.pid, SIGKILL) }
                let clock = ContinuousClock()
                let start = clock.now
                bed.daemon.terminate()
                let status = try await bed.daemon.waitForExit(timeout: .seconds(10))
                let elapsed = clock.now - start
                session.close()
                #expect(status == 1, "\(bed.daemon.log)")
                // The 0.2 s cleanup delay, then about a second of retries.
                #expect(elapsed >= .milliseconds(750) && elapsed < .seconds(5), "\(elapsed)")
                let critical = bed.daemon.log.split(separator: "\n").filter { $0.contains("CRITICAL --") }
                #expect(critical.count == 1, "\(bed.daemon.log)")
                #expect(critical.first?.contains("the storage at \(bed.fixture.mountPath) is left READ-WRITE: cannot remount") == true, "\(critical)")
                #expect(critical.first?.contains("busy") == true)
                #expect(bed.fixture.state == .readWrite)
                kill(holder.pid, SIGKILL)
                _ = await holder.finish()
                try await bed.fixture.remountExternally(.readOnly)
            }
        }

        @Test("SIGTERM while busy, and the writer lets go within --stop-timeout: exit 0, read-only")
        func shutdownWhileBusyThenFreed() async throws {
            try await withReliabilityBed(arguments: ["--stop-timeout", "10"]) { bed in
                let session = try bed.openWritableSession()
                let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/held-open", seconds: 1)
                defer { kill(holder.pid, SIGKILL) }
                bed.daemon.terminate()
                let status = try await bed.daemon.waitForExit(timeout: .seconds(12))
                session.close()
                #expect(status == 0, "\(bed.daemon.log)")
                #expect(bed.fixture.state == .readOnly)
                #expect(bed.daemon.log.contains("remount to read-only failed"))
            }
        }

        @Test("An ext4 error (errors=remount-ro): sessions are revoked, then refused with a reason that names e2fsck, and the daemon does not retry in a loop")
        func filesystemErrors() async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                let device = URL(fileURLWithPath: bed.fixture.device).lastPathComponent
                try "1".write(toFile: "/sys/fs/ext4/\(device)/trigger_fs_error", atomically: false, encoding: .utf8)
                // Revoked: the kernel stopped writing.
                let revoked = try BedEvents.next(on: session, where: { DaemonTestBed.writeAllowed(in: $0) == false })
                #expect(revoked != nil)
                session.close()
                let refused = try bed.openSession()
                #expect(DaemonTestBed.writeAllowed(in: try BedEvents.next(on: refused)) == false)
                refused.close()
                let error = try #require(bed.state()["error"] as? String)
                #expect(error.contains("has errors") && error.contains("e2fsck"), "\(error)")
                let metrics = try MetricsTests.scrape(bed)
                #expect(metrics["kvmd_pst_filesystem_errors"] == 1, "\(metrics.text)")
                #expect(metrics["kvmd_pst_storage_writable"] == 0)

                let storage = PersistentStorageClient(socketPath: bed.socketPath, timeout: .seconds(2))
                do {
                    try await storage.withWritableStorage { _ in Issue.record("the body must not run") } as Void
                    Issue.record("a session was granted on a filesystem with errors")
                } catch let error as PersistentStorageError {
                    #expect("\(error)".contains("e2fsck"), "\(error)")
                }
                let before = try bed.remounts()
                try await Task.sleep(for: .seconds(1))
                let after = try bed.remounts()
                #expect(after.failed - before.failed <= 1, "retrying in a loop: \(before) -> \(after)")
                #expect(bed.daemon.log.split(separator: "\n").filter { $0.contains("has errors") }.count == 1, "\(bed.daemon.log)")
            }
        }
    }
}

/// Reading `storage` events off a raw session.
enum BedEvents {
    /// The next `storage` event (or the next one `matching`), nil if the session closed first.
    static func next(on session: RawUnixSocketClient, where matching: ([String: Any]?) -> Bool = { _ in true }) throws -> [String: Any]? {
        while let event = try DaemonTestBed.nextStorageEvent(on: session) {
            if matching(event) { return event }
        }
        return nil
    }
}
