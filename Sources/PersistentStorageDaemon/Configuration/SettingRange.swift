/// The values a numeric setting may take, kept in one place so that the
/// command line, the YAML file and ``DaemonConfiguration/validate()`` accept
/// and refuse the same ones, with the same message.
///
/// Bounded above as well as below: a huge value (`1e300`) cannot be turned
/// into a `Duration` and would crash the daemon, and a value past a day is a
/// typo, not a setting. Bounded away from zero where a tiny value would
/// silently mean something else (`--heartbeat 0.0001` rounds to 0, "off").
///
/// ```swift
/// let heartbeat = try SettingRange.heartbeat.seconds(from: "15", name: "--heartbeat")
/// ```
public struct SettingRange: Sendable, Equatable {
    public let lowest: Double
    public let highest: Double
    /// Whether 0 is accepted besides `lowest...highest`, meaning "off".
    public let zeroMeansOff: Bool
    /// Whether only whole numbers are accepted.
    public let wholeNumbers: Bool
    /// "seconds", or "" for a count.
    let unit: String

    public static let heartbeat = SettingRange(lowest: 0.1, highest: 3600, zeroMeansOff: true, wholeNumbers: false, unit: "seconds")
    public static let readOnlyRetryDelay = SettingRange(lowest: 0.1, highest: 3600, zeroMeansOff: false, wholeNumbers: false, unit: "seconds")
    public static let readOnlyCleanupDelay = SettingRange(lowest: 0, highest: 600, zeroMeansOff: false, wholeNumbers: false, unit: "seconds")
    public static let httpTimeout = SettingRange(lowest: 0.1, highest: 3600, zeroMeansOff: false, wholeNumbers: false, unit: "seconds")
    public static let stopTimeout = SettingRange(lowest: 0, highest: 600, zeroMeansOff: false, wholeNumbers: false, unit: "seconds")
    public static let maxSessions = SettingRange(lowest: 1, highest: 100_000, zeroMeansOff: false, wholeNumbers: true, unit: "")
    public static let maxConnections = SettingRange(lowest: 1, highest: 1_000_000, zeroMeansOff: false, wholeNumbers: true, unit: "")

    /// "0 (off) or 0.1 to 3600 seconds": what the user may write instead.
    public var allowed: String {
        let span = "\(Self.format(lowest)) to \(Self.format(highest))" + (unit.isEmpty ? "" : " \(unit)")
        return zeroMeansOff ? "0 (off) or \(span)" : span
    }

    public func contains(_ value: Double) -> Bool {
        guard value.isFinite, !wholeNumbers || value == value.rounded() else { return false }
        return (lowest...highest).contains(value) || (zeroMeansOff && value == 0)
    }

    /// `value` if it is in range; otherwise an error naming the setting and the range.
    public func check(_ value: Double, name: String) throws(DaemonConfigurationError) -> Double {
        guard contains(value) else {
            throw DaemonConfigurationError("\(name): \(Self.format(value)) is out of range: use \(allowed)")
        }
        return value
    }

    /// Parses a decimal number (`15`, `0.5`, `-1`) and checks it.
    public func number(from text: String, name: String) throws(DaemonConfigurationError) -> Double {
        // Decimal only: Double(_:) also reads hexadecimal ("0x10" is 16).
        guard text.allSatisfy({ "0123456789.eE+-".contains($0) }), let value = Double(text) else {
            throw DaemonConfigurationError("\(name): '\(Self.shortened(text))' is not a number; use \(allowed)")
        }
        // 1e-400 reads as 0, and 1e-9 seconds is 0 ms: neither may become
        // "off" or "no wait" by accident (attack round of issue 14).
        let mantissa = text.prefix { $0 != "e" && $0 != "E" }
        let roundsToZero = (value == 0 && mantissa.contains { ("1"..."9").contains($0) })
            || (value != 0 && abs(value) < 0.0005 && unit == "seconds")  // under half a millisecond: 0 ms
        if roundsToZero {
            throw DaemonConfigurationError("\(name): '\(Self.shortened(text))' is so small it would be 0; use \(allowed)")
        }
        return try check(value, name: name)
    }

    public func seconds(from text: String, name: String) throws(DaemonConfigurationError) -> Duration {
        Self.duration(try number(from: text, name: name))
    }

    public func count(from text: String, name: String) throws(DaemonConfigurationError) -> Int {
        // In range and whole, so the conversion cannot trap.
        Int(try number(from: text, name: name))
    }

    /// Checks a `Duration` set in code, the way ``check(_:name:)`` checks a number.
    func check(_ duration: Duration, name: String) throws(DaemonConfigurationError) {
        let (seconds, attoseconds) = duration.components
        _ = try check(Double(seconds) + Double(attoseconds) / 1e18, name: name)
    }

    /// Milliseconds, the finest step the daemon's timers use; in range, so it cannot overflow.
    static func duration(_ seconds: Double) -> Duration {
        .milliseconds(Int64((seconds * 1000).rounded()))
    }

    /// A value as an error message shows it: at most 40 characters.
    static func shortened(_ text: String) -> String {
        text.count > 40 ? String(text.prefix(40)) + "…" : text
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : "\(value)"
    }
}
