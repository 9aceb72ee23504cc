import Glibc
import PersistentStorageMount

/// Values given by a configuration file or on the command line; nil means
/// "not given here". Applied in order over the defaults, so the command line
/// (applied last) wins over the file.
public struct ConfigurationOverrides: Sendable, Equatable {
    public var socketPath: String?
    public var socketMode: mode_t?
    public var socketGroup: String?
    public var heartbeat: Duration?
    public var readOnlyRetryDelay: Duration?
    public var readOnlyCleanupDelay: Duration?
    public var remountCommand: [String]?
    public var fstabPath: String?
    public var dataLayout: DataLayout?
    public var maxSessions: Int?
    public var maxConnections: Int?
    public var httpTimeout: Duration?
    public var stopTimeout: Duration?

    public init() {}
}

extension DaemonConfiguration {
    public mutating func apply(_ overrides: ConfigurationOverrides) {
        if let value = overrides.socketPath { socketPath = value }
        if let value = overrides.socketMode { socketMode = value }
        if let value = overrides.socketGroup { socketGroup = value.isEmpty ? nil : value }
        if let value = overrides.heartbeat { heartbeat = value }
        if let value = overrides.readOnlyRetryDelay { readOnlyRetryDelay = value }
        if let value = overrides.readOnlyCleanupDelay { readOnlyCleanupDelay = value }
        if let value = overrides.remountCommand { remountCommand = value.isEmpty ? nil : value }
        if let value = overrides.fstabPath { fstabPath = value }
        if let value = overrides.dataLayout { dataLayout = value }
        if let value = overrides.maxSessions { maxSessions = value }
        if let value = overrides.maxConnections { maxConnections = value }
        if let value = overrides.httpTimeout { httpIdleTimeout = value }
        if let value = overrides.stopTimeout { stopTimeout = value }
    }
}

/// Parses option values the way a user writes them.
public enum ConfigurationValue {
    /// A socket's file mode in octal, as chmod(1) takes it: `660`, `0660` or
    /// `0o660`, at most `0777` (a socket has no use for setuid, setgid or sticky bits).
    public static func octalMode(_ text: String) throws(DaemonConfigurationError) -> mode_t {
        var digits = Substring(text)
        if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
        guard !digits.isEmpty, let value = mode_t(digits, radix: 8), value <= 0o777 else {
            throw DaemonConfigurationError("'\(text)' is not an octal file mode from 0 to 0777, such as 0660")
        }
        return value
    }

    /// A command line split on whitespace (no quoting: put arguments with
    /// spaces in the configuration file's list form instead).
    public static func commandLine(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }
}
