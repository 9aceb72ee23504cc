import Foundation
import Glibc
import PersistentStorage
import PersistentStorageTestSupport
import Testing

/// Nothing the script started outlives `kvmd-pstrun`: not when a signal
/// ends `kvmd-pstrun`, not when the script exits and leaves children behind.
/// Against a real `kvmd-pst` on a real loop-mounted image; what is asserted
/// is what a user sees: the exit status, which processes are alive (/proc),
/// the session count and whether the kernel has the storage read-only.
@Suite("The script's process group ends before kvmd-pstrun does", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
struct ScriptGroupEndTests {
    /// Alive and not a zombie, from /proc/PID/stat.
    private static func isAlive(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(after: close)...].split(separator: " ").first
        return state != "Z" && state != "X"
    }

    /// Kills whatever of `pids` a failed test left alive.
    private static func killSurvivors(_ pids: [pid_t]) {
        for pid in pids where pid > 0 && isAlive(pid) { kill(pid, SIGKILL) }
    }

    private static func noSessionLeft(_ socketPath: String, _ fixture: StorageFixture) async -> Bool {
        await eventually {
            guard fixture.state == .readOnly else { return false }
            return (try? await PersistentStorageClient(socketPath: socketPath).state().clients) == 0
        }
    }

    @Test("a signal that would end kvmd-pstrun stops the script and its children first; kvmd-pstrun then exits 128+N", arguments: [
        SIGINT, SIGQUIT, SIGUSR1, SIGUSR2, SIGPIPE, SIGALRM, SIGTERM, SIGHUP,
    ])
    func endingSignal(signal: Int32) async throws {
        try await withStorageDaemon { fixture, daemon in
            // The script starts a child that writes to the PST until killed,
            // prints both pids, and loops.
            let run = try RunningPstRun(socketPath: daemon.socketPath, defaultSignals: true, command: ["/bin/sh", "-c", #"""
                (while :; do date >> "$KVMD_PST_DATA/child"; sleep 0.05; done) >/dev/null 2>&1 &
                echo $!; echo $$
                while :; do sleep 0.1; done
                """#])
            let child = pid_t(await run.nextOutputLine() ?? "") ?? 0
            let script = pid_t(await run.nextOutputLine() ?? "") ?? 0
            defer { Self.killSurvivors([child, script]) }
            try #require(child > 0 && script > 0)

            kill(run.process.processIdentifier, signal)
            #expect(await run.exits(within: .seconds(10)), "kvmd-pstrun did not exit within 10 s")
            let status = await run.exitStatus()
            #expect(!Self.isAlive(script), "the script outlived kvmd-pstrun")
            #expect(!Self.isAlive(child), "the script's child outlived kvmd-pstrun")
            // Survivors hold the output pipes open: they must go before it is read.
            Self.killSurvivors([child, script])
            let finished = await run.finish()
            #expect(status == 128 + signal, "\(finished.standardError)")
            #expect(finished.standardError.contains("Got signal \(signal);"), "\(finished.standardError)")
            #expect(await Self.noSessionLeft(daemon.socketPath, fixture))
        }
    }

    @Test("a script that ignores SIGTERM is killed after the grace period when a signal ends kvmd-pstrun")
    func endingSignalThenKill() async throws {
        try await withStorageDaemon { fixture, daemon in
            let run = try RunningPstRun(socketPath: daemon.socketPath, defaultSignals: true, command: ["/bin/sh", "-c", "trap '' TERM; echo $$; while :; do sleep 0.1; done"])
            let script = pid_t(await run.nextOutputLine() ?? "") ?? 0
            defer { Self.killSurvivors([script]) }
            try #require(script > 0)

            kill(run.process.processIdentifier, SIGUSR1)
            #expect(await run.exits(within: .seconds(10)), "kvmd-pstrun did not exit within 10 s")
            #expect(!Self.isAlive(script), "the script outlived kvmd-pstrun")
            Self.killSurvivors([script])
            let finished = await run.finish()
            #expect(finished.status == 128 + SIGUSR1)
            #expect(finished.standardError.contains("The process did not exit in time; killing its process group"))
            #expect(await Self.noSessionLeft(daemon.socketPath, fixture))
        }
    }

    @Test("what the script leaves running in its group when it exits is stopped (SIGTERM, then SIGKILL) before the session closes",
          arguments: ["", #"trap "" TERM; "#])
    func leftoversStopped(childTrap: String) async throws {
        try await withStorageDaemon { fixture, daemon in
            // The script exits only once its child is ready (its trap in
            // place): otherwise the child could get the SIGTERM before it
            // ignores it, and the test would not see the SIGKILL it is about.
            let run = try RunningPstRun(socketPath: daemon.socketPath, defaultSignals: true, command: ["/bin/sh", "-c", """
                /bin/sh -c '\(childTrap): > "$KVMD_PST_DATA/ready"; while :; do date >> "$KVMD_PST_DATA/leftover"; sleep 0.05; done' >/dev/null 2>&1 &
                while [ ! -e "$KVMD_PST_DATA/ready" ]; do sleep 0.01; done
                echo $!
                exit 3
                """])
            let child = pid_t(await run.nextOutputLine() ?? "") ?? 0
            defer { Self.killSurvivors([child]) }
            try #require(child > 0)

            #expect(await run.exits(within: .seconds(10)), "kvmd-pstrun did not exit within 10 s")
            #expect(!Self.isAlive(child), "the script's child outlived kvmd-pstrun")
            Self.killSurvivors([child])
            let finished = await run.finish()
            #expect(finished.status == 3, "the script's own status: \(finished.standardError)")
            #expect(finished.standardError.contains("process(es) in its group; stopping them"), "\(finished.standardError)")
            if !childTrap.isEmpty {
                #expect(finished.standardError.contains("The process did not exit in time; killing its process group"))
            }
            #expect(await Self.noSessionLeft(daemon.socketPath, fixture))
        }
    }
}
