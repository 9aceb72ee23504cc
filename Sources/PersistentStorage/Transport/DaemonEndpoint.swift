#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemSupport
import Glibc
import NIOCore
import NIOPosix
import Synchronization

/// Where the daemon listens, and how long to wait for it.
///
/// Turns the errno of a failed `connect(2)` into the error a user can act on.
struct DaemonEndpoint: Sendable {
    let socketPath: String
    let timeout: Duration

    /// Connects a fresh channel, lets `initializer` build its pipeline, and
    /// waits for the future the initializer returns: one wait for the
    /// connection and what follows it, so that the caller's task is woken once
    /// per session rather than once per step (every wake is a thread hop).
    ///
    /// `request`, if given, is sent on the caller's thread as soon as the
    /// socket is connected, before the channel is handed to NIO: the daemon
    /// starts on it while this process is still setting the channel up,
    /// instead of after a hop to the event loop and the pipeline's set-up.
    /// What the socket did not take at once is passed to `initializer` as
    /// `unsentRequest`, for the pipeline to send.
    ///
    /// - Throws: a ``PersistentStorageError`` if connecting fails; the
    ///   future's own error if it fails, after the channel has been closed;
    ///   `CancellationError` if the caller is cancelled, at any point before
    ///   the output is returned (the channel is closed then).
    func connect<Output: Sendable>(
        sending request: ByteBuffer = ByteBuffer(),
        _ initializer: @escaping @Sendable (_ channel: any Channel, _ unsentRequest: ByteBuffer) throws -> EventLoopFuture<Output>
    ) async throws -> Output {
        let deadline = ContinuousClock.now + timeout
        var pause = Duration.milliseconds(1)
        while true {
            // Not even a socket for a caller that is cancelled already.
            try Task.checkCancellation()
            let cancellation = ChannelCancellation()
            let eventLoop = MultiThreadedEventLoopGroup.singleton.next()
            let output = NIOLoopBoundBox<EventLoopFuture<Output>?>.makeEmptyBox(eventLoop: eventLoop)
            let connected: EventLoopFuture<any Channel>
            switch Self.connectedSocket(to: socketPath) {
            case .success(let descriptor):
                let unsentRequest = Self.sendAtOnce(request, on: descriptor)
                let bootstrap = ClientBootstrap(group: eventLoop)
                    .channelInitializer { channel in
                        eventLoop.makeCompletedFuture {
                            // Failing here, rather than closing the channel, is how
                            // a channel is abandoned before NIO has registered it:
                            // NIO closes it then, and registering a channel closed
                            // under its feet is an assertion failure.
                            try cancellation.attach(channel)
                            output.value = try initializer(channel, unsentRequest)
                        }
                    }
                // From here NIO owns the descriptor and closes it.
                connected = bootstrap.withConnectedSocket(descriptor)
            case .failure(let error):
                connected = eventLoop.makeFailedFuture(error)
            }
            let result = connected
                .flatMapErrorThrowing { throw ConnectFailure(error: $0) }
                .flatMap { channel in
                    output.value!.flatMapError { error in
                        channel.close().recover { _ in }.flatMapThrowing { throw error }
                    }
                }
            do {
                return try await withTaskCancellationHandler {
                    try await result.get()
                } onCancel: {
                    cancellation.cancel()
                }
            } catch where cancellation.isCancelled {
                // Whatever closing the channel made fail ("I/O on closed
                // channel", a refusal read into the missing answer), the
                // caller's cancellation is the reason.
                throw CancellationError()
            } catch let failure as ConnectFailure {
                if let error = failure.error as? IOError, error.errnoCode == EAGAIN, ContinuousClock.now + pause < deadline {
                    // A full listen queue: a blocking connect(2) to a Unix socket
                    // would wait for room, but a non-blocking one fails with
                    // EAGAIN at once. Wait the way a blocking client would, so
                    // that a burst of clients queues instead of failing.
                    try? await Task.sleep(for: pause)
                    pause = min(pause * 2, .milliseconds(50))
                    continue
                }
                throw connectError(for: failure.error)
            }
        }
    }

