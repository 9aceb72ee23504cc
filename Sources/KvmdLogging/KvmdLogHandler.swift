import Logging
import SystemSupport

/// Log lines the way kvmd's daemons and `kvmd-pstrun` write them to stderr:
/// `--    INFO -- message`, the level right-aligned to seven characters
/// (Python's `%(levelname)7s`, with Python's level names), metadata appended
/// as `key=value`. Control characters in the message and the metadata are
/// escaped (``Swift/String/escapingControlCharacters``): every call is one
/// line, whatever a peer managed to put into it.
///
/// ```swift
/// LoggingSystem.bootstrap { _ in KvmdLogHandler(logLevel: .info) }
/// ```
public struct KvmdLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]

    public init(logLevel: Logger.Level = .info) {
        self.logLevel = logLevel
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = Self.format(level: event.level, message: event.message.description)
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        if !merged.isEmpty {
            line += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)".escapingControlCharacters }.joined(separator: " ")
        }
        writeToStandardError(line + "\n")
    }

    /// One line without metadata and newline; control characters in `message` escaped.
    static func format(level: Logger.Level, message: String) -> String {
        let name = levelName(level)
        return "-- " + String(repeating: " ", count: max(0, 7 - name.count)) + name + " -- " + message.escapingControlCharacters
    }

    /// Python's level names, which kvmd's format shows.
    static func levelName(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "DEBUG"
        case .info, .notice: "INFO"
        case .warning: "WARNING"
        case .error: "ERROR"
        case .critical: "CRITICAL"
        }
    }
}
