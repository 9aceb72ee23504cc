import Glibc

/// Why a configuration file (the fstab, the daemon's YAML) could not be read.
package enum FileReadError: Error, CustomStringConvertible {
    case systemCall(errno: Int32)
    case notRegularFile(kind: String)
    case tooLarge(limit: Int)
    case notUTF8

    package var description: String {
        switch self {
        case .systemCall(let code): String(cString: strerror(code))
        case .notRegularFile(let kind): "it is \(kind), not a regular file"
        case .tooLarge(let limit): "it is larger than \(limit / 1024) KiB, which no configuration file is"
        case .notUTF8: "it is not UTF-8 text"
        }
    }
}

/// The whole file as UTF-8 text. Only a regular file of at most `limit`
/// bytes is read: an administrator's slip (`--fstab /dev/zero`, a FIFO)
/// must end in a clear error, not a hang or memory without bound. The file
/// is opened non-blocking (opening a FIFO would otherwise wait for a
/// writer) and checked on the opened descriptor, so it cannot be swapped
/// between the check and the read.
package func readFile(_ path: String, limit: Int = 1 << 20) throws(FileReadError) -> String {
    let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
    guard fd >= 0 else { throw .systemCall(errno: errno) }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw .systemCall(errno: errno) }
    guard info.st_mode & S_IFMT == S_IFREG else { throw .notRegularFile(kind: fileKind(info.st_mode)) }
    guard info.st_size <= limit else { throw .tooLarge(limit: limit) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 16384)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw .systemCall(errno: errno)
        }
        if count == 0 { break }
        bytes.append(contentsOf: buffer[0..<count])
        // The file may grow while it is read.
        guard bytes.count <= limit else { throw .tooLarge(limit: limit) }
    }
    // Never a guess: a byte replaced by U+FFFD would name another path.
    guard let text = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
    return text
}

/// What a file that is not regular is, in words.
package func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFDIR: "a directory"
    case S_IFIFO: "a FIFO"
    case S_IFSOCK: "a socket"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    case S_IFLNK: "a symbolic link"
    default: "a regular file"
    }
}

/// A procfs file (`/proc/PID/comm`, `status`, `fdinfo/N`, `maps`), read whole
/// up to `limit` bytes; nil when it cannot be opened (the process is gone, or
/// not ours to look into). procfs makes each read one record, so a file is
/// read until a read returns nothing. Small files are read into a buffer on
/// the stack: this runs on the daemon's accept path.
package func readProcFile(_ path: String, limit: Int = 4096) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: min(limit, 16384)) { buffer -> String in
        var bytes: [UInt8] = []
        while bytes.count < limit {
            let count = read(fd, buffer.baseAddress, min(buffer.count, limit - bytes.count))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: buffer[0..<count]))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
