import Logging
import NIOCore

/// Closes a connection that has not finished its HTTP request within the
/// time limit, counted from when it was accepted.
///
/// An idle timer is not enough: it restarts with every byte, so a client
/// that drips a request head one byte at a time would hold its connection
/// (and one of the daemon's descriptors) forever. Every connection here
/// carries one request (plain answers close it, an upgrade removes this
/// handler), so one deadline per connection covers idle ones too.
final class RequestDeadlineHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let deadline: NIODeadline
    private let logger: Logger
    private var timer: Scheduled<Void>?

    /// - Parameter deadline: when the request must be complete; ``UpgradeFastPath``
    ///   passes on the one it started from the connection's accept.
    init(deadline: NIODeadline, logger: Logger) {
        self.deadline = deadline
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func start(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        timer = Self.closeAtDeadline(deadline, context: context, logger: logger)
    }

    /// Closes the connection at `deadline`, unless the returned timer is cancelled first.
    static func closeAtDeadline(_ deadline: NIODeadline, context: ChannelHandlerContext, logger: Logger) -> Scheduled<Void> {
        context.eventLoop.assumeIsolated().scheduleTask(deadline: deadline) {
            logger.debug("closing a connection that sent no complete request in time")
            context.close(promise: nil)
        }
    }
}
