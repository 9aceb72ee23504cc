import Glibc
import PersistentStorageMount

/// Reads the `pst:` section of a kvmd-style YAML file, with the reference's
/// key names:
///
/// ```yaml
/// pst:
///     server:
///         unix: /run/kvmd/pst.sock
///         unix_mode: 0o660
///     heartbeat: 15.0
///     ro_retries_delay: 10.0
///     ro_cleanup_delay: 3.0
///     remount_cmd: [/usr/bin/sudo, --non-interactive, /usr/bin/kvmd-helper-pst-remount, "{mode}"]
/// ```
///
/// Other sections and unknown keys under `pst:` are ignored, as kvmd's other
/// services share the file.
public enum KvmdConfigurationFile {
    public static func read(path: String) throws(DaemonConfigurationError) -> ConfigurationOverrides {
        let text: String
        do {
            text = try readFile(path)
        } catch {
            throw DaemonConfigurationError("cannot read the configuration file \(path): \(error)")
        }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String = "the configuration") throws(DaemonConfigurationError) -> ConfigurationOverrides {
        let section: KvmdYAML.Node?
        do {
            section = try KvmdYAML.topLevelValue(of: "pst", in: text)
        } catch {
            throw DaemonConfigurationError("\(source) is not valid YAML (or uses YAML the daemon does not read): \(error)")
        }
        var overrides = ConfigurationOverrides()
        guard let pst = section else { return overrides }
        guard pst.isMapping else { throw DaemonConfigurationError("\(source): pst is not a mapping") }

        if let unix = pst["server"]?["unix"] {
            overrides.socketPath = try string(unix, "pst.server.unix", source)
        }
        if let mode = pst["server"]?["unix_mode"] {
            overrides.socketMode = try fileMode(mode, source)
        }
        if let value = pst["heartbeat"] {
            overrides.heartbeat = try seconds(value, "pst.heartbeat", .heartbeat, source)
        }
        if let value = pst["ro_retries_delay"] {
            overrides.readOnlyRetryDelay = try seconds(value, "pst.ro_retries_delay", .readOnlyRetryDelay, source)
        }
        if let value = pst["ro_cleanup_delay"] {
            overrides.readOnlyCleanupDelay = try seconds(value, "pst.ro_cleanup_delay", .readOnlyCleanupDelay, source)
        }
        if let value = pst["remount_cmd"] {
            if case .sequence(let list) = value {
                overrides.remountCommand = try list.map { node throws(DaemonConfigurationError) in
                    try string(node, "pst.remount_cmd", source)
                }
            } else {
                overrides.remountCommand = ConfigurationValue.commandLine(try string(value, "pst.remount_cmd", source))
            }
        }
        return overrides
    }

    private static func string(_ node: KvmdYAML.Node, _ key: String, _ source: String) throws(DaemonConfigurationError) -> String {
        guard case .scalar(let text, _) = node else { throw DaemonConfigurationError("\(source): \(key) must be a string") }
        return text
    }

    /// A plain (unquoted) decimal number, as YAML reads a float or an int.
    private static func seconds(
        _ node: KvmdYAML.Node, _ key: String, _ range: SettingRange, _ source: String
    ) throws(DaemonConfigurationError) -> Duration {
        guard case .scalar(let text, plain: true) = node,
            !text.isEmpty, text.allSatisfy({ "0123456789.+-eE".contains($0) })
        else {
            throw DaemonConfigurationError("\(source): \(key) must be a number of seconds: \(range.allowed)")
        }
        return try range.seconds(from: text, name: "\(source): \(key)")
    }

    /// `0o660` (how kvmd writes it) and `0660` are octal, as Python's YAML
    /// reads them; a plain number without a leading zero is decimal.
    private static func fileMode(_ node: KvmdYAML.Node, _ source: String) throws(DaemonConfigurationError) -> mode_t {
        guard case .scalar(let text, _) = node, !text.isEmpty else {
            throw DaemonConfigurationError("\(source): pst.server.unix_mode must be a number")
        }
        if text.hasPrefix("0") && text.count > 1 {
            do {
                return try ConfigurationValue.octalMode(text)
            } catch {
                throw DaemonConfigurationError("\(source): pst.server.unix_mode: \(error)")
            }
        }
        guard let value = mode_t(text), value <= 0o777 else {
            throw DaemonConfigurationError("\(source): pst.server.unix_mode '\(text)' is not a file mode")
        }
        return value
    }
}
