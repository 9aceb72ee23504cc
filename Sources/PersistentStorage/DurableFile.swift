#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// Replaces a file so that a power cut at any moment leaves either its old
/// content or its new one, never a torn or empty file: the pattern is easy
/// to get wrong, so it is here once.
///
/// It writes a temporary file in the same directory, `fsync`s it, renames it
/// over the target (rename(2) replaces in one step) and `fsync`s the
/// directory, whose entry the rename changed. The new file keeps the old
/// one's permission bits, or gets `0666` less the umask.
///
/// ```swift
/// try await storage.withWritableStorage(subdirectory: "my-service") { directory in
///     try DurableFile.write(Data(json.utf8), to: directory.appending(path: "settings.json"))
/// }
/// ```
public enum DurableFile {
    /// Replaces the file at `url` with `contents`.
    /// - Throws: ``DurableWriteError``, naming the step that failed; the
    ///   target is then as it was, and the temporary file is removed.
    public static func write(_ contents: Data, to url: URL) throws(DurableWriteError) {
        let path = url.path(percentEncoded: false)
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        guard !name.isEmpty else { throw DurableWriteError(step: .createTemporary, path: path, errno: EISDIR) }

        var existing = stat()
        let keptMode = stat(path, &existing) == 0 ? existing.st_mode & 0o7777 : nil
        var temporary = ""
        var fd: Int32 = -1
        for _ in 0..<8 where fd < 0 {
            temporary = "\(directory)/.\(name).\(String(UInt64.random(in: 0...UInt64.max), radix: 36)).tmp"
            fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o666)
            if fd < 0 && errno != EEXIST { break }
        }
        guard fd >= 0 else { throw DurableWriteError(step: .createTemporary, path: path, errno: errno) }
        var renamed = false
        defer {
            if fd >= 0 { close(fd) }
            if !renamed { unlink(temporary) }
        }
        if let keptMode, fchmod(fd, keptMode) != 0 { throw DurableWriteError(step: .write, path: path, errno: errno) }
        var written = 0
        while written < contents.count {
            let count = contents.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + written, $0.count - written) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw DurableWriteError(step: .write, path: path, errno: count < 0 ? errno : EIO) }
            written += count
        }
        // On the disk before the name can point at it, or a power cut could
        // leave the new name on an empty file.
        guard fsync(fd) == 0 else { throw DurableWriteError(step: .syncFile, path: path, errno: errno) }
        // close(2) can report a deferred write error.
        let closed = close(fd)
        fd = -1
        guard closed == 0 else { throw DurableWriteError(step: .write, path: path, errno: errno) }
        guard rename(temporary, path) == 0 else { throw DurableWriteError(step: .rename, path: path, errno: errno) }
        renamed = true
        let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard directoryFD >= 0 else { throw DurableWriteError(step: .syncDirectory, path: path, errno: errno) }
        defer { close(directoryFD) }
        guard fsync(directoryFD) == 0 else { throw DurableWriteError(step: .syncDirectory, path: path, errno: errno) }
    }
}

/// Why ``DurableFile/write(_:to:)`` failed, and at which step.
public struct DurableWriteError: Error, Equatable, CustomStringConvertible {
    public enum Step: String, Sendable {
        case createTemporary = "creating the temporary file"
        case write = "writing the temporary file"
        case syncFile = "syncing the temporary file"
        case rename = "renaming it over the file"
        /// The new content is in place; only making the rename durable failed.
        case syncDirectory = "syncing the directory"
    }

    public var step: Step
    public var path: String
    public var errno: Int32

    public init(step: Step, path: String, errno: Int32) {
        self.step = step
        self.path = path
        self.errno = errno
    }

    public var description: String {
        "cannot replace \(path) durably: \(step.rawValue) failed: \(String(cString: strerror(errno)))"
            + (step == .syncDirectory ? " (the new content is in place, but may not survive a power cut)" : "")
    }
}