    /// A non-blocking, close-on-exec Unix stream socket connected to `path`.
    ///
    /// Connected here rather than by NIO: on a Unix socket connect(2) succeeds
    /// or fails at once, so NIO's asynchronous connect (a promise chain and a
    /// connect timer per session) is work for nothing.
    private static func connectedSocket(to path: String) -> Result<CInt, IOError> {
        guard let address = UnixSocketAddress(path: path) else {
            return .failure(IOError(errnoCode: ENAMETOOLONG, reason: "connect"))
        }
        let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let descriptor = socket(AF_UNIX, flags, 0)
        guard descriptor >= 0 else { return .failure(IOError(errnoCode: errno, reason: "socket")) }
        guard address.withSocketAddress({ Glibc.connect(descriptor, $0, $1) }) == 0 else {
            let code = errno
            close(descriptor)
            return .failure(IOError(errnoCode: code, reason: "connect"))
        }
        return .success(descriptor)
    }

    /// Sends as much of `bytes` as the non-blocking socket takes without
    /// waiting, and returns the rest. Any error is left for the channel to
    /// meet again when it sends the rest, and to report the usual way.
    static func sendAtOnce(_ bytes: ByteBuffer, on descriptor: CInt) -> ByteBuffer {
        var rest = bytes
        guard rest.readableBytes > 0 else { return rest }
        // MSG_NOSIGNAL: a daemon that has already closed must not kill us with SIGPIPE.
        let sent = rest.withUnsafeReadableBytes { send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent > 0 { rest.moveReaderIndex(forwardBy: sent) }
        return rest
    }

    /// A failure to connect, told apart from the failures of what follows.
    private struct ConnectFailure: Error {
        let error: any Error
    }

    func connectError(for error: any Error) -> PersistentStorageError {
        if let ioError = error as? IOError {
            switch ioError.errnoCode {
            case ENOENT, ECONNREFUSED, ENOTDIR:
                // A missing file means the daemon never started; ECONNREFUSED
                // means a stale socket file from a daemon that is gone, or
                // something that is no socket at all.
                if let kind = Self.nonSocketKind(at: socketPath) {
                    return .connectionFailed(socketPath: socketPath, reason: "\(kind) is there, not a socket")
                }
                return .daemonNotRunning(socketPath: socketPath)
            case EACCES, EPERM:
                return .permissionDenied(socketPath: socketPath, socketGroup: Self.socketGroupName(of: socketPath))
            default:
                return .connectionFailed(socketPath: socketPath, reason: ioError.description)
            }
        }
        return .connectionFailed(socketPath: socketPath, reason: "\(error)")
    }

    /// What is at `path` when it exists and is not a socket ("a regular file").
    static func nonSocketKind(at path: String) -> String? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFSOCK: return nil
        case S_IFREG: return "a regular file"
        case S_IFDIR: return "a directory"
        case S_IFIFO: return "a FIFO"
        case S_IFCHR, S_IFBLK: return "a device"
        default: return "something"
        }
    }

    /// The group owning the socket, to name in a "permission denied" message.
    static func socketGroupName(of socketPath: String) -> String? {
        (try? FileManager.default.attributesOfItem(atPath: socketPath))?[.groupOwnerAccountName] as? String
    }
}

/// Closes a connection's channel when its caller is cancelled, whether the
/// cancellation comes before the channel exists or after.
private final class ChannelCancellation: Sendable {
    private struct State {
        var cancelled = false
        var channel: (any Channel)?
    }
    private let state = Mutex(State())

    /// Keeps `channel` to close on cancellation; throws `CancellationError`
    /// if the caller is cancelled already, for the channel's initializer to
    /// fail with.
    func attach(_ channel: any Channel) throws(CancellationError) {
        let cancelled = state.withLock { state in
            if !state.cancelled { state.channel = channel }
            return state.cancelled
        }
        if cancelled { throw CancellationError() }
    }

    var isCancelled: Bool { state.withLock { $0.cancelled } }

    func cancel() {
        let channel = state.withLock { state in
            state.cancelled = true
            return state.channel
        }
        channel?.close(promise: nil)
    }
}
