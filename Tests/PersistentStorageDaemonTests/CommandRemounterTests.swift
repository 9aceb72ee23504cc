import Glibc
import PersistentStorageMount
import Testing
@testable import PersistentStorageDaemon

@Suite("Remounting through an external command")
struct CommandRemounterTests {
    @Test("{mode} is replaced by rw or ro in every argument")
    func modePlaceholder() {
        let remounter = CommandRemounter(arguments: ["helper", "{mode}", "--mode={mode}"])
        #expect(remounter.commandLine(for: .readWrite) == ["helper", "rw", "--mode=rw"])
        #expect(remounter.commandLine(for: .readOnly) == ["helper", "ro", "--mode=ro"])
    }

    @Test("exit status 0 is success")
    func success() async throws {
        try await CommandRemounter(arguments: ["sh", "-c", "test \"$0\" = ro", "{mode}"]).remount(to: .readOnly)
    }

    @Test("a non-zero exit is a failure whose reason is the command's stderr")
    func failureCarriesStandardError() async {
        let remounter = CommandRemounter(arguments: ["sh", "-c", "echo \"cannot remount $0: busy\" >&2; exit 3", "{mode}"])
        await #expect {
            try await remounter.remount(to: .readOnly)
        } throws: { error in
            guard let error = error as? RemountCommandError else { return false }
            return error.outcome == .exited(status: 3) && error.standardError == "cannot remount ro: busy"
                && error.description.contains("cannot remount ro: busy")
        }
    }

    @Test("a command that does not exist is a failure that says so")
    func missingCommand() async {
        await #expect {
            try await CommandRemounter(arguments: ["/nonexistent/kvmd-helper", "{mode}"]).remount(to: .readWrite)
        } throws: { error in
            (error as? RemountCommandError)?.outcome == .couldNotStart(errno: ENOENT)
        }
    }
}

@Suite("The remount command's time limit")
struct CommandRemounterTimeoutTests {
    @Test("A command that hangs is killed with everything it started, and the remount fails saying so")
    func hangingCommandIsKilled() async throws {
        // The grandchild `sleep` holds stderr open: only killing the group ends the read.
        let remounter = CommandRemounter(
            arguments: ["sh", "-c", "echo waiting >&2; sleep 30 & wait", "{mode}"], timeout: .milliseconds(300))
        let started = ContinuousClock.now
        do {
            try await remounter.remount(to: .readOnly)
            Issue.record("a hanging command must fail")
        } catch let error as RemountCommandError {
            #expect(error.outcome == .timedOut(after: .milliseconds(300)))
            #expect(error.standardError == "waiting")
            #expect(error.description.contains("did not finish within"))
        }
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
