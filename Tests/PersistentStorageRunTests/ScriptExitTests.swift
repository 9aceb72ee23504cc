import Glibc
import Testing

@testable import PersistentStorageRun

@Suite("Exit codes")
struct ScriptExitTests {
    @Test("a normal exit keeps the script's code", arguments: [0, 1, 3, 255])
    func exitedNormally(code: Int32) {
        #expect(ScriptExit.code(forWaitStatus: code << 8) == code)
    }

    @Test("a death by signal N is 128 + N", arguments: [SIGTERM, SIGKILL, SIGINT, SIGHUP])
    func killedBySignal(signal: Int32) {
        #expect(ScriptExit.code(forWaitStatus: signal) == 128 + signal)
        // With the core-dump bit set.
        #expect(ScriptExit.code(forWaitStatus: signal | 0x80) == 128 + signal)
    }

    @Test("a missing program is 127, one that cannot be executed 126")
    func launchFailures() {
        #expect(ScriptLaunchError(command: "nope", errno: ENOENT).exitCode == 127)
        #expect(ScriptLaunchError(command: "/etc/passwd", errno: EACCES).exitCode == 126)
    }

    @Test("a program that is really started reports its code and signal")
    func spawnedProgram() throws {
        let exited = try ScriptProcess.spawn(["/bin/sh", "-c", "exit 3"], environment: [], foregroundTerminal: nil)
        try waitUntilExited(exited)
        #expect(exited.reap() == 3)

        let killed = try ScriptProcess.spawn(["/bin/sh", "-c", "kill -TERM $$"], environment: [], foregroundTerminal: nil)
        try waitUntilExited(killed)
        #expect(killed.reap() == 128 + SIGTERM)
    }

    @Test("a running program has not exited; once it has, it stays a zombie until reaped")
    func exitWithoutReaping() throws {
        let script = try ScriptProcess.spawn(["/bin/sleep", "30"], environment: [], foregroundTerminal: nil)
        #expect(!script.hasExited())
        script.signalGroup(SIGKILL)
        try waitUntilExited(script)
        // Still there to be reaped: asking again does not lose the status.
        #expect(script.hasExited())
        #expect(script.reap() == 128 + SIGKILL)
    }

    @Test("the environment is passed as given")
    func environmentPassed() throws {
        let script = try ScriptProcess.spawn(
            ["/bin/sh", "-c", "[ \"$KVMD_PST_DATA\" = /x/y ] && [ -z \"$HOME\" ]"], environment: ["KVMD_PST_DATA=/x/y"], foregroundTerminal: nil)
        try waitUntilExited(script)
        #expect(script.reap() == 0)
    }

    @Test("a spawned program leads a process group of its own")
    func ownProcessGroup() throws {
        let script = try ScriptProcess.spawn(["/bin/sh", "-c", "exit 0"], environment: [], foregroundTerminal: nil)
        // It is a zombie until reaped, so its group id can still be read.
        try waitUntilExited(script)
        #expect(getpgid(script.pid) == script.pid)
        #expect(script.pid != getpgrp())
        _ = script.reap()
    }

    @Test("spawning reports ENOENT and EACCES instead of a child that fails")
    func spawnErrors() {
        #expect(throws: ScriptLaunchError(command: "/nonexistent/x", errno: ENOENT)) {
            try ScriptProcess.spawn(["/nonexistent/x"], environment: [], foregroundTerminal: nil)
        }
        #expect {
            try ScriptProcess.spawn(["/etc/hostname"], environment: [], foregroundTerminal: nil)
        } throws: { error in
            (error as? ScriptLaunchError)?.exitCode == 126
        }
    }
}

/// Waits (at most 10 s) until `script` has exited, without reaping it.
private func waitUntilExited(_ script: ScriptProcess) throws {
    let deadline = ContinuousClock.now + .seconds(10)
    while !script.hasExited() {
        try #require(ContinuousClock.now < deadline, "the program did not exit within 10 s")
        usleep(1000)
    }
}
