import KvmdConfiguration
import PersistentStorageProtocol
import Logging

/// `kvmd-pstrun`'s command line: `[--socket PATH] [--timeout SECONDS]
/// [--log-level LEVEL] [--main-config FILE] [--override-dir DIR]
/// [--override-config FILE] [--] COMMAND [ARGUMENT ...]`.
///
/// Parsed by hand rather than with ArgumentParser: kvmd-pstrun is started
/// once per script, and ArgumentParser's reflection-based parsing was half
/// of its start-up CPU time (Documentation/Benchmarks.md). The help text
/// and the error format are the ones ArgumentParser printed.
///
/// ```swift
/// switch RunArguments.parse(Array(CommandLine.arguments.dropFirst())) {
/// case .run(let arguments): ...
/// case .help: print(RunArguments.helpText)
/// case .usageError(let message): ...  // RunArguments.usageErrorText(message), exit 2
/// }
/// ```
public struct RunArguments: Equatable, Sendable {
    /// `--socket`; nil: `pst.server.unix` from kvmd's configuration, as
    /// kvmd's kvmd-pstrun reads it, else ``defaultSocketPath``.
    public var socketPath: String?
    /// kvmd's configuration files, for the socket when `--socket` is not given.
    public var configTree = KvmdConfigTree()
    public var timeout: Double = 5
    public var logLevel: Logger.Level = .info
    /// The program and its arguments, never empty.
    public var command: [String] = []

    public enum Parsed: Equatable, Sendable {
        case run(RunArguments)
        case help
        /// `--version`, before the command: the caller prints the version.
        case version
        case usageError(String)
    }

    /// The exit status of a usage error: 2, the shell's convention and the
    /// same for kvmd-pst and kvmd-helper-pst-remount (Documentation/Configuration.md).
    public static let usageErrorExitCode: Int32 = 2

    public static let defaultSocketPath = defaultDaemonSocketPath

    /// The socket to use: `--socket`, else kvmd's `pst.server.unix`, else
    /// ``defaultSocketPath``. kvmd's files are read only in the second case.
    public func effectiveSocketPath() throws(KvmdConfigError) -> String {
        // kvmd's files are read only when needed, or when named on the
        // command line (then they must be usable, as for kvmd's kvmd-pstrun).
        let namesFiles = configTree.mainConfig != nil || configTree.overrideDirectory != nil || configTree.overrideConfig != nil
        if let socketPath, !namesFiles { return socketPath }
        let section = try configTree.pstSection()
        if let socketPath { return socketPath }
        let key = ["server", "unix"]
        guard let configured = try section.string(at: key) else { return Self.defaultSocketPath }
        guard configured.hasPrefix("/"), !configured.utf8.contains(0) else {
            let shown = configured.count > 40 ? String(configured.prefix(40)) + "…" : configured
            throw KvmdConfigError("\(section.source(of: key)): pst.server.unix '\(shown)' is not an absolute path without NUL bytes")
        }
        return configured
    }

    /// Seconds `--timeout` may be: above zero, and at most a day. A larger
    /// value is a typo, and a huge one (`1e300`) is no `Duration` at all.
    public static let timeoutRange: ClosedRange<Double> = 0.001...86_400

    /// Options come first; `--` or the first word that is not an option
    /// starts the command, and everything from there on belongs to it.
    public static func parse(_ words: [String]) -> Parsed {
        var result = RunArguments()
        var index = 0
        while index < words.count {
            let word = words[index]
            if word == "--" {
                index += 1
                break
            }
            if word == "-h" || word == "--help" { return .help }
            if word == "--version" { return .version }
            guard word.hasPrefix("-") else { break }

            // `--name value` or `--name=value`.
            let name: Substring
            var value: String?
            if let equals = word.firstIndex(of: "=") {
                name = word[..<equals]
                value = String(word[word.index(after: equals)...])
            } else {
                name = word[...]
            }
            guard let option = Option(rawValue: String(name)) else {
                return .usageError("Unknown option '\(name)'")
            }
            if value == nil {
                index += 1
                guard index < words.count else { return .usageError("Missing value for '\(option.synopsis)'") }
                value = words[index]
            }
            guard let value, result.set(option, to: value) else {
                return .usageError("The value '\(value ?? "")' is invalid for '\(option.synopsis)'")
            }
            index += 1
        }
        result.command = Array(words[index...])
        guard !result.command.isEmpty else {
            return .usageError("a command to run is required: kvmd-pstrun -- CMD [ARGS...]")
        }
        guard timeoutRange.contains(result.timeout) else {
            return .usageError("--timeout: \(result.timeout) is out of range: use 0.001 to 86400 seconds")
        }
        return .run(result)
    }

