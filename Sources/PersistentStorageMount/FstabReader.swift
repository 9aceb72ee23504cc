import CLibMount
import Glibc
import SystemSupport

/// Why the partition could not be found in the fstab.
public enum StorageDiscoveryError: Error, Equatable, CustomStringConvertible {
    case fstabUnreadable(path: String, reason: String)
    case noEntry(path: String, skippedLines: [FstabLineIssue])
    case relativePath(path: String, line: Int, value: String)
    case rootOutsideMount(path: String, line: Int, root: String, mountPath: String)

    public var description: String {
        switch self {
        case .fstabUnreadable(let path, let reason):
            return "cannot read \(path): \(reason)"
        case .noEntry(let path, let skipped):
            var text = "no fstab entry with X-kvmd.pst-* options in \(path)"
            if !skipped.isEmpty {
                text += " (ignored: " + skipped.map(\.description).joined(separator: "; ") + ")"
            }
            return text
        case .relativePath(let path, let line, let value):
            return "\(path):\(line): the PST path '\(value)' is not absolute"
        case .rootOutsideMount(let path, let line, let root, let mountPath):
            return "\(path):\(line): the PST root '\(root)' is not inside the mount \(mountPath) (or contains '.' or '..')"
        }
    }
}

/// An fstab line that was passed over, with why.
public struct FstabLineIssue: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var reason: String

    public var description: String { "\(file):\(line): \(reason)" }
}

/// What discovery found: the partition, and the lines it had to pass over on the way.
public struct StorageDiscovery: Sendable, Equatable {
    public var location: StorageLocation
    /// The fstab line the entry came from (1-based).
    public var line: Int
    /// Unparsable lines before the entry, to warn about.
    public var skippedLines: [FstabLineIssue]
}

/// Finds the persistent-storage partition in an fstab: the first entry of
/// six fields whose options carry `X-kvmd.pst-root`, `X-kvmd.pst-user` or
/// `X-kvmd.pst-group`.
public struct FstabReader: Sendable {
    public static let defaultPath = "/etc/fstab"
    static let markerOptions = ["X-kvmd.pst-root", "X-kvmd.pst-user", "X-kvmd.pst-group"]

    public var path: String

    public init(path: String = FstabReader.defaultPath) {
        self.path = path
    }

    public func findStorage() throws(StorageDiscoveryError) -> StorageDiscovery {
        // libmount parses the entries (octal escapes, options) but neither
        // counts fields nor says which line an entry came from, so the raw
        // lines are walked alongside: each non-blank, non-comment line that
        // libmount did not reject is the next entry of its table.
        let text: String
        do {
            text = try readFile(path)
        } catch {
            throw .fstabUnreadable(path: path, reason: error.description)
        }
        let table = LibMountTable()
        let collector = ParseErrorCollector()
        let unmanaged = Unmanaged.passRetained(collector)
        defer { unmanaged.release() }
        mnt_table_set_userdata(table.handle, unmanaged.toOpaque())
        mnt_table_set_parser_errcb(table.handle) { table, _, line in
            if let table, let data = mnt_table_get_userdata(table) {
                Unmanaged<ParseErrorCollector>.fromOpaque(data).takeUnretainedValue().lines.insert(Int(line))
            }
            return 1  // skip the line, keep parsing
        }
        let rc = parseFstab(text, named: path, into: table)
        if rc < 0 { throw .fstabUnreadable(path: path, reason: String(cString: strerror(-rc))) }

        var entries = table.entries.makeIterator()
        var skipped: [FstabLineIssue] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = index + 1
            let trimmed = rawLine.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            if collector.lines.contains(lineNumber) {
                skipped.append(FstabLineIssue(file: path, line: lineNumber, reason: "not a valid fstab line"))
                continue
            }
            guard let fs = entries.next() else { break }
            let fieldCount = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).count
            let options = libmountString(mnt_fs_get_options(fs)) ?? ""
            let isMarked = Self.markerOptions.contains { optionValue($0, in: options) != nil }
            guard isMarked else { continue }
            guard fieldCount == 6 else {
                skipped.append(FstabLineIssue(
                    file: path, line: lineNumber,
                    reason: "has X-kvmd.pst-* options but \(fieldCount) fields instead of 6"))
                continue
            }
            let mountPath = libmountString(mnt_fs_get_target(fs)) ?? ""
            let root = optionValue("X-kvmd.pst-root", in: options).flatMap { $0.isEmpty ? nil : $0 } ?? mountPath
            for value in [mountPath, root] where !value.hasPrefix("/") {
                throw .relativePath(path: path, line: lineNumber, value: value)
            }
            // The fix step runs as root below the root: it must be the mount
            // point or inside it, so that it cannot reach anything else.
            do {
                _ = try StorageFix.components(of: normalized(root), below: normalized(mountPath))
            } catch {
                throw .rootOutsideMount(path: path, line: lineNumber, root: root, mountPath: normalized(mountPath))
            }
            let location = StorageLocation(
                source: libmountString(mnt_fs_get_source(fs)) ?? "",
                mountPath: normalized(mountPath),
                rootPath: normalized(root),
                user: optionValue("X-kvmd.pst-user", in: options).flatMap { $0.isEmpty ? nil : $0 },
                group: optionValue("X-kvmd.pst-group", in: options).flatMap { $0.isEmpty ? nil : $0 },
                options: options)
            return StorageDiscovery(location: location, line: lineNumber, skippedLines: skipped)
        }
        throw .noEntry(path: path, skippedLines: skipped)
    }
}

private final class ParseErrorCollector {
    var lines: Set<Int> = []
}

/// Drops trailing slashes ("/var/lib/kvmd/pst/" is the same mount as without).
private func normalized(_ path: String) -> String {
    var result = path
    while result.count > 1 && result.hasSuffix("/") { result.removeLast() }
    return result
}

/// An fstab table parsed by libmount from text already read (by
/// ``readFile(_:limit:)``), so that libmount never opens the path itself.
func parseFstab(_ text: String, named path: String, into table: LibMountTable) -> Int32 {
    var bytes = Array(text.utf8)
    if bytes.isEmpty { return 0 }
    return bytes.withUnsafeMutableBytes { buffer -> Int32 in
        guard let stream = fmemopen(buffer.baseAddress, buffer.count, "r") else { return -errno }
        defer { fclose(stream) }
        return mnt_table_parse_stream(table.handle, stream, path)
    }
}
