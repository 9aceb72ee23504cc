import Glibc
import SystemSupport

/// Where kvmd keeps its configuration, and the `pst:` part of it merged the
/// way kvmd merges it: the main file, then every file in the override
/// directory in name order, then the override file; a mapping is merged
/// into a mapping key by key, anything else replaces what was there.
///
/// A path left nil is kvmd's default and is skipped when it does not exist
/// (a system that is not a PiKVM has none of them); a path given on the
/// command line must exist, as kvmd requires.
///
/// ```swift
/// let pst = try KvmdConfigTree().pstSection()
/// let socket = try pst.string(at: ["server", "unix"])   // nil when no file sets it
/// ```
public struct KvmdConfigTree: Sendable, Equatable {
    public static let defaultMainConfig = "/usr/lib/kvmd/main.yaml"
    public static let defaultOverrideDirectory = "/etc/kvmd/override.d"
    public static let defaultOverrideConfig = "/etc/kvmd/override.yaml"

    /// `--main-config`; nil: ``defaultMainConfig`` if it exists.
    public var mainConfig: String?
    /// `--override-dir`; nil: ``defaultOverrideDirectory`` if it exists.
    public var overrideDirectory: String?
    /// `--override-config`; nil: ``defaultOverrideConfig`` if it exists.
    public var overrideConfig: String?
    /// swift-pst's `--config`: files merged after kvmd's, in this order.
    public var extraFiles: [String]

    public init(mainConfig: String? = nil, overrideDirectory: String? = nil, overrideConfig: String? = nil, extraFiles: [String] = []) {
        self.mainConfig = mainConfig
        self.overrideDirectory = overrideDirectory
        self.overrideConfig = overrideConfig
        self.extraFiles = extraFiles
    }

    /// The files read, in kvmd's order.
    public func files() throws(KvmdConfigError) -> [String] {
        var files: [String] = []
        if let main = Self.existing(mainConfig, default: Self.defaultMainConfig) { files.append(main) }
        if let directory = Self.existing(overrideDirectory, default: Self.defaultOverrideDirectory) {
            files += try Self.listing(of: directory)
        }
        if let override = Self.existing(overrideConfig, default: Self.defaultOverrideConfig) { files.append(override) }
        return files + extraFiles
    }

    /// The `pst:` sections of ``files()`` merged; an empty section when none has one.
    public func pstSection() throws(KvmdConfigError) -> PstSection {
        var merged = PstSection()
        for file in try files() {
            let text: String
            do {
                text = try readFile(file)
            } catch {
                throw KvmdConfigError("cannot read the configuration file \(file): \(error)")
            }
            try merged.merge(text, from: file)
        }
        return merged
    }

    /// A path given must be there; the default is used only if it is.
    private static func existing(_ given: String?, default path: String) -> String? {
        if let given { return given }
        return access(path, F_OK) == 0 ? path : nil
    }

    /// Every file or link in `directory` (not only `*.yaml`: kvmd reads all),
    /// by name, compared as bytes as Python's `sorted` compares them.
    private static func listing(of directory: String) throws(KvmdConfigError) -> [String] {
        guard let handle = opendir(directory) else {
            throw KvmdConfigError("cannot read the override directory \(directory): \(String(cString: strerror(errno)))")
        }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let bytes = withUnsafeBytes(of: entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            guard let name = String(validating: bytes, as: UTF8.self) else {
                throw KvmdConfigError("the override directory \(directory) holds a file whose name is not UTF-8; rename or remove it")
            }
            guard name != ".", name != ".." else { continue }
            var info = stat()
            let path = directory + "/" + name
            guard lstat(path, &info) == 0 else { continue }
            let kind = info.st_mode & S_IFMT
            if kind == S_IFREG || kind == S_IFLNK { names.append(name) }
        }
        return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }.map { directory + "/" + $0 }
    }
}

