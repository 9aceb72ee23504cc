import Logging
import NIOCore
import PersistentStorageProtocol

/// The first handler on every connection, after ``WriteBackpressure``: it
/// reads the request head, parses it (``RequestHead``, strictly), asks
/// ``HTTPRoutes`` for the answer, and either makes the connection a
/// session (`101`, then ``WebSocketServerFraming`` and
/// ``WebSocketSessionHandler`` take over and this handler leaves) or
/// answers it and ends it.
///
/// The daemon's one request path: no route takes a body, every answer but
/// `101` closes the connection, and a session's request is always a few
/// short lines, so a reader of heads is all the HTTP the daemon needs.
/// NIO's HTTP pipeline (parser, upgrader, frame codec), built and torn down
/// for every session, was most of the daemon's work per session
/// (Documentation/Benchmarks.md); the client's handshake code shares the
/// scanning helpers in `PersistentStorageProtocol`.
///
/// It keeps the request deadline (`--http-timeout`, counted from the
/// accept): one deadline for the whole request, not an idle timer, since an
/// idle timer restarts with every byte and a client dripping a head one
/// byte at a time would hold its connection (and a descriptor) forever.
///
/// After an answer other than `101` it shuts its side of the socket down
/// and reads and drops whatever the peer still sends (a body, a second
/// request) until the peer hangs up, the deadline, or 1 MiB: closing a Unix socket
/// that has unread bytes makes the peer's reads fail with `ECONNRESET`, and
/// a client still sending its body would not get to read the answer.
final class HTTPRequestReader: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let routes: HTTPRoutes
    /// Adds the WebSocket and session handlers at the end of the pipeline.
    private let addSessionHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void
    private let maximumHeadSize: Int
    private let timeout: TimeAmount
    private let log: PeerLogger
    private let metrics: DaemonMetrics?
    private var timer: Scheduled<Void>?
    private var received: ByteBuffer?
    /// Where scanning for the end of the head goes on.
    private var scanned = 0
    /// Set once the first line has been checked (before the head ends).
    private var requestLineChecked = false
    /// Set once an answer other than `101` is decided: the rest is dropped.
    private var answered = false
    private var responded = false
    /// Bytes read and dropped after the answer.
    private var dropped = 0
    static let maximumDropped = 1 << 20
    /// The peer has shut its side down (seen only while an answer is awaited).
    private var inputClosed = false
    /// Set while the session's handlers are added and given what was read
    /// so far. A read can arrive in the middle of that: when a write fails
    /// because the peer is gone (the session's first event, flushed as its
    /// handler is added), NIO reads what the peer sent before it closes the
    /// channel, inside that flush. Such a read is queued behind what was read
    /// before it, not handled here as the start of a request.
    private var handingOver = false

    /// - Parameter timeout: how long the request may take from now (the accept).
    init(
        routes: HTTPRoutes, addSessionHandlers: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void,
        maximumHeadSize: Int, timeout: TimeAmount, metrics: DaemonMetrics? = nil, log: PeerLogger
    ) {
        self.routes = routes
        self.addSessionHandlers = addSessionHandlers
        self.maximumHeadSize = maximumHeadSize
        self.timeout = timeout
        self.metrics = metrics
        self.log = log
    }

    // The deadline: kept here rather than by a handler of its own, which
    // would be one more handler to add and remove per session.

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startDeadline(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startDeadline(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func startDeadline(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let timeout = timeout
        let log = log
        let metrics = metrics
        // Cancelled when the handler leaves (a session, or the connection closed).
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            log.debug(self.answered
                ? "closing a connection whose peer did not hang up within \(timeout) after its answer"
                : "closing a connection that sent no complete request within \(timeout)")
            metrics?.peerDropped(.requestTimeout)
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !answered else {
            // Dropped, up to a bound: a peer that keeps sending a body it was
            // told the daemon does not take only keeps the event loop busy.
            dropped += bytes.readableBytes
            if dropped > Self.maximumDropped {
                log.debug("closing a connection that sent more than \(Self.maximumDropped) bytes after its answer")
                context.close(promise: nil)
            }
            return
        }
        if received == nil {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        guard !handingOver else { return }
        skipEmptyLines()
        let limit = maximumHeadSize
        let scan = received!.withUnsafeReadableBytes { HTTPHeadScanning.scanRequestHead($0, from: &scanned, limit: limit) }
        switch scan {
        case .incomplete:
            if let error = firstLineError() { refuse(error, context: context) }
        case .notARequestHead:
            refuse(.malformedField, context: context, what: "bytes that are not an HTTP request head")
        case .tooLarge:
            log.info("a request head larger than \(limit) bytes")
            metrics?.peerDropped(.protocolError)
            respond(.headersTooLarge, context: context)
        case .complete(let length):
            let parsed = received!.withUnsafeReadableBytes { raw in
                Result { () throws(RequestHead.ParseError) in
                    try RequestHead(parsing: UnsafeBufferPointer(rebasing: raw.assumingMemoryBound(to: UInt8.self)[..<length]))
                }
            }
            guard case .success(let head) = parsed else {
                if case .failure(let error) = parsed { refuse(error, context: context) }
                return
            }
            received!.moveReaderIndex(forwardBy: length)
            route(head, context: context)
        }
    }

    /// Drops empty lines before the request line, as RFC 9112 2.2 asks of a
    /// server (and llhttp does): some clients send a CRLF after a body.
    private func skipEmptyLines() {
        guard scanned == 0 else { return }
        while let first = received?.getInteger(at: received!.readerIndex, as: UInt16.self), first == 0x0D0A {
            received!.moveReaderIndex(forwardBy: 2)
        }
    }

    /// Why the first line, once it has ended, is no request line: checked
    /// before the head ends, so that what is not HTTP gets its `400` at
    /// once rather than when the deadline runs out.
    private func firstLineError() -> RequestHead.ParseError? {
        guard !requestLineChecked, let buffer = received else { return nil }
        let scanned = scanned
        return buffer.withUnsafeReadableBytes { raw in
            let line = raw.assumingMemoryBound(to: UInt8.self)[..<scanned]
            guard let end = line.firstIndex(of: 13) else { return nil }
            requestLineChecked = true
            return RequestHead.requestLineError(UnsafeBufferPointer(rebasing: line[..<end]))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log.debug("closing a connection after: \(error)")
        context.close(promise: nil)
    }

    private func route(_ head: RequestHead, context: ChannelHandlerContext) {
        switch routes.answer(head) {
        case .session(let key):
            let response = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nsec-websocket-accept: "
                + WebSocketAccept.value(forKey: key) + "\r\nconnection: upgrade\r\n\r\n"
            context.write(wrapOutboundOut(ByteBuffer(string: response)), promise: nil)
            // The session handler writes its first event when it is added;
            // the 101 goes out first, in the same flush.
            becomeSession(context: context)
            context.flush()
        case .response(let response):
            respond(response, context: context)
        case .later(let answer):
            answered = true
            received = nil
            // A client may shut its side down once it has sent the request
            // (`shutdown(SHUT_WR)`): it still waits for the answer, so its
            // end of file must not close the connection before the answer is out.
            try? context.channel.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            context.eventLoop.makeFutureWithTask(answer).whenSuccess { response in
                let (reader, context) = bound.value
                reader.respond(response, context: context)
            }
        }
    }

    /// `400` (`431` for too many fields, `505` for HTTP/2 and later) for a
    /// request that is not well-formed.
    private func refuse(_ error: RequestHead.ParseError, context: ChannelHandlerContext, what: String? = nil) {
        log.info("malformed HTTP request: \(what ?? error.description)")
        metrics?.peerDropped(.protocolError)
        switch error {
        case .tooManyFields: respond(.headersTooLarge, context: context)
        case .unsupportedVersion: respond(.versionNotSupported, context: context)
        default: respond(.badRequest(what ?? error.description), context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Only while an answer is awaited (see `.later`) does an end of
        // file come as an event rather than close the connection.
        if case ChannelEvent.inputClosed = event {
            inputClosed = true
            if responded { context.close(promise: nil) }
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// Writes `response`, then shuts the output down and drops what the peer
    /// still sends until it hangs up (see the type's comment).
    private func respond(_ response: DaemonResponse, context: ChannelHandlerContext) {
        answered = true
        responded = true
        received = nil
        let written = context.writeAndFlush(wrapOutboundOut(response.encoded(allocator: context.channel.allocator)))
        let channel = context.channel
        guard !inputClosed else {
            written.whenComplete { _ in channel.close(promise: nil) }
            return
        }
        let halfClosed = context.eventLoop.makePromise(of: Void.self)
        halfClosed.futureResult.whenFailure { _ in channel.close(promise: nil) }
        context.close(mode: .output, promise: halfClosed)
    }

    /// Adds the session's handlers, gives them what was read after the
    /// head (the first frames, if the client sent them right behind it),
    /// and leaves the pipeline, which ends the deadline.
    private func becomeSession(context: ChannelHandlerContext) {
        handingOver = true
        defer { handingOver = false }
        do {
            try addSessionHandlers(context.pipeline.syncOperations)
        } catch {
            log.info("cannot start a session: \(error)")
            context.close(promise: nil)
            return
        }
        var delivered = false
        while let rest = received.take() {
            guard rest.readableBytes > 0 else { continue }
            context.fireChannelRead(wrapInboundOut(rest))
            delivered = true
        }
        if delivered { context.fireChannelReadComplete() }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }
}
