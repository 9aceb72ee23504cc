#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc
import NIOCore
import NIOPosix

/// Where the daemon listens, and how long to wait for it.
///
/// Turns the errno of a failed `connect(2)` into the error a user can act on.
struct DaemonEndpoint: Sendable {
    let socketPath: String
    let timeout: Duration

    /// Connects a fresh channel and lets `initializer` build its pipeline.
    ///
    /// The socket is connected here, with connect(2), and handed to NIO
    /// connected: on a Unix socket a connect either succeeds at once or fails
    /// at once, so NIO's asynchronous connect (a promise chain and a connect
    /// timer per session) was work for nothing.
    func connect<Output: Sendable>(
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws(PersistentStorageError) -> Output {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while true {
            let descriptor: CInt
            switch Self.connectedSocket(to: socketPath) {
            case .success(let connected):
                descriptor = connected
            case .failure(let error) where error.code == EAGAIN && ContinuousClock.now + pause < deadline:
                // A full listen queue: a blocking connect(2) to a Unix socket
                // would wait for room, but a non-blocking one fails with
                // EAGAIN at once. Wait the way a blocking client would, so
                // that a burst of clients queues instead of failing.
                try? await Task.sleep(for: pause)
                if Task.isCancelled { throw connectError(errno: error.code) }
                pause = min(pause * 2, .milliseconds(50))
                continue
            case .failure(let error):
                throw connectError(errno: error.code)
            }
            do {
                // From here NIO owns the descriptor and closes it.
                return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .withConnectedSocket(descriptor, channelInitializer: initializer)
            } catch {
                throw .connectionFailed(socketPath: socketPath, reason: "\(error)")
            }
        }
    }

    private struct ConnectFailure: Error {
        var code: CInt
    }

    /// A non-blocking, close-on-exec Unix stream socket connected to `path`.
    private static func connectedSocket(to path: String) -> Result<CInt, ConnectFailure> {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard pathBytes.count < capacity else { return .failure(ConnectFailure(code: ENAMETOOLONG)) }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return .failure(ConnectFailure(code: errno)) }
        let result = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(descriptor)
            return .failure(ConnectFailure(code: code))
        }
        return .success(descriptor)
    }

    private func connectError(errno code: CInt) -> PersistentStorageError {
        switch code {
        case ENOENT, ECONNREFUSED, ENOTDIR:
            // A missing file means the daemon never started; ECONNREFUSED
            // means a stale socket file from a daemon that is gone.
            return .daemonNotRunning(socketPath: socketPath)
        case EACCES, EPERM:
            return .permissionDenied(socketPath: socketPath, socketGroup: socketGroupName())
        case ENAMETOOLONG:
            return .connectionFailed(socketPath: socketPath, reason: "the path is longer than a Unix socket address allows")
        default:
            return .connectionFailed(socketPath: socketPath, reason: String(cString: strerror(code)))
        }
    }

    /// The group owning the socket, to name in a "permission denied" message.
    private func socketGroupName() -> String? {
        (try? FileManager.default.attributesOfItem(atPath: socketPath))?[.groupOwnerAccountName] as? String
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
