import Logging
import NIOCore
import NIOHTTP1
import NIOWebSocket

/// An upgraded `/ws` connection: the channel and the status updates it delivers.
struct SessionConnection: Sendable {
    let channel: any Channel
    let updates: StorageEventHandler.Updates

    /// Events are a few hundred bytes; a frame or message far larger is not the daemon.
    static let maximumMessageSize = 64 * 1024

    private enum UpgradeResult: Sendable {
        case upgraded
        case notUpgraded
    }

    /// Connects to `endpoint` and upgrades `GET /ws` to a WebSocket.
    static func open(to endpoint: DaemonEndpoint, logger: Logger) async throws -> SessionConnection {
        let (updates, continuation) = StorageEventHandler.Updates.makeStream()
        let (channel, upgradeResult) = try await endpoint.connect { channel in
            channel.eventLoop.makeCompletedFuture {
                (channel, try configurePipeline(of: channel, updates: continuation, logger: logger))
            }
        }
        do {
            let result = try await withTimeout(endpoint.timeout, waitingFor: "the WebSocket upgrade of GET /ws") {
                try await upgradeResult.get()
            }
            guard case .upgraded = result else {
                throw PersistentStorageError.protocolViolation("the daemon did not accept the WebSocket upgrade of GET /ws")
            }
        } catch {
            continuation.finish()
            try? await channel.close()
            throw error
        }
        return SessionConnection(channel: channel, updates: updates)
    }

    private static func configurePipeline(
        of channel: any Channel,
        updates: StorageEventHandler.Updates.Continuation,
        logger: Logger
    ) throws -> EventLoopFuture<UpgradeResult> {
        let upgrader = NIOTypedWebSocketClientUpgrader<UpgradeResult>(
            maxFrameSize: maximumMessageSize,
            // StorageEventHandler answers protocol errors itself, so that the
            // session learns why it ended before the connection closes.
            enableAutomaticErrorHandling: false,
            upgradePipelineHandler: { channel, _ in
                channel.eventLoop.makeCompletedFuture {
                    // Servers may fragment a message (RFC 6455 5.4); the daemon's
                    // events are small, so the whole message is bounded too.
                    try channel.pipeline.syncOperations.addHandlers(
                        NIOWebSocketFrameAggregator(
                            minNonFinalFragmentSize: 1,
                            maxAccumulatedFrameCount: 64,
                            maxAccumulatedFrameSize: maximumMessageSize
                        ),
                        StorageEventHandler(updates: updates, logger: logger)
                    )
                    return UpgradeResult.upgraded
                }
            }
        )
        let configuration = NIOTypedHTTPClientUpgradeConfiguration<UpgradeResult>(
            upgradeRequestHead: .daemonRequest(path: "/ws"),
            upgraders: [upgrader],
            notUpgradingCompletionHandler: { channel in
                channel.close().map { UpgradeResult.notUpgraded }
            }
        )
        var pipelineConfiguration = NIOUpgradableHTTPClientPipelineConfiguration(upgradeConfiguration: configuration)
        // The daemon may send its first events in the same segment as the 101
        // answer; dropping those bytes would lose them.
        pipelineConfiguration.leftOverBytesStrategy = .forwardBytes
        return try channel.pipeline.syncOperations.configureUpgradableHTTPClientPipeline(
            configuration: pipelineConfiguration
        )
    }
}
