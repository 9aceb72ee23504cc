import PersistentStorageProtocol
import Logging
import NIOCore
import NIOWebSocket

/// An upgraded `/ws` connection on which the daemon has granted write
/// access: the channel, the status that granted it, and the updates after it.
struct SessionChannel: Sendable {
    let channel: any Channel
    let firstWritableStatus: StorageStatus
    let updates: StorageEventHandler.Updates

    /// Events are a few hundred bytes; a frame or message far larger is not the daemon.
    static let maximumMessageSize = 64 * 1024

    /// Connects to `endpoint`, upgrades `GET /ws` to a WebSocket, and waits
    /// until the daemon reports the storage writable: one wait for both, so
    /// the caller's task is woken once rather than once per step.
    ///
    /// - Throws: the handshake's ``PersistentStorageError``, or a
    ///   ``WriteAccessWait/Failure`` if write access was not granted (the
    ///   connection is closed then).
    static func open(to endpoint: DaemonEndpoint, logger: Logger) async throws -> SessionChannel {
        let (updates, continuation) = StorageEventHandler.Updates.makeStream()
        do {
            // The handshake and the wait for write access time themselves
            // out; a cancelled caller's channel is closed, which ends both.
            let request = WebSocketClientHandshake.Request(path: "/ws", socketPath: endpoint.socketPath)
            let (channel, status) = try await endpoint.connect(sending: request.bytes) { channel, unsentRequest in
                let upgraded = channel.eventLoop.makePromise(of: Void.self)
                let writeAccess = channel.eventLoop.makePromise(of: StorageStatus.self)
                let handshake = WebSocketClientHandshake(
                    request: request, unsentRequest: unsentRequest, timeout: endpoint.timeout, upgraded: upgraded
                ) { pipeline in
                    try addFrameHandlers(
                        to: pipeline, updates: continuation, writeAccess: writeAccess, timeout: endpoint.timeout, logger: logger)
                }
                do {
                    try channel.pipeline.syncOperations.addHandler(handshake)
                } catch {
                    upgraded.fail(error)
                    writeAccess.fail(error)
                    throw error
                }
                // A failed handshake fails the wait too (the event handler,
                // which settles it otherwise, is never added then).
                upgraded.futureResult.cascadeFailure(to: writeAccess)
                return writeAccess.futureResult.map { (channel, $0) }
            }
            if Task.isCancelled {
                try? await channel.close()
                throw CancellationError()
            }
            return SessionChannel(channel: channel, firstWritableStatus: status, updates: updates)
        } catch {
            continuation.finish()
            throw error
        }
    }

    /// What follows the handshake: one handler for frames in and out and
    /// the events they carry. It joins fragmented messages and answers
    /// protocol errors itself, so that the session learns why it ended before
    /// the connection closes.
    private static func addFrameHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations,
        updates: StorageEventHandler.Updates.Continuation,
        writeAccess: EventLoopPromise<StorageStatus>,
        timeout: Duration,
        logger: Logger
    ) throws {
        try pipeline.addHandler(StorageEventHandler(updates: updates, writeAccess: writeAccess, timeout: timeout, logger: logger))
    }

}
