import CLibMount
import Glibc

/// Why the partition could not be found in the fstab.
public enum StorageDiscoveryError: Error, Equatable, CustomStringConvertible {
    case fstabMissing(path: String, errno: Int32)
    case noEntry(path: String, skippedLines: [FstabLineIssue])
    case relativePath(path: String, line: Int, value: String)

    public var description: String {
        switch self {
        case .fstabMissing(let path, let code):
            return "cannot read \(path): \(String(cString: strerror(code)))"
        case .noEntry(let path, let skipped):
            var text = "no fstab entry with X-kvmd.pst-* options in \(path)"
            if !skipped.isEmpty {
                text += " (ignored: " + skipped.map(\.description).joined(separator: "; ") + ")"
            }
            return text
        case .relativePath(let path, let line, let value):
            return "\(path):\(line): the PST path '\(value)' is not absolute"
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
            throw .fstabMissing(path: path, errno: error.code)
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
        let rc = mnt_table_parse_fstab(table.handle, path)
        if rc < 0 { throw .fstabMissing(path: path, errno: -rc) }

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

/// A failed system call's errno; described as `strerror` puts it.
package struct SystemCallError: Error, CustomStringConvertible {
    package var code: Int32
    package var description: String { String(cString: strerror(code)) }
}

/// The whole file as UTF-8 text, read with read(2) until its end (the fstab
/// here, the daemon's configuration file too).
package func readFile(_ path: String) throws(SystemCallError) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw SystemCallError(code: errno) }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw SystemCallError(code: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}
