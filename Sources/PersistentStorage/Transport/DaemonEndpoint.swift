#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOPosix

/// Where the daemon listens, and how long to wait for it.
///
/// Turns the errno of a failed `connect(2)` into the error a user can act on.
struct DaemonEndpoint: Sendable {
    let socketPath: String
    let timeout: Duration

    /// Connects a fresh channel and lets `initializer` build its pipeline.
    func connect<Output: Sendable>(
        _ initializer: @escaping @Sendable (any Channel) -> EventLoopFuture<Output>
    ) async throws(PersistentStorageError) -> Output {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while true {
            do {
                return try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .connectTimeout(TimeAmount(timeout))
                    .connect(unixDomainSocketPath: socketPath, channelInitializer: initializer)
            } catch let error as IOError where error.errnoCode == EAGAIN && ContinuousClock.now + pause < deadline {
                // A full listen queue: a blocking connect(2) to a Unix socket
                // would wait for room, but NIO's non-blocking one fails with
                // EAGAIN at once. Wait the way a blocking client would, so
                // that a burst of clients queues instead of failing.
                try? await Task.sleep(for: pause)
                if Task.isCancelled { throw connectError(for: error) }
                pause = min(pause * 2, .milliseconds(50))
            } catch {
                throw connectError(for: error)
            }
        }
    }

    private func connectError(for error: any Error) -> PersistentStorageError {
        if let ioError = error as? IOError {
            switch ioError.errnoCode {
            case ENOENT, ECONNREFUSED, ENOTDIR:
                // A missing file means the daemon never started; ECONNREFUSED
                // means a stale socket file from a daemon that is gone.
                return .daemonNotRunning(socketPath: socketPath)
            case EACCES, EPERM:
                return .permissionDenied(socketPath: socketPath, socketGroup: socketGroupName())
            default:
                return .connectionFailed(socketPath: socketPath, reason: ioError.description)
            }
        }
        if case ChannelError.connectTimeout = error {
            return .timedOut(after: timeout, waitingFor: "a connection to \(socketPath)")
        }
        return .connectionFailed(socketPath: socketPath, reason: "\(error)")
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
