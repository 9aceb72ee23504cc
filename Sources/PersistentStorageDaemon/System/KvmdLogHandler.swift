import Glibc
import Logging

/// Log lines the way kvmd writes them to stderr: `--    INFO -- message`,
/// the level right-aligned to seven characters, metadata appended as
/// `key=value`. Control characters in the message and the metadata are
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
        let name = Self.levelName(event.level)
        var line = "-- " + String(repeating: " ", count: max(0, 7 - name.count)) + name + " -- " + event.message.description.escapingControlCharacters
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        if !merged.isEmpty {
            line += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)".escapingControlCharacters }.joined(separator: " ")
        }
        line += "\n"
        // One write(2) per line, so lines from several threads never interleave.
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
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
