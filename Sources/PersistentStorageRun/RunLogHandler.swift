import Glibc
import Logging

/// Log lines in the reference `kvmd-pstrun`'s shape, on stderr:
/// `--    INFO -- Opening PST session ...`.
///
/// ```swift
/// LoggingSystem.bootstrap { _ in RunLogHandler(logLevel: .info) }
/// ```
public struct RunLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(logLevel: Logger.Level) {
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let line = Self.format(level: event.level, message: "\(event.message)") + "\n"
        // One write(2) per line, so a line is never split by another writer.
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// One line without its newline. The level name is padded on the left to
    /// seven characters, the width of `WARNING`, as in Python's `%(levelname)7s`.
    public static func format(level: Logger.Level, message: String) -> String {
        let name = levelName(level)
        let padding = String(repeating: " ", count: max(0, 7 - name.count))
        return "-- \(padding)\(name) -- \(message)"
    }

    private static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "TRACE"
        case .debug: "DEBUG"
        case .info: "INFO"
        case .notice: "NOTICE"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }
}
