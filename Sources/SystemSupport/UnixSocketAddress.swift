import Glibc

/// A Unix-domain socket address (`sockaddr_un`) for a path, for the system
/// calls that take one (`connect`, `bind`, `sendto`). For the package's own
/// socket code, not its API.
package struct UnixSocketAddress {
    private var address = sockaddr_un()
    private let length: socklen_t

    /// `nil` if `path` does not fit (`ENAMETOOLONG`). With `abstract`, a path
    /// starting with "@" names a socket in the abstract namespace (systemd's
    /// `NOTIFY_SOCKET` may), whose address starts with a NUL byte instead.
    package init?(path: String, abstract: Bool = false) {
        var bytes = Array(path.utf8)
        let isAbstract = abstract && bytes.first == UInt8(ascii: "@")
        if isAbstract { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return nil }
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        // A path's address ends with its NUL; an abstract name is exactly its bytes.
        length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (isAbstract ? 0 : 1))
    }

    /// Calls `body` with the address as a `sockaddr` and its length.
    package func withSocketAddress<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) throws -> Result) rethrows -> Result {
        try withUnsafePointer(to: address) { pointer in
            try pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { try body($0, length) }
        }
    }
}
