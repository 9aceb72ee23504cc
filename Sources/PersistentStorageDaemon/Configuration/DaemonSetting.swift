import Glibc
import KvmdConfiguration
import PersistentStorageMount

/// One setting of `kvmd-pst`, declared once: its option, its key in kvmd's
/// configuration, how a value is read from either, and its help. The
/// option's help text, the reading of kvmd's files, `--dump-config` and the
/// table in Documentation/Configuration.md are made from these (a test
/// checks the table); defaults come from ``DaemonConfiguration``.
public struct DaemonSetting: Sendable {
    /// The long option without its dashes; nil for a key kvmd has and the
    /// command line does not.
    public let option: String?
    /// The key under `pst:` (`["server", "unix"]`); nil when kvmd has none.
    public let kvmdKey: [String]?
    public let valueName: String
    /// What it does, for `--help` (one or two sentences).
    public let summary: String
    /// The rest of Configuration.md's explanation, beyond the summary.
    public let details: String
    /// Accepted values, when the summary does not already say.
    public let allowed: String?
    /// The value in `configuration`, as a user writes it.
    public let describe: @Sendable (DaemonConfiguration) -> String
    let applyOption: @Sendable (String, inout DaemonConfiguration) throws(DaemonConfigurationError) -> Void
    let applyYAML: @Sendable (KvmdYAML.Node, String, inout DaemonConfiguration) throws(DaemonConfigurationError) -> Void

    /// `--option`, or nil.
    public var flag: String? { option.map { "--" + $0 } }
    /// `pst.server.unix`, or nil.
    public var kvmdKeyText: String? { kvmdKey.map { "pst." + $0.joined(separator: ".") } }

    /// The help line `--help` shows: summary, allowed values, default.
    public var help: String {
        var text = summary
        if let allowed { text += " Allowed: \(allowed)." }
        return text + " Default: \(describe(DaemonConfiguration.documentedDefaults))."
    }

    /// Sets the value from its option's text.
    public func apply(optionText text: String, to configuration: inout DaemonConfiguration) throws(DaemonConfigurationError) {
        try applyOption(text, &configuration)
    }
}

extension DaemonSetting {
    public static let all: [DaemonSetting] = [
        socket, socketMode, socketRemove, socketGroup, heartbeat, readOnlyRetryDelay, readOnlyCleanupDelay, stopTimeout,
        remountCommand, fstab, dataLayout, maxSessions, maxConnections, httpTimeout, accessLogFormat,
    ]

    public static let socket = DaemonSetting(
        option: "socket", kvmdKey: ["server", "unix"], valueName: "path",
        summary: "The Unix socket to listen on.",
        details: "A stale socket file (no daemon answers on it) is replaced; a live one is never. At most 96 bytes.",
        allowed: nil,
        describe: { $0.socketPath },
        applyOption: { text, configuration throws(DaemonConfigurationError) in configuration.socketPath = text },
        applyYAML: { node, name, configuration throws(DaemonConfigurationError) in
            let path = try scalar(node, name)
            guard !path.utf8.contains(0), path.hasPrefix("/") else {
                throw DaemonConfigurationError("\(name): '\(SettingRange.shortened(path))' is not an absolute path without NUL bytes")
            }
            configuration.socketPath = path
        })

    public static let socketMode = DaemonSetting(
        option: "socket-mode", kvmdKey: ["server", "unix_mode"], valueName: "mode",
        summary: "The socket's file mode, octal.",
        details: "On the command line `660`, `0660` and `0o660` are all octal. In YAML, as kvmd reads it, `0660` is octal and `660` decimal (which is no mode; it is refused); `0o660` is read as octal too.",
        allowed: "0 to 0777",
        describe: { "0" + String($0.socketMode, radix: 8) },
        applyOption: { text, configuration throws(DaemonConfigurationError) in
            do { configuration.socketMode = try ConfigurationValue.octalMode(text) } catch { throw DaemonConfigurationError("--socket-mode: \(error)") }
        },
        applyYAML: { node, name, configuration throws(DaemonConfigurationError) in
            configuration.socketMode = try ConfigurationValue.yamlFileMode(try scalar(node, name), name: name)
        })

    public static let socketRemove = DaemonSetting(
        option: nil, kvmdKey: ["server", "unix_rm"], valueName: "bool",
        summary: "Whether kvmd removes an old socket file before listening.",
        details: "Read and checked (`true`/`false`, `yes`/`no`, `1`/`0`), so that kvmd's files work unchanged; swift-pst always replaces a stale socket and never a live one.",
        allowed: nil,
        describe: { _ in "true" },
        applyOption: { _, _ throws(DaemonConfigurationError) in },
        applyYAML: { node, name, _ throws(DaemonConfigurationError) in
            _ = try ConfigurationValue.kvmdBool(try scalar(node, name), name: name)
        })

