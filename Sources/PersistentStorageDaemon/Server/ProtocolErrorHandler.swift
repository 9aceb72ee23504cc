import NIOCore
import NIOHTTP1
import NIOWebSocket

/// Answers a request the HTTP parser rejected with `400` (or `431` for
/// oversized headers) in the JSON envelope, then lets the connection close.
/// NIO's own `HTTPServerProtocolErrorHandler` does the same with an empty body.
final class ProtocolErrorHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private let log: PeerLogger
    private let metrics: DaemonMetrics?
    private var responseInProgress = false

    init(log: PeerLogger, metrics: DaemonMetrics? = nil) {
        self.log = log
        self.metrics = metrics
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard let parserError = error as? HTTPParserError else {
            context.fireErrorCaught(error)
            return
        }
        if parserError == .invalidEOFState {
            // Not malformed: the connection ended mid-request (the peer hung
            // up, or the daemon closed it at the request deadline, counted there).
            log.debug("a connection ended in the middle of a request")
        } else {
            log.info("malformed HTTP request: \(parserError)")
            metrics?.peerDropped(.protocolError)
        }
        // Only when no other answer is half written; the decoder closes the
        // connection right after this returns, so nothing may be deferred.
        if !responseInProgress {
            let response = parserError == .headerOverflow ? DaemonResponse.headersTooLarge : DaemonResponse.badRequest
            response.write(to: context, keepAlive: false)
        }
        context.fireErrorCaught(error)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head) where head.status.code >= 200: responseInProgress = true
        case .end: responseInProgress = false
        default: break
        }
        context.write(data, promise: promise)
    }
}

/// Closes the connection on any error that reaches the end of the pipeline,
/// so a broken peer never leaves a half-open connection behind.
final class CloseOnErrorHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let log: PeerLogger

    init(log: PeerLogger) {
        self.log = log
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A refused or malformed WebSocket handshake is reported here, but
        // NIO then hands the request to the HTTP handler, which answers it
        // (403, 503, 400): closing now would cut that answer off.
        if error is NIOWebSocketUpgradeError { return }
        if !(error is HTTPParserError) {
            log.debug("closing a connection after: \(error)")
        }
        context.close(promise: nil)
    }
}
