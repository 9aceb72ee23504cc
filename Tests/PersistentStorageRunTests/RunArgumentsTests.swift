import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageRun

@Suite("kvmd-pstrun's command line")
struct RunArgumentsTests {
    private func run(_ words: [String]) -> RunArguments? {
        if case .run(let arguments) = RunArguments.parse(words) { return arguments }
        return nil
    }

    private func usageError(_ words: [String]) -> String? {
        if case .usageError(let message) = RunArguments.parse(words) { return message }
        return nil
    }

    @Test("everything after -- is the command, options included")
    func commandAfterSeparator() {
        let parsed = run(["--socket", "/tmp/s", "--timeout=2.5", "--log-level", "debug", "--", "/root/test.sh", "--some", "--", "-h"])
        #expect(parsed?.socketPath == "/tmp/s")
        #expect(parsed?.timeout == 2.5)
        #expect(parsed?.logLevel == .debug)
        #expect(parsed?.command == ["/root/test.sh", "--some", "--", "-h"])
    }

    @Test("the first word that is not an option starts the command; defaults stay")
    func commandWithoutSeparator() {
        let parsed = run(["true", "--socket", "x"])
        #expect(parsed?.command == ["true", "--socket", "x"])
        #expect(parsed?.socketPath == nil)
        #expect(parsed?.timeout == 5)
        #expect(parsed?.logLevel == .info)
    }

    @Test("-h or --help before the command asks for help, after -- it is the command's")
    func help() {
        #expect(RunArguments.parse(["--help"]) == .help)
        #expect(RunArguments.parse(["--socket", "/s", "-h", "--", "true"]) == .help)
        #expect(run(["--", "--help"])?.command == ["--help"])
    }

    @Test("--version before the command asks for the version, after -- it is the command's")
    func version() {
        #expect(RunArguments.parse(["--version"]) == .version)
        #expect(RunArguments.parse(["--socket", "/s", "--version", "--", "true"]) == .version)
        #expect(run(["--", "--version"])?.command == ["--version"])
        #expect(RunArguments.helpText.contains("  --version "))
    }

    @Test("bad input is a usage error naming the problem")
    func usageErrors() {
        #expect(usageError([]) == "a command to run is required: kvmd-pstrun -- CMD [ARGS...]")
        #expect(usageError(["--socket", "/s", "--"]) == "a command to run is required: kvmd-pstrun -- CMD [ARGS...]")
        #expect(usageError(["--bogus", "--", "true"]) == "Unknown option '--bogus'")
        #expect(usageError(["--timeout", "x", "--", "true"]) == "The value 'x' is invalid for '--timeout <seconds>'")
        #expect(usageError(["--timeout", "nan", "--", "true"]) == "The value 'nan' is invalid for '--timeout <seconds>'")
        #expect(usageError(["--timeout=0", "true"]) == "--timeout: 0.0 is out of range: use 0.001 to 86400 seconds")
        #expect(usageError(["--log-level", "loud", "true"]) == "The value 'loud' is invalid for '--log-level <level>'")
        #expect(usageError(["--socket="]) == "The value '' is invalid for '--socket <path>'")
        #expect(usageError(["--timeout"]) == "Missing value for '--timeout <seconds>'")
    }

    @Test("--timeout is refused outside 0.001 to 86400 seconds, negative and huge values included", arguments: [
        "-1", "1e300", "1e18", "86401", "0.0001", "inf", "0x10",
    ])
    func timeoutRange(value: String) {
        let message = usageError(["--timeout", value, "--", "true"])
        #expect(message?.hasSuffix("is out of range: use 0.001 to 86400 seconds") == true
            || message == "The value '\(value)' is invalid for '--timeout <seconds>'", "\(message ?? "accepted")")
    }

    @Test("the built kvmd-pstrun exits 2 with the range for a huge --timeout, where it crashed (SIGILL) before", arguments: ["1e300", "1e18"])
    func hugeTimeoutBuilt(value: String) throws {
        let result = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pstrun"), "--timeout", value, "--", "true"])
        #expect(result.status == 2, "\(result.standardError)")
        #expect(result.standardError.contains("--timeout: \(Double(value)!) is out of range: use 0.001 to 86400 seconds"))
    }

    @Test("the built kvmd-pstrun prints help on stdout, and usage errors on stderr with exit 2")
    func builtExecutable() throws {
        let help = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pstrun"), "--help"])
        #expect(help.status == 0)
        #expect(help.standardOutput == RunArguments.helpText)
        let bad = try SystemCommand.execute([BuiltProducts.path(of: "kvmd-pstrun"), "--bogus", "--", "true"])
        #expect(bad.status == 2)
        #expect(bad.standardOutput.isEmpty)
        #expect(bad.standardError == RunArguments.usageErrorText("Unknown option '--bogus'"))
    }
}