    public static let socketGroup = DaemonSetting(
        option: "socket-group", kvmdKey: nil, valueName: "group",
        summary: "The socket's group, if it exists (else the daemon's own); its members, root and the daemon's own user may connect, everybody else gets 403.",
        details: "`\"\"` leaves the group alone. kvmd gets it from the service's `Group=`.",
        allowed: nil,
        describe: { $0.socketGroup ?? "\"\"" },
        applyOption: { text, configuration throws(DaemonConfigurationError) in configuration.socketGroup = text.isEmpty ? nil : text },
        applyYAML: { _, _, _ throws(DaemonConfigurationError) in })

    public static let heartbeat = seconds(
        "heartbeat", kvmdKey: ["server", "heartbeat"], \.heartbeat, range: .heartbeat,
        summary: "Seconds between WebSocket pings to each session; one whose pong has not come within half of that is dropped.",
        details: "So a frozen client cannot keep the storage writable. The same interval (15 s when off) is how long any peer may leave the daemon's answers unread once more than 64 KiB of them wait. Before this version swift-pst read `pst.heartbeat`; that key is still read, with a warning, when kvmd's is not set.")

    public static let readOnlyRetryDelay = seconds(
        "ro-retries-delay", kvmdKey: ["ro_retries_delay"], \.readOnlyRetryDelay, range: .readOnlyRetryDelay,
        summary: "Seconds between attempts to remount read-only while the storage is busy (a file still open for writing).")

    public static let readOnlyCleanupDelay = seconds(
        "ro-cleanup-delay", kvmdKey: ["ro_cleanup_delay"], \.readOnlyCleanupDelay, range: .readOnlyCleanupDelay,
        summary: "Seconds clients get at shutdown to stop writing, after being told, before the remount to read-only.",
        details: "Only waited when sessions were open.")

    public static let stopTimeout = seconds(
        "stop-timeout", kvmdKey: nil, \.stopTimeout, range: .stopTimeout,
        summary: "Seconds shutdown keeps retrying a busy read-only remount before it exits 1, saying the storage is left read-write.",
        details: "It never exits 0 with the storage writable.")

    public static let remountCommand = DaemonSetting(
        option: "remount-command", kvmdKey: ["remount_cmd"], valueName: "command",
        summary: "Remount by running this command, every {mode} replaced by rw or ro, instead of in-process through libmount.",
        details: "Without one, the daemon remounts in-process when it may (root, or CAP_SYS_ADMIN), and otherwise runs kvmd's own default, `/usr/bin/sudo --non-interactive /usr/bin/kvmd-helper-pst-remount {mode}`, as under kvmd's unit (user kvmd-pst), saying so in the log. The first word must be an absolute path (`/bin/true`, a no-op, is accepted as by kvmd; the storage then stays as it is, and sessions hear whether it is writable). On the command line it is split on spaces. In YAML, as kvmd reads it, a list, or a string split on commas and tabs. `\"\"` on the command line turns a configured command off. Exit status 0 is success; otherwise its stderr is the reason shown in the log and in `GET /state`. A command still running after 60 s is killed with everything it started.",
        allowed: nil,
        describe: { $0.remountCommand.map { $0.joined(separator: " ") } ?? "in-process, or kvmd's without the privilege" },
        applyOption: { text, configuration throws(DaemonConfigurationError) in
            let words = ConfigurationValue.commandLine(text)
            configuration.remountCommand = words.isEmpty ? nil : words
        },
        applyYAML: { node, name, configuration throws(DaemonConfigurationError) in
            let words: [String]
            if case .sequence(let items) = node {
                words = try items.map { item throws(DaemonConfigurationError) in try scalar(item, name).trimmingWhitespace() }
            } else {
                words = ConfigurationValue.kvmdCommand(try scalar(node, name))
            }
            if let problem = DaemonConfiguration.problem(withRemountCommand: words) {
                throw DaemonConfigurationError("\(name): \(problem)")
            }
            configuration.remountCommand = words
        })

    public static let fstab = DaemonSetting(
        option: "fstab", kvmdKey: nil, valueName: "path",
        summary: "The fstab that names the partition: its first entry with an X-kvmd.pst-root, X-kvmd.pst-user or X-kvmd.pst-group option.",
        details: "Fixed in kvmd.",
        allowed: nil,
        describe: { $0.fstabPath },
        applyOption: { text, configuration throws(DaemonConfigurationError) in configuration.fstabPath = text },
        applyYAML: { _, _, _ throws(DaemonConfigurationError) in })

