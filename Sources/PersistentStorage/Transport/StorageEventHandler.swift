import Logging
import NIOCore
import NIOWebSocket

/// The client end of `/ws` once the upgrade is done: reads the daemon's
/// frames from the connection's bytes, turns them into ``StorageStatus``
/// updates, and keeps the WebSocket's side of the bargain. Frames written to
/// the channel (unmasked) leave it masked.
///
/// It runs on the channel's event loop, so pings are answered and the close
/// handshake is completed even while nobody is reading the updates. It is the
/// session's only handler after the handshake: framing is done here
/// (``WebSocketFrameCoding``) rather than by two more NIO handlers.
final class StorageEventHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    /// How a session's updates end: `nil` when we closed it ourselves.
    typealias Updates = AsyncThrowingStream<StorageStatus, any Error>

    private let updates: Updates.Continuation
    private let logger: Logger
    /// Until the storage is first reported writable: who waits for that, and
    /// for how long (see ``WriteAccessWait``). Statuses before it are not
    /// passed on; the ones after it go to ``Updates``.
    private var writeAccess: EventLoopPromise<StorageStatus>?
    private let writeAccessTimeout: Duration
    private var writeAccessDeadline: Scheduled<Void>?
    private var sawReadOnly = false
    /// Servers may fragment a message (RFC 6455 5.4); the daemon's events are
    /// small, so the whole message is bounded too.
    private var messages = WebSocketMessageAssembler(
        maximumSize: SessionConnection.maximumMessageSize, maximumFragments: 64, minimumNonFinalFragmentSize: 1)
    /// Set once we sent a close frame: the peer's close frame is then an
    /// answer, and the connection ending is what we asked for.
    private var closingByUs = false
    /// Set once the updates stream has been finished.
    private var finished = false
    private var frames = WebSocketFrameReader(maximumSize: SessionConnection.maximumMessageSize)
    /// Set once a frame broke the rules: what follows it is not read.
    private var stoppedReading = false

    init(updates: Updates.Continuation, writeAccess: EventLoopPromise<StorageStatus>, timeout: Duration, logger: Logger) {
        self.updates = updates
        self.writeAccess = writeAccess
        self.writeAccessTimeout = timeout
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // A timer on the event loop, not a racing task: the wait is for the
        // daemon's remount, which starts once the upgrade is done.
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        writeAccessDeadline = context.eventLoop.scheduleTask(in: TimeAmount(writeAccessTimeout)) {
            let (handler, context) = loopBound.value
            handler.failWriteAccess(WriteAccessWait.Failure.timedOut(sawReadOnly: handler.sawReadOnly))
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        failWriteAccess(WriteAccessWait.Failure.revoked(.connectionClosed))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !stoppedReading else { return }
        frames.append(unwrapInboundIn(data))
        do {
            while !stoppedReading, let frame = try frames.nextFrame() {
                received(frame, context: context)
            }
        } catch {
            stoppedReading = true
            sendClose(code: error.closeCode, context: context)
            fail(.protocolViolation("invalid WebSocket frame (\(error))"), context: context)
        }
    }

    private func received(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        switch frame.opcode {
        case .text, .continuation:
            switch messages.add(frame) {
            case .message(_, let text):
                received(text: text)
            case .incomplete:
                break
            case .failure(let code, let reason):
                stoppedReading = true
                sendClose(code: code, context: context)
                fail(.protocolViolation("invalid WebSocket message (\(reason))"), context: context)
            }
        case .ping:
            // RFC 6455 5.5.3: a pong carries the ping's payload. The daemon drops
            // peers that do not answer its heartbeat.
            send(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData), context: context)
        case .pong:
            break
        case .connectionClose:
            // Nothing may follow a close frame (RFC 6455 5.5.1).
            stoppedReading = true
            receivedClose(frame, context: context)
        case .binary:
            stoppedReading = true
            fail(.protocolViolation("the daemon sent a binary frame"), context: context)
        default:
            stoppedReading = true
            fail(.protocolViolation("the daemon sent a frame with opcode \(frame.opcode)"), context: context)
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        if frame.opcode == .connectionClose { closingByUs = true }
        // RFC 6455 5.3: every frame a client sends is masked with a fresh key.
        var bytes = context.channel.allocator.buffer(capacity: 14 + frame.data.readableBytes)
        WebSocketFrameCoding.write(frame, maskedWith: WebSocketMaskingKey.random(), to: &bytes)
        context.write(wrapOutboundOut(bytes), promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("PST connection error: \(error)")
        fail(.connectionClosed, context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if frames.isInsideFrame && !stoppedReading && !closingByUs {
            finish(throwing: PersistentStorageError.revoked(.protocolViolation("the daemon closed the connection in the middle of a WebSocket frame")))
        } else if closingByUs {
            finish(throwing: nil)
        } else {
            finish(throwing: PersistentStorageError.revoked(.connectionClosed))
        }
        context.fireChannelInactive()
    }

    private func received(text: ByteBuffer) {
        let event: StorageEvent
        do {
            event = try StorageEvent(decoding: text.readableBytesView)
        } catch {
            // The protocol asks both ends to log and skip frames they cannot read.
            logger.warning("ignoring an unreadable event from the PST daemon: \(error)")
            return
        }
        switch event {
        case .storage(let status):
            logger.debug("PST storage event: clients=\(status.clients) write_allowed=\(status.data.writeAllowed)")
            if let waiting = writeAccess {
                // PROTOCOL.md lets a daemon say "read-only" before its remount
                // to read-write is done: only `true` ends the wait.
                guard status.data.writeAllowed else {
                    sawReadOnly = true
                    return
                }
                writeAccess = nil
                writeAccessDeadline?.cancel()
                waiting.succeed(status)
            } else {
                updates.yield(status)
            }
        case .loop, .pong:
            break
        case .ping, .unknown:
            logger.debug("ignoring a \(event.eventType) event from the PST daemon")
        }
    }

    private func receivedClose(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        guard !closingByUs else {
            context.close(promise: nil)
            return
        }
        // The daemon ends the session: answer its close frame (RFC 6455 5.5.1)
        // with the same status code, then let it close the connection.
        var payload = frame.unmaskedData
        let code = payload.readSlice(length: 2) ?? ByteBuffer()
        finish(throwing: PersistentStorageError.revoked(.connectionClosed))
        send(WebSocketFrame(fin: true, opcode: .connectionClose, data: code), context: context)
        context.close(promise: nil)
    }

    private func sendClose(code: WebSocketErrorCode, context: ChannelHandlerContext) {
        var payload = context.channel.allocator.buffer(capacity: 2)
        payload.write(webSocketErrorCode: code)
        send(WebSocketFrame(fin: true, opcode: .connectionClose, data: payload), context: context)
    }

    private func fail(_ reason: RevocationReason, context: ChannelHandlerContext) {
        finish(throwing: PersistentStorageError.revoked(reason))
        context.close(promise: nil)
    }

    private func send(_ frame: WebSocketFrame, context: ChannelHandlerContext) {
        // Through our own `write`, so the frame gets masked.
        write(context: context, data: NIOAny(frame), promise: nil)
        context.flush()
    }

    private func finish(throwing error: (any Error)?) {
        if case PersistentStorageError.revoked(let reason)? = error {
            failWriteAccess(WriteAccessWait.Failure.revoked(reason))
        } else {
            failWriteAccess(WriteAccessWait.Failure.revoked(.connectionClosed))
        }
        guard !finished else { return }
        finished = true
        updates.finish(throwing: error)
    }

    private func failWriteAccess(_ failure: WriteAccessWait.Failure) {
        guard let waiting = writeAccess else { return }
        writeAccess = nil
        writeAccessDeadline?.cancel()
        waiting.fail(failure)
    }
}
