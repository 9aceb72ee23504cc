import SystemSupport
import Glibc
import PersistentStorage

/// The kernel's part of opening a session, without any protocol: connect to
/// a Unix socket, send a request the size of the upgrade, and read an answer
/// the size of the 101 and the first event, served by a plain blocking
/// accept loop on a thread of its own.
///
/// Like a session's open it wakes the server once and the client once, so it
/// is the floor that warm acquire is read against.
enum SocketExchange {
    static let requestSize = 200
    static let answerSize = 260

    /// Times `count` exchanges (after a few unmeasured ones), from socket(2)
    /// to the last byte of the answer; each connection is closed after it.
    static func measure(directory: String, count: Int) throws -> Samples {
        let path = directory + "/bare-exchange.sock"
        unlink(path)
        let listener = try listeningSocket(at: path)
        defer {
            close(listener)
            unlink(path)
        }
        let warmUp = 20
        let total = warmUp + count
        DetachedThread.run(name: "bare-exchange") {
            var request = [UInt8](repeating: 0, count: requestSize)
            let answer = [UInt8](repeating: UInt8(ascii: "a"), count: answerSize)
            for _ in 0..<total {
                let connection = accept(listener, nil, nil)
                guard connection >= 0 else { return }
                if readFully(connection, &request), writeFully(connection, answer) {
                    // Wait for the client's close, as a server waits for a session's end.
                    var byte: UInt8 = 0
                    _ = read(connection, &byte, 1)
                }
                close(connection)
            }
        }

        let clock = ContinuousClock()
        let request = [UInt8](repeating: UInt8(ascii: "r"), count: requestSize)
        var answer = [UInt8](repeating: 0, count: answerSize)
        var samples = Samples(reserving: count)
        for exchange in 0..<total {
            let start = clock.now
            let socket = try connectedSocket(to: path)
            guard writeFully(socket, request), readFully(socket, &answer) else {
                close(socket)
                throw BenchmarkFailure("the bare socket exchange was cut short")
            }
            let end = clock.now
            close(socket)
            if exchange >= warmUp { samples.append(end - start) }
        }
        return samples
    }

    private static func listeningSocket(at path: String) throws -> Int32 {
        let (fd, address) = try streamSocket(for: path)
        guard address.withSocketAddress({ bind(fd, $0, $1) }) == 0, listen(fd, 128) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw BenchmarkFailure("bind/listen on \(path): \(reason)")
        }
        return fd
    }

    private static func connectedSocket(to path: String) throws -> Int32 {
        let (fd, address) = try streamSocket(for: path)
        guard address.withSocketAddress({ connect(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw BenchmarkFailure("connect to \(path): \(reason)")
        }
        return fd
    }

    /// A blocking stream socket, and the address of `path`.
    private static func streamSocket(for path: String) throws -> (Int32, UnixSocketAddress) {
        guard let address = UnixSocketAddress(path: path) else { throw BenchmarkFailure("\(path) is too long for a socket") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw BenchmarkFailure("socket(2): \(String(cString: strerror(errno)))") }
        return (fd, address)
    }

    private static func readFully(_ fd: Int32, _ buffer: inout [UInt8]) -> Bool {
        var done = 0
        while done < buffer.count {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
            if count <= 0 { return false }
            done += count
        }
        return true
    }

    private static func writeFully(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
            if count <= 0 { return false }
            done += count
        }
        return true
    }
}