    public static let dataLayout = DaemonSetting(
        option: "data-layout", kvmdKey: nil, valueName: "layout",
        summary: "What clients get as the data path: root (ROOT itself, as kvmd since 4.8) or data (ROOT/data, the PST document's layout and kvmd before 4.8).",
        details: "Give the helper the same value when it remounts.",
        allowed: nil,
        describe: { $0.dataLayout.rawValue },
        applyOption: { text, configuration throws(DaemonConfigurationError) in
            guard let layout = DataLayout(rawValue: text) else {
                throw DaemonConfigurationError("--data-layout: '\(text)' is neither 'root' nor 'data'")
            }
            configuration.dataLayout = layout
        },
        applyYAML: { _, _, _ throws(DaemonConfigurationError) in })

    public static let maxSessions = count(
        "max-sessions", \.maxSessions, range: .maxSessions, summary: "The most sessions open at once; the next one gets 503.")

    public static let maxConnections = count(
        "max-connections", \.maxConnections, range: .maxConnections,
        summary: "The most connections open at once that are not sessions; past it the oldest is closed.",
        details: "So a flood of idle connections cannot keep well-behaved clients out. Never more than the open-file limit leaves after `--max-sessions` and 64 for the daemon itself, and never fewer than 16 (a smaller value is raised, and the log says so at start).")

    public static let httpTimeout = seconds(
        "http-timeout", kvmdKey: nil, \.httpIdleTimeout, range: .httpTimeout,
        summary: "Seconds a connection may take to send a whole request, or stay idle, before it is closed.",
        details: "A client dripping a request head byte by byte is cut off here. Sessions, once upgraded, are watched by the heartbeat instead.")

    public static let accessLogFormat = DaemonSetting(
        option: nil, kvmdKey: ["server", "access_log_format"], valueName: "format",
        summary: "kvmd's access log line format.",
        details: "Read so that kvmd's files work unchanged; swift-pst logs each session's open and close instead.",
        allowed: nil,
        describe: { _ in "kvmd's" },
        applyOption: { _, _ throws(DaemonConfigurationError) in },
        applyYAML: { node, name, _ throws(DaemonConfigurationError) in _ = try scalar(node, name) })

    /// A number of seconds in `range`, from the option or (with a kvmd key) from YAML.
    static func seconds(
        _ option: String, kvmdKey: [String]?, _ keyPath: WritableKeyPath<DaemonConfiguration, Duration> & Sendable,
        range: SettingRange, summary: String, details: String = ""
    ) -> DaemonSetting {
        DaemonSetting(
            option: option, kvmdKey: kvmdKey, valueName: "seconds", summary: summary, details: details, allowed: range.allowed,
            describe: { ConfigurationValue.seconds($0[keyPath: keyPath]) },
            applyOption: { text, configuration throws(DaemonConfigurationError) in
                configuration[keyPath: keyPath] = try range.seconds(from: text, name: "--" + option)
            },
            applyYAML: { node, name, configuration throws(DaemonConfigurationError) in
                configuration[keyPath: keyPath] = try range.seconds(from: try number(node, name), name: name)
            })
    }

    /// A whole number in `range`, from the option only.
    static func count(
        _ option: String, _ keyPath: WritableKeyPath<DaemonConfiguration, Int> & Sendable, range: SettingRange,
        summary: String, details: String = ""
    ) -> DaemonSetting {
        DaemonSetting(
            option: option, kvmdKey: nil, valueName: "count", summary: summary, details: details, allowed: range.allowed,
            describe: { String($0[keyPath: keyPath]) },
            applyOption: { text, configuration throws(DaemonConfigurationError) in
                configuration[keyPath: keyPath] = try range.count(from: text, name: "--" + option)
            },
            applyYAML: { _, _, _ throws(DaemonConfigurationError) in })
    }

    /// The key swift-pst read before kvmd's `pst.server.heartbeat`.
    static let legacyHeartbeatKey = ["heartbeat"]

    private static func scalar(_ node: KvmdYAML.Node, _ name: String) throws(DaemonConfigurationError) -> String {
        guard case .scalar(let text, _) = node else { throw DaemonConfigurationError("\(name) must be a single value") }
        return text
    }

