import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Synchronization
import Testing

extension Reliability {
    /// Faults injected for real (processes killed and stopped, a write-protected
    /// device, a full filesystem, a remount behind the daemon's back), each
    /// checked by its end state: the session count from `GET /state`, RO/RW from
    /// the kernel, and the data on disk.
    ///
    /// Left to the other suites, which assert the same thing:
    /// - a binary or oversized frame, and a silent raw peer dropped by the
    ///   heartbeat: `SessionWireTests` (daemon suite);
    /// - the library's body cancelled on a client-side view of revocation and
    ///   connection loss: `ClientProtocolTests`, `RealDaemonLibraryTests`.
    @Suite("Faults against a real daemon and mount", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(2)))
    struct FaultTests {
        @Test("a client killed with SIGKILL mid-session: no session and the storage RO within 1 s; what it wrote is on disk")
        func clientKilled() async throws {
            try await withReliabilityBed { bed in
                let run = try ChildProcess(pstrunOn: bed.socketPath, command: [
                    "/bin/sh", "-c", #"printf 'written before the kill\n' > "$KVMD_PST_DATA/killed-client"; echo $$; exec sleep 60"#,
                ])
                let script = await run.nextOutputLine().flatMap { pid_t($0) }
                defer { killIfAlive(script) }
                try #require(script != nil, "the script did not start")
                #expect(try bed.clients() == 1)
                #expect(bed.fixture.state == .readWrite)

                kill(run.pid, SIGKILL)
                let killedAt = ContinuousClock.now
                #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(1)))
                #expect(ContinuousClock.now - killedAt < .seconds(1))
                // The orphaned script holds pstrun's stdout; it must go before pstrun's output can end.
                killIfAlive(script)
                #expect(await run.finish()?.status == 128 + SIGKILL)
                #expect(try String(contentsOfFile: bed.fixture.dataPath + "/killed-client", encoding: .utf8) == "written before the kill\n")
            }
        }

        @Test("a client stopped with SIGSTOP is dropped after the heartbeat timeout and the storage goes RO; woken, it ends its script")
        func clientStopped() async throws {
            // Pings every 0.4 s, a pong due within 0.2 s: a stopped peer is gone within 0.6 s.
            try await withReliabilityBed(arguments: ["--heartbeat", "0.4"]) { bed in
                let run = try ChildProcess(pstrunOn: bed.socketPath, command: ["/bin/sh", "-c", "echo $$; exec sleep 60"])
                let script = await run.nextOutputLine().flatMap { pid_t($0) }
                defer { killIfAlive(script) }
                try #require(script != nil, "the script did not start")
                // A running client answers its pings: still there after several heartbeats.
                try await Task.sleep(for: .seconds(1))
                #expect(try bed.clients() == 1, "a client that answers pings must not be dropped")

                kill(run.pid, SIGSTOP)
                let stoppedAt = ContinuousClock.now
                #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(2)))
                let dropped = ContinuousClock.now - stoppedAt
                #expect(dropped < .milliseconds(1500), "dropped after \(dropped)")

                // Woken up, the client finds its session gone and stops the script.
                kill(run.pid, SIGCONT)
                let finished = try #require(await run.finish())
                #expect(finished.status != 0)
                #expect(finished.standardError.contains("revoked"), "\(finished.standardError)")
                #expect(await eventually(within: .seconds(2)) { !processIsAlive(script!) })
                #expect(bed.fixture.state == .readOnly)
            }
        }

        @Test("the daemon killed while kvmd-pstrun runs a script: the script is dead within 2 s, pstrun fails, and a restarted daemon makes the storage RO")
        func daemonKilledUnderScript() async throws {
            try await withStorageFixture { fixture in
                var script: pid_t?
                defer { killIfAlive(script) }
                try await withReliabilityBed(on: fixture) { bed in
                    // The script ignores SIGTERM: only the SIGKILL to its group after the grace period ends it.
                    let run = try ChildProcess(pstrunOn: bed.socketPath, command: [
                        "/bin/sh", "-c",
                        #"trap '' TERM; printf 'kept\n' > "$KVMD_PST_DATA/before-crash"; echo $$; while :; do sleep 0.1; done"#,
                    ])
                    script = await run.nextOutputLine().flatMap { pid_t($0) }
                    try #require(script != nil, "the script did not start")

                    bed.daemon.terminate(signal: SIGKILL)
                    let killedAt = ContinuousClock.now
                    #expect(await eventually(within: .seconds(2)) { !processIsAlive(script!) }, "the script outlived the daemon by 2 s")
                    #expect(ContinuousClock.now - killedAt < .seconds(2))
                    let finished = try #require(await run.finish())
                    #expect(finished.status != 0)
                    #expect(try await bed.daemon.waitForExit() == 128 + SIGKILL)
                }
                // Nobody made it read-only: the crash left it writable.
                #expect(fixture.state == .readWrite)
                try await withReliabilityBed(on: fixture) { bed throws in
                    #expect(fixture.state == .readOnly, "start-up must make the storage read-only")
                    #expect(try bed.clients() == 0)
                    #expect(try bed.writeAllowed() == false)
                    #expect(try String(contentsOfFile: fixture.dataPath + "/before-crash", encoding: .utf8) == "kept\n")
                }
            }
        }

        @Test("SIGTERM with 50 sessions open: every one hears write_allowed false, then the ordered shutdown; RO, socket gone")
        func shutdownWithFiftySessions() async throws {
            let cleanupDelay = Duration.milliseconds(1500)
            try await withReliabilityBed(arguments: ["--ro-cleanup-delay", "1.5"]) { bed in
                var sessions: [RawUnixSocketClient] = []
                for _ in 0..<50 { sessions.append(try bed.openWritableSession()) }
                #expect(try bed.clients() == 50)
                #expect(bed.fixture.state == .readWrite)

                let signalledAt = ContinuousClock.now
                bed.daemon.terminate()
                var told = 0
                var closed = 0
                for session in sessions {
                    // Events with growing client counts may still be queued; the false one is what counts.
                    while let event = try ReliabilityBed.nextStorageEvent(on: session) {
                        if ReliabilityBed.writeAllowed(in: event) == false {
                            told += 1
                            break
                        }
                    }
                    var sawClose = false
                    while let frame = try session.readFrame() {
                        if frame.opcode == RawWebSocketFrame.close { sawClose = true }
                    }
                    if sawClose { closed += 1 }
                }
                let allTold = ContinuousClock.now - signalledAt
                #expect(told == 50)
                #expect(closed == 50)
                // Told and closed before the storage went read-only: clients had their cleanup time.
                if allTold < cleanupDelay {
                    #expect(bed.fixture.state == .readWrite, "RO came before the cleanup delay")
                }
                #expect(!RawUnixSocketClient.isAccepting(bed.socketPath), "no new connection during shutdown")
                #expect(try await bed.daemon.waitForExit() == 0)
                #expect(ContinuousClock.now - signalledAt >= cleanupDelay)
                #expect(bed.fixture.state == .readOnly)
                #expect(access(bed.socketPath, F_OK) != 0, "the socket file should be gone")
            }
        }

        @Test("RO refused while an outside process holds a file open: retried at the configured delay, RO once it is closed; a session meanwhile is served RW without a remount")
        func busyReadOnly() async throws {
            let delay = Duration.milliseconds(250)
            try await withReliabilityBed(arguments: ["--ro-retries-delay", "0.25"]) { bed in
                let first = try bed.openWritableSession()
                // Another process, not a session, opens a file for writing and keeps it.
                let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/held-open")
                defer { kill(holder.pid, SIGKILL) }
                let before = try bed.remounts()

                first.close()
                #expect(try await eventually { try bed.remounts().failed > before.failed })
                let firstFailure = ContinuousClock.now
                #expect(bed.fixture.state == .readWrite)
                #expect(try (bed.state()["error"] as? String)?.contains("busy") == true)
                // The retry rate is the point here, so time has to pass.
                try await Task.sleep(for: delay * 6)
                let failures = try bed.remounts().failed - before.failed
                let expected = Int((ContinuousClock.now - firstFailure) / delay) + 1
                // Retried, but never faster than the delay (each attempt also takes time, more so on a loaded machine).
                #expect(2...(expected + 1) ~= failures, "\(failures) failed attempts in \(delay * 6); expected about \(expected)")

                // A session arriving now finds the storage writable: served at once, no remount.
                let beforeSecond = try bed.remounts()
                let second = try bed.openWritableSession()
                // Served means an attempt that was under way has finished: count from here.
                let duringRetry = try bed.remounts()
                try await Task.sleep(for: delay * 3)
                let withSession = try bed.remounts()
                #expect(withSession.rw == beforeSecond.rw, "no RW remount for a storage already writable")
                #expect(withSession.failed == duringRetry.failed, "no RO attempt while a session is open")

                kill(holder.pid, SIGKILL)
                _ = await holder.finish()
                second.close()
                #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(1)))
                // The kernel shows RO a moment before the daemon has counted its remount.
                _ = try await eventually { try bed.remounts().ro > before.ro }
                let after = try bed.remounts()
                let tasks = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(bed.daemon.pid)/task")) ?? []).map { tid in
                    let comm = (try? String(contentsOfFile: "/proc/\(bed.daemon.pid)/task/\(tid)/comm", encoding: .utf8)) ?? "?"
                    let wchan = (try? String(contentsOfFile: "/proc/\(bed.daemon.pid)/task/\(tid)/wchan", encoding: .utf8)) ?? "?"
                    let stack = (try? String(contentsOfFile: "/proc/\(bed.daemon.pid)/task/\(tid)/stack", encoding: .utf8)) ?? "?"
                    return "\(tid) \(comm.trimmingCharacters(in: .whitespacesAndNewlines)) \(wchan) \(stack.prefix(300))"
                }.joined(separator: "\n")
                #expect(after.ro == before.ro + 1, "\(after) after \(before); \(bed.fixture.state); \((try? bed.state()) ?? [:]); threads:\n\(tasks)")
                #expect(after.rw == before.rw)
            }
        }

        @Test("RW refused on a write-protected device: a clear refusal, kvmd-pstrun exits 1 without running the script, the daemon stays up and serves once the device is writable")
        func writeProtectedDevice() async throws {
            try await withReliabilityBed(fixture: .init(writeProtectedDevice: true)) { bed in
                let marker = bed.fixture.directory + "/script-ran"
                let run = try ChildProcess(pstrunOn: bed.socketPath, command: ["/bin/sh", "-c", #"touch "$0""#, marker])
                let finished = try #require(await run.finish())
                #expect(finished.status == 1)
                #expect(access(marker, F_OK) != 0, "the script must not run")
                #expect(finished.standardError.contains("did not make the storage writable"), "\(finished.standardError)")
                #expect(finished.standardError.contains("write-protected"), "the refusal should carry the daemon's reason: \(finished.standardError)")

                let storage = PersistentStorageClient(socketPath: bed.socketPath, timeout: .seconds(2))
                do {
                    try await storage.withWritableStorage { _ in Issue.record("the body must not run") } as Void
                    Issue.record("withWritableStorage should have been refused")
                } catch let PersistentStorageError.writeRefused(reason) {
                    #expect(reason?.contains("write-protected") == true, "\(reason ?? "no reason")")
                }

                #expect(bed.daemon.isRunning)
                #expect(await bed.settlesReadOnlyWithNoSession())
                #expect(try bed.remounts().failed >= 2)

                // The administrator makes the device writable (re-attached read-write).
                try Self.reattachWritable(bed.fixture)
                let session = try bed.openWritableSession()
                #expect(bed.fixture.state == .readWrite)
                session.close()
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }

        /// Unmounts a fixture whose device is read-only and mounts its image again
        /// from a read-write loop device, with the fstab naming the new device.
        private static func reattachWritable(_ fixture: StorageFixture) throws {
            try fixture.unmount()
            let device = try SystemCommand.run(["losetup", "-f", "--show", fixture.imagePath])
                .trimmingCharacters(in: .whitespacesAndNewlines)
            defer { _ = try? SystemCommand.run(["losetup", "-d", device]) }  // autoclear once mounted
            try SystemCommand.run(["mount", "-t", "ext4", "-o", StorageFixture.pikvmMountOptions, device, fixture.mountPath])
            let fstab = try String(contentsOfFile: fixture.fstabPath, encoding: .utf8)
                .replacingOccurrences(of: fixture.device + " ", with: device + " ")
            try fstab.write(toFile: fixture.fstabPath, atomically: true, encoding: .utf8)
        }

        @Test("an admin remounts RO under open sessions: every withWritableStorage body is cancelled within 1 s and throws a revocation")
        func adminRemountCancelsBodies() async throws {
            try await withReliabilityBed { bed in
                let storage = PersistentStorageClient(socketPath: bed.socketPath)
                let bodies = 5
                let (started, startedSink) = AsyncStream<Void>.makeStream()
                let cancelledAt = Recorder<ContinuousClock.Instant>()
                try await withThrowingTaskGroup(of: Result<Void, any Error>.self) { group in
                    for index in 0..<bodies {
                        group.addTask {
                            do {
                                try await storage.withWritableStorage(subdirectory: "body-\(index)") { _ in
                                    startedSink.yield()
                                    do {
                                        try await Task.sleep(for: .seconds(60))
                                    } catch {
                                        cancelledAt.append(.now)
                                        throw error
                                    }
                                }
                                return .success(())
                            } catch {
                                return .failure(error)
                            }
                        }
                    }
                    var count = 0
                    for await _ in started {
                        count += 1
                        if count == bodies { break }
                    }
                    #expect(try bed.clients() == bodies)
                    let remountedAt = ContinuousClock.now
                    try await bed.fixture.remountExternally(.readOnly)
                    var outcomes: [Result<Void, any Error>] = []
                    for try await outcome in group { outcomes.append(outcome) }
                    for outcome in outcomes {
                        #expect(throws: PersistentStorageError.revoked(.writeNoLongerAllowed)) { try outcome.get() }
                    }
                    let times = cancelledAt.values
                    #expect(times.count == bodies)
                    for time in times { #expect(time - remountedAt < .seconds(1), "a body was cancelled \(time - remountedAt) after the remount") }
                }
                #expect(await bed.settlesReadOnlyWithNoSession())
            }
        }

        @Test("the filesystem is full: the script's write fails with ENOSPC, the session still ends cleanly, RO, fsck clean")
        func filesystemFull() async throws {
            try await withStorageFixture(.init(sizeMiB: 8)) { fixture in
                try await withReliabilityBed(on: fixture) { bed in
                    let run = try ChildProcess(pstrunOn: bed.socketPath, command: [
                        "/bin/sh", "-c",
                        #"printf 'small and safe\n' > "$KVMD_PST_DATA/keep" && dd if=/dev/zero of="$KVMD_PST_DATA/fill" bs=65536 2>&1; status=$?; echo "dd-status=$status"; exit $status"#,
                    ])
                    let finished = try #require(await run.finish(timeout: .seconds(60)))
                    #expect(finished.standardOutput.contains("No space left on device"), "\(finished.standardOutput)")
                    #expect(finished.standardOutput.contains("dd-status=1"))
                    #expect(finished.status == 1)
                    #expect(finished.standardError.contains("Process finished: returncode=1"))
                    #expect(await bed.settlesReadOnlyWithNoSession())
                    #expect(try bed.remounts().failed == 0)
                    #expect(try String(contentsOfFile: fixture.dataPath + "/keep", encoding: .utf8) == "small and safe\n")
                    var info = statvfs()
                    #expect(statvfs(fixture.dataPath, &info) == 0 && UInt64(info.f_bavail) * UInt64(info.f_bsize) < 1 << 20, "the filesystem should be full")
                }
                try await fixture.unmount()
                #expect(try await fixture.fileSystemCheckProblems() == nil)
            }
        }
    }
}