/// The merged `pst:` section, and which file set each value, for messages.
public struct PstSection: Sendable, Equatable {
    package private(set) var root: KvmdYAML.Node = .mapping([])
    /// "server.unix" → the file whose value is in ``root``.
    private var sources: [String: String] = [:]

    public init() {}

    /// The value at `path` (`["server", "unix"]`) and the file it came from.
    package func value(at path: [String]) -> (node: KvmdYAML.Node, source: String)? {
        var node = root
        for key in path {
            guard let next = node[key] else { return nil }
            node = next
        }
        return (node, sources[path.joined(separator: ".")] ?? "the configuration")
    }

    /// Every key path set to something that is not a mapping, for finding unknown keys.
    package var leafPaths: [[String]] {
        var paths: [[String]] = []
        func walk(_ node: KvmdYAML.Node, _ path: [String]) {
            if case .mapping(let entries) = node, !entries.isEmpty || path.isEmpty {
                for entry in entries { walk(entry.value, path + [entry.key]) }
            } else {
                paths.append(path)
            }
        }
        walk(root, [])
        return paths
    }

    /// The file that set `path`, or that set the mapping it lies in.
    package func source(of path: [String]) -> String {
        for length in stride(from: path.count, through: 1, by: -1) {
            if let source = sources[path.prefix(length).joined(separator: ".")] { return source }
        }
        return "the configuration"
    }

    /// A plain or quoted scalar at `path`, or nil when nothing sets it.
    public func string(at path: [String]) throws(KvmdConfigError) -> String? {
        guard let (node, source) = value(at: path) else { return nil }
        guard case .scalar(let text, _) = node else {
            throw KvmdConfigError("\(source): pst.\(path.joined(separator: ".")) must be a single value")
        }
        return text
    }

    /// The `pst:` section of one file's `text`.
    public static func parse(_ text: String, source: String = "the configuration") throws(KvmdConfigError) -> PstSection {
        var section = PstSection()
        try section.merge(text, from: source)
        return section
    }

    /// Merges the `pst:` section of `text`, read from `file`, over this one.
    mutating func merge(_ text: String, from file: String) throws(KvmdConfigError) {
        let section: KvmdYAML.Node?
        do {
            section = try KvmdYAML.topLevelValue(of: "pst", in: text)
        } catch {
            throw KvmdConfigError("\(file) is not valid YAML (or uses YAML swift-pst does not read in pst:): \(error)")
        }
        guard let section else { return }
        guard section.isMapping else { throw KvmdConfigError("\(file): pst must be a mapping of settings") }
        Self.merge(section, into: &root, path: [], file: file, sources: &sources)
    }

    private static func merge(
        _ source: KvmdYAML.Node, into destination: inout KvmdYAML.Node, path: [String], file: String,
        sources: inout [String: String]
    ) {
        guard case .mapping(let incoming) = source, case .mapping(var entries) = destination else {
            destination = source
            let prefix = path.joined(separator: ".")
            sources = sources.filter { !($0.key == prefix || $0.key.hasPrefix(prefix + ".")) }
            sources[prefix] = file
            return
        }
        // A key written twice in one mapping: the last one counts, whole, as
        // in PyYAML (it is not merged with the first).
        let lastOfEach = incoming.enumerated().filter { index, entry in
            !incoming[(index + 1)...].contains { $0.key == entry.key }
        }.map(\.element)
        for entry in lastOfEach {
            let childPath = path + [entry.key]
            if let index = entries.lastIndex(where: { $0.key == entry.key }) {
                merge(entry.value, into: &entries[index].value, path: childPath, file: file, sources: &sources)
            } else {
                var value = KvmdYAML.Node.mapping([])
                if !entry.value.isMapping { value = entry.value }
                entries.append(.init(key: entry.key, value: value))
                merge(entry.value, into: &entries[entries.count - 1].value, path: childPath, file: file, sources: &sources)
            }
        }
        destination = .mapping(entries)
    }
}

/// Why kvmd's configuration could not be used; the message names the file.
public struct KvmdConfigError: Error, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
