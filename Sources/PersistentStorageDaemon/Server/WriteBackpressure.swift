import NIOCore

/// The first handler of every connection: it stops reading from a peer
/// whose answers back up, and drops a peer that leaves them unread.
///
/// Why: everything the daemon writes to a peer waits in the channel's
/// outbound queue until the peer reads it, and most of it is written
/// because the peer asked (a pong for each ping, an answer for each
/// request). A peer that asks and never reads made that queue grow without
/// limit (400,000 pings: 170 MB). Once the queue is over the channel's
/// high watermark (`writeBufferWaterMark`) the channel turns unwritable;
/// from then on nothing more is read, so the peer cannot make the daemon
/// write more, and its own sends back up in the kernel instead. What the
/// daemon writes on its own (storage events, heartbeat pings) is a few
/// small frames, but a peer that stays over the bound for `stallLimit` is
/// closed, so that it holds neither the queue nor, for a session, the
/// storage.
final class WriteBackpressure: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    typealias InboundOut = NIOAny
    typealias OutboundIn = NIOAny
    typealias OutboundOut = NIOAny

    private let stallLimit: TimeAmount
    private let log: PeerLogger
    private let metrics: DaemonMetrics?
    /// A read was asked for while unwritable; it is done once writable again.
    private var readHeldBack = false
    private var stallDeadline: Scheduled<Void>?

    init(stallLimit: TimeAmount, metrics: DaemonMetrics? = nil, log: PeerLogger) {
        self.stallLimit = stallLimit
        self.metrics = metrics
        self.log = log
    }

    func read(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            context.read()
        } else {
            readHeldBack = true
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            stallDeadline?.cancel()
            stallDeadline = nil
            if readHeldBack {
                readHeldBack = false
                context.read()
            }
        } else if stallDeadline == nil {
            let log = log
            let stallLimit = stallLimit
            let metrics = metrics
            stallDeadline = context.eventLoop.assumeIsolated().scheduleTask(in: stallLimit) {
                log.warning("dropping a peer that left the daemon's answers unread for \(stallLimit)")
                metrics?.peerDropped(.unread)
                context.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        stallDeadline?.cancel()
        stallDeadline = nil
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        stallDeadline?.cancel()
        stallDeadline = nil
    }
}
