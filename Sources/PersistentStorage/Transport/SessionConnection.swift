import Logging
import NIOCore
import NIOWebSocket

/// An upgraded `/ws` connection: the channel and the status updates it delivers.
struct SessionConnection: Sendable {
    let channel: any Channel
    let updates: StorageEventHandler.Updates
    private let continuation: StorageEventHandler.Updates.Continuation

    /// Events are a few hundred bytes; a frame or message far larger is not the daemon.
    static let maximumMessageSize = 64 * 1024

    /// Connects to `endpoint` and upgrades `GET /ws` to a WebSocket.
    static func open(to endpoint: DaemonEndpoint, logger: Logger) async throws -> SessionConnection {
        let (updates, continuation) = StorageEventHandler.Updates.makeStream()
        let (channel, upgraded) = try await endpoint.connect { channel in
            channel.eventLoop.makeCompletedFuture {
                let upgraded = channel.eventLoop.makePromise(of: Void.self)
                let handshake = WebSocketClientHandshake(path: "/ws", timeout: endpoint.timeout, upgraded: upgraded) { pipeline in
                    try addFrameHandlers(to: pipeline, updates: continuation, logger: logger)
                }
                try channel.pipeline.syncOperations.addHandler(handshake)
                return (channel, upgraded.futureResult)
            }
        }
        do {
            // The handshake times itself out; closing the channel is how a
            // cancelled caller stops it early.
            try await withTaskCancellationHandler {
                try await upgraded.get()
            } onCancel: {
                channel.close(promise: nil)
            }
            try Task.checkCancellation()
        } catch {
            continuation.finish()
            try? await channel.close()
            throw error
        }
        return SessionConnection(channel: channel, updates: updates, continuation: continuation)
    }

    /// What follows the handshake: frames in and out, whole messages, events.
    private static func addFrameHandlers(
        to pipeline: ChannelPipeline.SynchronousOperations,
        updates: StorageEventHandler.Updates.Continuation,
        logger: Logger
    ) throws {
        try pipeline.addHandlers(
            WebSocketFrameEncoder(),
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: maximumMessageSize)),
            // Servers may fragment a message (RFC 6455 5.4); the daemon's
            // events are small, so the whole message is bounded too.
            NIOWebSocketFrameAggregator(
                minNonFinalFragmentSize: 1,
                maxAccumulatedFrameCount: 64,
                maxAccumulatedFrameSize: maximumMessageSize
            ),
            // StorageEventHandler answers protocol errors itself, so that the
            // session learns why it ended before the connection closes.
            StorageEventHandler(updates: updates, logger: logger)
        )
    }

    /// Ends ``updates`` with `error` after `timeout`, unless cancelled first:
    /// a deadline for whoever waits on them, kept on the event loop.
    func finishUpdates(after timeout: Duration, throwing error: PersistentStorageError) -> Scheduled<Void> {
        let continuation = continuation
        return channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            continuation.finish(throwing: error)
        }
    }
}