    /// A number as kvmd takes it: YAML 1.1's int or float (a plain `010` is
    /// octal 8, `0x10` is 16, `1_000` is 1000), or a string holding one,
    /// which Python's `float()` reads as decimal.
    private static func number(_ node: KvmdYAML.Node, _ name: String) throws(DaemonConfigurationError) -> String {
        let text = try scalar(node, name).trimmingWhitespace()
        guard case .scalar(_, plain: true) = node else { return text }
        var digits = text.filter { $0 != "_" }
        var sign = ""
        if digits.hasPrefix("-") || digits.hasPrefix("+") { sign = String(digits.removeFirst()) }
        if digits.hasPrefix("0x"), let value = Int64(digits.dropFirst(2), radix: 16) { return sign + String(value) }
        if digits.count > 1, digits.hasPrefix("0"), digits.allSatisfy({ ("0"..."7").contains($0) }), let value = Int64(digits, radix: 8) {
            return sign + String(value)
        }
        return sign + digits
    }
}

extension DaemonConfiguration {
    /// The defaults `--help` and Configuration.md show (the socket group as
    /// on a PiKVM, whatever this system has).
    static var documentedDefaults: DaemonConfiguration {
        var configuration = DaemonConfiguration()
        configuration.socketGroup = conventionalSocketGroup
        return configuration
    }

    /// Applies the merged `pst:` section of kvmd's configuration. Returns
    /// warnings to log (a key read for compatibility).
    public mutating func apply(_ section: PstSection) throws(DaemonConfigurationError) -> [String] {
        var warnings: [String] = []
        let known = DaemonSetting.all.compactMap(\.kvmdKey) + [DaemonSetting.legacyHeartbeatKey]
        for path in section.leafPaths where !known.contains(path) {
            throw DaemonConfigurationError(
                "\(section.source(of: path)): pst.\(path.joined(separator: ".")) is not a setting kvmd-pst knows; "
                    + "its keys are \(DaemonSetting.all.compactMap(\.kvmdKeyText).joined(separator: ", "))")
        }
        for setting in DaemonSetting.all {
            guard let key = setting.kvmdKey, let (node, source) = section.value(at: key) else { continue }
            try setting.applyYAML(node, "\(source): \(setting.kvmdKeyText!)", &self)
        }
        if let (node, source) = section.value(at: DaemonSetting.legacyHeartbeatKey) {
            if section.value(at: DaemonSetting.heartbeat.kvmdKey!) == nil {
                try DaemonSetting.heartbeat.applyYAML(node, "\(source): pst.heartbeat", &self)
                warnings.append("\(source): pst.heartbeat is read for compatibility with older swift-pst; kvmd's key is pst.server.heartbeat")
            } else {
                var ignored = self
                try DaemonSetting.heartbeat.applyYAML(node, "\(source): pst.heartbeat", &ignored)
                warnings.append("\(source): pst.heartbeat is ignored: kvmd's pst.server.heartbeat is set, and wins")
            }
        }
        return warnings
    }

    /// The `pst:` section as kvmd would read it back, then the settings
    /// only swift-pst has, as comments (`kvmd-pst --dump-config`).
    public var dumped: String {
        var lines = ["pst:", "    server:"]
        lines.append("        unix: \(ConfigurationValue.yamlQuoted(socketPath))")
        lines.append("        unix_mode: \(DaemonSetting.socketMode.describe(self))")
        lines.append("        heartbeat: \(DaemonSetting.heartbeat.describe(self))")
        lines.append("    ro_retries_delay: \(DaemonSetting.readOnlyRetryDelay.describe(self))")
        lines.append("    ro_cleanup_delay: \(DaemonSetting.readOnlyCleanupDelay.describe(self))")
        if let command = remountCommand {
            lines.append("    remount_cmd:")
            lines += command.map { "        - \(ConfigurationValue.yamlQuoted($0))" }
        } else {
            lines.append("    # remount_cmd is not set: the storage is remounted in-process through libmount when the daemon may")
            lines.append("    # (root, CAP_SYS_ADMIN), else with kvmd's default: \(DaemonConfiguration.kvmdDefaultRemountCommand.joined(separator: " "))")
        }
        lines.append("# swift-pst's own settings (command line only):")
        for setting in DaemonSetting.all where setting.kvmdKey == nil {
            lines.append("#   \(setting.flag!) \(setting.describe(self))")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension DaemonSetting {
    /// The settings table of Documentation/Configuration.md, made from the
    /// declarations (a test compares the file with it).
    public static var markdownTable: String {
        var lines = ["| option | kvmd key | default | what it does |", "| --- | --- | --- | --- |"]
        for setting in all {
            let option = setting.flag.map { "`\($0) \(setting.valueName.uppercased())`" } ?? "—"
            let key = setting.kvmdKeyText.map { "`\($0)`" } ?? "—"
            let value = setting.describe(DaemonConfiguration.documentedDefaults)
            var text = setting.summary
            if let allowed = setting.allowed { text += " Allowed: \(allowed)." }
            if !setting.details.isEmpty { text += " " + setting.details }
            lines.append("| \(option) | \(key) | `\(value)` | \(text) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