    private enum Option: String {
        case socket = "--socket"
        case timeout = "--timeout"
        case logLevel = "--log-level"
        case mainConfig = "--main-config"
        case overrideDirectory = "--override-dir"
        case overrideConfig = "--override-config"

        var synopsis: String {
            switch self {
            case .socket: "--socket <path>"
            case .timeout: "--timeout <seconds>"
            case .logLevel: "--log-level <level>"
            case .mainConfig: "--main-config <file>"
            case .overrideDirectory: "--override-dir <dir>"
            case .overrideConfig: "--override-config <file>"
            }
        }
    }

    private mutating func set(_ option: Option, to value: String) -> Bool {
        switch option {
        case .socket:
            guard !value.isEmpty else { return false }
            socketPath = value
        case .timeout:
            // Decimal only: Double(_:) also reads hexadecimal ("0x10" is 16).
            guard value.allSatisfy({ "0123456789.eE+-".contains($0) }), let seconds = Double(value), seconds.isFinite else { return false }
            timeout = seconds
        case .logLevel:
            guard let level = Logger.Level(rawValue: value) else { return false }
            logLevel = level
        case .mainConfig:
            guard !value.isEmpty else { return false }
            configTree.mainConfig = value
        case .overrideDirectory:
            guard !value.isEmpty else { return false }
            configTree.overrideDirectory = value
        case .overrideConfig:
            guard !value.isEmpty else { return false }
            configTree.overrideConfig = value
        }
        return true
    }

    static let usage = "kvmd-pstrun [--socket <path>] [--timeout <seconds>] [--log-level <level>] [--main-config <file>] [--override-dir <dir>] [--override-config <file>] -- <command> [<argument> ...]"

    /// What `--help` prints.
    public static let helpText = """
        OVERVIEW: Run a command while PiKVM's persistent storage is writable.

        The command gets the environment plus KVMD_PST_DATA, the writable data
        directory. It runs in its own process group and is stopped (SIGTERM, then
        SIGKILL) if write access goes away, or if a signal would end kvmd-pstrun (which
        then exits 128+N for signal N); what the command leaves running in its group is
        stopped too when it exits. The exit status is the command's, 128+N if signal N
        killed it, 127 if it does not exist, 126 if it cannot be executed, 1 if it never
        ran (no daemon, write refused), or 2 on a usage error.

        USAGE: \(usage)

        ARGUMENTS:
          <command>               The command to run and its arguments, after --.

        OPTIONS:
          --socket <path>         The PST daemon's socket. (default: pst.server.unix
                                  from kvmd's configuration, else /run/kvmd/pst.sock)
          --timeout <seconds>     Seconds to wait for the daemon to answer and to make
                                  the storage writable, 0.001 to 86400. (default: 5.0)
          --log-level <level>     trace, debug, info, notice, warning, error or
                                  critical. (values: trace, debug, info, notice,
                                  warning, error, critical; default: info)
          --main-config <file>    kvmd's main configuration file, read for the
                                  socket. (default: /usr/lib/kvmd/main.yaml, if it
                                  exists)
          --override-dir <dir>    kvmd's directory of partial overrides. (default:
                                  /etc/kvmd/override.d, if it exists)
          --override-config <file>
                                  kvmd's override file. (default:
                                  /etc/kvmd/override.yaml, if it exists)
          --version               Show the version.
          -h, --help              Show help information.


        """

    /// What a usage error prints on stderr.
    public static func usageErrorText(_ message: String) -> String {
        """
        Error: \(message)
        Usage: \(usage)
          See 'kvmd-pstrun --help' for more information.

        """
    }
}
