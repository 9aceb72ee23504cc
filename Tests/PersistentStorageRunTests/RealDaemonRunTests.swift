import Foundation
import Glibc
import PersistentStorageTestSupport
import Testing

/// `kvmd-pstrun` against a real `kvmd-pst` on a real loop-mounted image.
@Suite("kvmd-pstrun against a real daemon", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
struct RealDaemonRunTests {
    private static let example = URL(filePath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appending(path: "Examples/test.sh").path(percentEncoded: false)

    @Test("the PST document's example runs, writes to KVMD_PST_DATA, logs like the reference, and the storage is RO after")
    func documentExample() async throws {
        try await withStorageDaemon { fixture, daemon in
            #expect(fixture.state == .readOnly)
            let run = try RunningPstRun(socketPath: daemon.socketPath, command: [Self.example, "--some", "--script", "--args"])
            let finished = await run.finish()
            #expect(finished.status == 0)
            #expect(finished.standardOutput.hasSuffix(" + --some --script --args\n"))
            let written = try String(contentsOfFile: fixture.dataPath + "/foo", encoding: .utf8)
            #expect(written == finished.standardOutput)
            #expect(finished.standardError.components(separatedBy: "\n").filter { !$0.isEmpty } == [
                "--    INFO -- Opening PST session ...",
                "--    INFO -- PST write is allowed: \(fixture.dataPath)",
                "--    INFO -- Running the process ...",
                "--    INFO -- Process finished: returncode=0",
            ])
            #expect(await eventually { fixture.state == .readOnly })
        }
    }

    @Test("the script's exit status is passed on", arguments: [
        ("exit 3", Int32(3)), ("kill -KILL $$", 128 + SIGKILL), ("exit 0", 0),
    ])
    func exitStatus(script: String, status: Int32) async throws {
        try await withStorageDaemon { _, daemon in
            let run = try RunningPstRun(socketPath: daemon.socketPath, command: ["/bin/sh", "-c", script])
            #expect(await run.finish().status == status)
        }
    }

    @Test("stdin reaches the script, which runs in its own process group")
    func stdinAndProcessGroup() async throws {
        try await withStorageDaemon { _, daemon in
            let run = try RunningPstRun(
                socketPath: daemon.socketPath,
                command: ["/bin/sh", "-c", #"read line; echo "$line"; ps -o pgid= -p $$ | tr -d ' '; ps -o pgid= -p $PPID | tr -d ' '"#]
            )
            run.write("typed input\n")
            let lines = await run.finish().standardOutput.split(separator: "\n")
            #expect(lines.first == "typed input")
            #expect(lines.count == 3 && lines[1] != lines[2])
        }
    }

    @Test("a missing command is 127 and the script never ran")
    func missingCommand() async throws {
        try await withStorageDaemon { _, daemon in
            let finished = await (try RunningPstRun(socketPath: daemon.socketPath, command: ["/nonexistent/cmd"])).finish()
            #expect(finished.status == 127)
            #expect(!finished.standardError.contains("Traceback"))
        }
    }

    @Test("a daemon that is not there is exit status 1 with one clear line")
    func noDaemon() async throws {
        let finished = await (try RunningPstRun(socketPath: "/nonexistent/pst.sock", command: ["true"])).finish()
        #expect(finished.status == 1)
        #expect(finished.standardError.contains("ERROR -- no PST daemon at /nonexistent/pst.sock"))
    }

    @Test("a daemon with as many sessions as it takes (503): exit 1, the script never ran, and the log says why")
    func fullDaemon() async throws {
        try await withStorageDaemon(extraArguments: ["--max-sessions", "1"]) { fixture, daemon in
            let held = try await Self.loopingScript(on: daemon, trap: ":")
            let marker = fixture.directory + "/second-ran"
            let finished = await (try RunningPstRun(socketPath: daemon.socketPath, command: ["/bin/sh", "-c", "touch \(marker)"])).finish()
            #expect(finished.status == 1)
            #expect(access(marker, F_OK) != 0, "the script ran")
            #expect(finished.standardError.contains(
                "ERROR -- the PST daemon at \(daemon.socketPath) cannot take a session now (503 Service Unavailable"), "\(finished.standardError)")
            #expect(!finished.standardError.contains("broke the protocol"))
            kill(held.process.processIdentifier, SIGTERM)
            _ = await held.finish()
        }
    }

    @Test("a user the daemon does not serve (403): exit 1, the script never ran, and the log says who may",
          .enabled(if: SystemCommand.exists("setpriv")))
    func forbiddenUser() async throws {
        // 0666 lets nobody connect; the daemon's peer check answers 403.
        try await withStorageDaemon(extraArguments: ["--socket-mode", "0666"]) { fixture, daemon in
            chmod(fixture.directory, 0o755)  // for nobody to reach the socket inside
            let marker = fixture.directory + "/outsider-ran"
            let finished = try await SystemCommand.execute([
                "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
                BuiltProducts.path(of: "kvmd-pstrun"), "--socket", daemon.socketPath, "--", "/bin/sh", "-c", "touch \(marker)",
            ])
            #expect(finished.status == 1)
            #expect(access(marker, F_OK) != 0, "the script ran")
            #expect(finished.standardError.contains("ERROR -- the PST daemon at \(daemon.socketPath) refused this user (403 Forbidden)"),
                    "\(finished.standardError)")
            #expect(!finished.standardError.contains("broke the protocol"))
        }
    }

    /// A `kvmd-pstrun` whose script sets `trap`, says it started, and loops
    /// until a signal ends it; returned once it has started.
    private static func loopingScript(on daemon: DaemonProcess, trap: String) async throws -> RunningPstRun {
        let run = try RunningPstRun(
            socketPath: daemon.socketPath, command: ["/bin/sh", "-c", "\(trap); echo started; while :; do sleep 0.1; done"])
        #expect(await run.waitForOutputLine("started"))
        return run
    }

    @Test("the daemon killed mid-script: the script is killed within 2 s and the status is non-zero")
    func daemonDeathKillsScript() async throws {
        try await withStorageDaemon { _, daemon in
            // The script ignores SIGTERM, so only the SIGKILL after the grace period ends it.
            let run = try await Self.loopingScript(on: daemon, trap: "trap '' TERM")
            let killed = ContinuousClock.now
            daemon.terminate(signal: SIGKILL)
            let finished = await run.finish()
            #expect(ContinuousClock.now - killed < .seconds(2))
            #expect(finished.status != 0)
            #expect(finished.standardError.contains("revoked"))
        }
    }

    @Test("SIGTERM or SIGHUP to kvmd-pstrun is passed on to the script, kvmd-pstrun exits 128+N, and the storage is RO after", arguments: [
        (SIGTERM, "TERM"), (SIGHUP, "HUP"),
    ])
    func signalForwarded(signal: Int32, name: String) async throws {
        try await withStorageDaemon { fixture, daemon in
            let run = try await Self.loopingScript(on: daemon, trap: "trap 'echo got-\(name); exit 9' \(name)")
            kill(run.process.processIdentifier, signal)
            let finished = await run.finish()
            #expect(finished.status == 128 + signal)
            #expect(finished.standardOutput.contains("got-\(name)"))
            #expect(finished.standardError.contains("Process finished: returncode=9"))
            #expect(finished.standardError.contains("Got signal \(signal); passing it on to the process"))
            #expect(await eventually { fixture.state == .readOnly })
        }
    }

    @Test("a script that outlasts several heartbeats keeps its session: kvmd-pstrun answers the daemon's pings meanwhile")
    func heartbeatsAnswered() async throws {
        // The daemon drops a session that does not answer within half an
        // interval; its first ping comes after one to two intervals, so a
        // script of 3.5 s sees at least two.
        try await withStorageDaemon(extraArguments: ["--heartbeat", "1"]) { fixture, daemon in
            let run = try RunningPstRun(
                socketPath: daemon.socketPath,
                command: ["/bin/sh", "-c", #"sleep 3.5; echo done > "$KVMD_PST_DATA/after-heartbeats""#]
            )
            let finished = await run.finish()
            #expect(finished.status == 0)
            #expect(!finished.standardError.contains("revoked"), "\(finished.standardError)")
            #expect(try String(contentsOfFile: fixture.dataPath + "/after-heartbeats", encoding: .utf8) == "done\n")
        }
    }

    @Test("an admin's read-only remount stops the script with SIGTERM, and kvmd-pstrun says why")
    func readOnlyRemountRevokes() async throws {
        try await withStorageDaemon { fixture, daemon in
            let run = try await Self.loopingScript(on: daemon, trap: "trap 'echo got-term; exit 5' TERM")
            try await fixture.remountExternally(.readOnly)
            let finished = await run.finish()
            #expect(finished.status == 5)
            #expect(finished.standardOutput.contains("got-term"))
            #expect(finished.standardError.contains(
                "PST write access was revoked (the daemon reports the storage is no longer writable); stopping the process"))
        }
    }

    @Test("interactive: two runs in one terminal both read typed input, and ^C reaches the script only")
    func interactiveUnderPseudoTerminal() async throws {
        try await withStorageDaemon { _, daemon in
            let pstrun = BuiltProducts.path(of: "kvmd-pstrun") + " --socket " + daemon.socketPath
            let session = """
                \(pstrun) -- sh -c 'read x; echo READ1=$x'; \
                \(pstrun) -- sh -c 'read y; echo READ2=$y'; \
                \(pstrun) -- sh -c 'trap "echo GOTINT; exit 7" INT; echo ready; while :; do sleep 0.1; done'; \
                echo PSTRUN=$?
                """
            // `script` gives the commands a pseudo-terminal whose foreground group
            // is theirs; what is written to its stdin arrives as typed keys. The
            // pauses only pace the typing; each line is read whenever it arrives.
            let typing = "sleep 2; echo first; sleep 2; echo second; sleep 2; printf '\\003'; sleep 1"
            let result = try SystemCommand.execute(
                ["/bin/sh", "-c", "(\(typing)) | script -qfec \"$0\" /dev/null", session]
            )
            #expect(result.standardOutput.contains("READ1=first"))
            #expect(result.standardOutput.contains("READ2=second"))
            #expect(result.standardOutput.contains("GOTINT"))
            #expect(result.standardOutput.contains("PSTRUN=7"))
        }
    }
}
