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

    private let timeout: TimeAmount
    private let logger: Logger
    private var deadline: Scheduled<Void>?

    init(timeout: TimeAmount, logger: Logger) {
        self.timeout = timeout
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
        deadline?.cancel()
        deadline = nil
    }

    private func start(context: ChannelHandlerContext) {
        guard deadline == nil else { return }
        let timeout = timeout
        let logger = logger
        deadline = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            logger.debug("closing a connection that sent no complete request within \(timeout)")
            context.close(promise: nil)
        }
    }
}
