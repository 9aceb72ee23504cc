import Glibc
import Logging
import NIOCore
import NIOPosix

/// The HTTP + WebSocket server on the Unix socket.
///
/// Plain SwiftNIO rather than Hummingbird: the daemon needs the kernel's peer
/// credentials of each accepted socket before any request is read, its own
/// limits on a request, and control over when the request reader gives way
/// to the WebSocket handlers; all of that is one channel initializer here,
/// and the whole server is three routes.
final class DaemonServer: Sendable {
    /// What the server needs to know; a subset of ``DaemonConfiguration``.
    struct Settings: Sendable {
        var socketPath: String
        var socketMode: mode_t
        var socketGroupID: gid_t?
        var heartbeat: Duration
        var maxFrameSize: Int
        var maxRequestHeaderSize: Int
        var httpIdleTimeout: Duration
        /// `--max-connections`: connections besides sessions (see ``PendingConnections``).
        var maxConnections: Int = 1000
        var maxSessions: Int = 100

        /// How long a peer may leave the daemon's answers backed up before it
        /// is dropped (``WriteBackpressure``): as long as a frozen session
        /// has to answer a heartbeat, since a peer that does not read is one.
        var writeStallLimit: Duration { heartbeat > .zero ? heartbeat : .seconds(15) }
    }

    /// Descriptors kept out of ``PendingConnections``' share: the daemon's own
    /// (listening socket, epoll, eventfd, the mount table watch, /proc reads,
    /// a remount command's pipes) with room to spare.
    static let reservedDescriptors = 64

    /// The cap on connections besides sessions: the configured one, but
    /// never more than the descriptor limit leaves once every session and
    /// the reserve have theirs, so that accept(2) does not run out.
    static func pendingConnectionLimit(configured: Int, maxSessions: Int, descriptorLimit: UInt64) -> Int {
        let room = Int(clamping: descriptorLimit) - maxSessions - reservedDescriptors
        return max(16, min(configured, room))
    }

    private let serverChannel: any Channel
    let socketFile: ListeningSocketFile.Published
    private let heartbeat: Heartbeat?

    private init(serverChannel: any Channel, socketFile: ListeningSocketFile.Published, heartbeat: Heartbeat?) {
        self.serverChannel = serverChannel
        self.socketFile = socketFile
        self.heartbeat = heartbeat
    }

