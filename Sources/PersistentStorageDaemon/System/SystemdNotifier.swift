import SystemSupport
import Glibc
import PersistentStorageProtocol

/// Tells systemd about the daemon's state (`sd_notify` without libsystemd):
/// one datagram per message to the socket named by `NOTIFY_SOCKET`.
/// Does nothing when the variable is not set, i.e. outside a `Type=notify` unit.
struct SystemdNotifier: Sendable {
    private let socketPath: String?

    init(environment: [String: String]) {
        socketPath = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    func status(_ text: String) { send("STATUS=\(text)") }
    func stopping() { send("STOPPING=1\nSTATUS=Shutting down") }

    private func send(_ message: String) {
        guard let socketPath else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        // "@name" is an abstract socket.
        guard let address = UnixSocketAddress(path: socketPath, abstract: true) else { return }
        let bytes = Array(message.utf8)
        _ = address.withSocketAddress { socketAddress, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), socketAddress, length) }
        }
    }
}
