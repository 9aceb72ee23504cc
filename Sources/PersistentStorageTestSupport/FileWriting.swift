import Foundation
import Glibc

/// Writes `contents` to the file at `path` (created or truncated) through a
/// descriptor that is closed on exec.
///
/// Tests that write into a mounted storage use this instead of Foundation's
/// `Data.write(to:)`, which opens without `O_CLOEXEC`: `Process` closes the
/// descriptors it listed just before it spawns, so a file another test opens
/// in between stays open for writing in that child, and the storage's
/// read-only remount fails as busy (seen in CI).
public func writeFile(_ contents: String, to path: String) throws {
    try writeFile(Data(contents.utf8), to: path)
}

/// ``writeFile(_:to:)-(String,_)`` for bytes.
public func writeFile(_ contents: Data, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var written = 0
    while written < contents.count {
        let count = contents.withUnsafeBytes { bytes in
            Glibc.write(fd, bytes.baseAddress! + written, bytes.count - written)
        }
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        written += count
    }
}