    /// Binds, sets mode and group, and only then makes the socket visible at
    /// its path. Connections are served from the moment this returns.
    static func start(
        settings: Settings, controller: RemountController, group: any EventLoopGroup, logger: Logger
    ) async throws -> DaemonServer {
        let socketFile = ListeningSocketFile(path: settings.socketPath, mode: settings.socketMode, groupID: settings.socketGroupID)
        let staging = try socketFile.makeStaging()
        let authorization = PeerAuthorization(groupID: settings.socketGroupID ?? getegid(), ownerID: geteuid())
        let metrics = controller.metrics
        let pending = PendingConnections(
            limit: pendingConnectionLimit(
                configured: settings.maxConnections, maxSessions: settings.maxSessions, descriptorLimit: DescriptorLimit.current),
            metrics: metrics)
        logger.info("at most \(pending.limit) connections besides sessions (--max-connections \(settings.maxConnections), open file limit \(DescriptorLimit.current))")
        let logBudget = PeerLogBudget()
        // The daemon's group has one event loop, so every connection and the
        // heartbeat share it.
        let heartbeat = settings.heartbeat > .zero
            ? Heartbeat(interval: settings.heartbeat, eventLoop: group.next(), metrics: metrics, logger: logger) : nil
        let channel: any Channel
        do {
            channel = try await ServerBootstrap(group: group)
                // Room for a burst of clients (the kernel caps it at
                // net.core.somaxconn); a client that finds the queue full
                // waits and tries again.
                .serverChannelOption(.backlog, value: 1024)
                // NIO's accept loop retries at once when accept(2) fails, and
                // with no descriptor left (EMFILE) it fails again at once: the
                // daemon spun at 90% CPU. Back off instead, and make room by
                // closing the oldest connections that are not sessions.
                .serverChannelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(AcceptBackoffHandler(shouldForwardIOErrorCaught: false) { error in
                            guard error.errnoCode == EMFILE || error.errnoCode == ENFILE else { return .seconds(1) }
                            let closed = pending.closeOldest(16)
                            if closed > 0 {
                                logger.warning("out of file descriptors: closed the \(closed) oldest connection(s) that were not sessions")
                                return .milliseconds(10)
                            }
                            logger.warning("out of file descriptors, and every connection is a session: accepting again in 0.5 s")
                            return .milliseconds(500)
                        })
                    }
                }
                // A peer's answers wait here until it reads them; past the
                // high mark it is no longer read from (``WriteBackpressure``).
                .childChannelOption(.writeBufferWaterMark, value: .init(low: 16 * 1024, high: 64 * 1024))
                // Every read a session does is small (a request head, a pong,
                // an event), and each channel keeps its receive buffer between
                // reads: NIO's default of 2 KiB to start with was a third of
                // a session's memory. It still grows for larger reads (a
                // longer request head takes two reads).
                .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 256, maximum: 65536))
                .childChannelInitializer { channel in
                    metrics.connectionsAccepted.increment()
                    metrics.connectionsOpen.increment()
                    channel.closeFuture.whenComplete { _ in metrics.connectionsOpen.decrement() }
                    if let closed = pending.add(channel), closed == 1 || closed.isMultiple(of: 1000) {
                        logger.warning("more than \(pending.limit) connections besides sessions: closed the oldest (\(closed) so far)")
                    }
                    return PeerCredentials.of(channel).flatMapThrowing { peer in
                        try configureConnection(
                            channel, peer: peer, peerIsAllowed: authorization.allows(peer),
                            settings: settings, controller: controller, heartbeat: heartbeat, logger: logger,
                            pending: pending, logBudget: logBudget)
                    }
                }
                .bind(unixDomainSocketPath: staging.socketPath)
                .get()
        } catch {
            heartbeat?.stop()
            socketFile.discard(staging)
            throw error
        }
        do {
            let published = try socketFile.publish(staging)
            return DaemonServer(serverChannel: channel, socketFile: published, heartbeat: heartbeat)
        } catch {
            heartbeat?.stop()
            try? await channel.close()
            throw error
        }
    }

    /// Stops accepting connections; open ones stay until closed.
    func stopAccepting() async {
        try? await serverChannel.close()
    }

    /// Ends the heartbeat; sessions still open are no longer pinged.
    func stopHeartbeat() {
        heartbeat?.stop()
    }

    /// Removes the socket file, if it is still the one this server made.
    func removeSocketFile() {
        ListeningSocketFile.remove(socketFile)
    }

    /// The pipeline of one connection: ``WriteBackpressure``, then the
    /// ``HTTPRequestReader``, which keeps the request deadline, answers
    /// plain requests, and makes way for the session's handlers after an
    /// upgrade.
    static func configureConnection(
        _ channel: any Channel, peer: PeerCredentials, peerIsAllowed: Bool,
        settings: Settings, controller: RemountController, heartbeat: Heartbeat? = nil, logger: Logger,
        pending: PendingConnections? = nil, logBudget: PeerLogBudget = PeerLogBudget()
    ) throws {
        let pipeline = channel.pipeline.syncOperations
        let log = PeerLogger(logger: logger, peer: peer, budget: logBudget)
        // The channel's identity, not a weak reference to it: a weak
        // reference gives the channel a side table, and every retain and
        // release of it then takes the runtime's slow path (measured: the
        // daemon's CPU per session rose by a tenth).
        let channelID = ObjectIdentifier(channel)
        try pipeline.addHandler(
            WriteBackpressure(stallLimit: TimeAmount(settings.writeStallLimit), metrics: controller.metrics, log: log))
        try pipeline.addHandler(
            HTTPRequestReader(
                routes: HTTPRoutes(controller: controller, peerIsAllowed: peerIsAllowed, log: log),
                addSessionHandlers: { pipeline in
                    try pipeline.addHandler(WebSocketServerFraming(maximumFrameSize: settings.maxFrameSize))
                    try pipeline.addHandler(WebSocketSessionHandler(
                        controller: controller, peer: peer, heartbeat: heartbeat, maximumMessageSize: settings.maxFrameSize, log: log))
                    pending?.remove(channelID)
                },
                maximumHeadSize: settings.maxRequestHeaderSize, timeout: TimeAmount(settings.httpIdleTimeout),
                metrics: controller.metrics, log: log))
    }
}
