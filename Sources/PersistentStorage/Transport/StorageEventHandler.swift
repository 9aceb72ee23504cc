import PersistentStorageProtocol
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
/// session's only handler after the handshake: the frames are read by a
/// ``DaemonEventReader`` (the one `kvmd-pstrun`'s ``BlockingSession`` uses)
/// rather than by two more NIO handlers.
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
    /// Set once we sent a close frame: the peer's close frame is then an
    /// answer, and the connection ending is what we asked for.
    private var closingByUs = false
    /// Set once the updates stream has been finished.
    private var finished = false
    private var reader: DaemonEventReader

    init(updates: Updates.Continuation, writeAccess: EventLoopPromise<StorageStatus>, timeout: Duration, logger: Logger) {
        self.updates = updates
        self.writeAccess = writeAccess
        self.writeAccessTimeout = timeout
        self.logger = logger
        self.reader = DaemonEventReader(logger: logger)
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
        reader.append(unwrapInboundIn(data))
        while let incoming = reader.next() {
            switch incoming {
            case .status(let status):
                received(status)
            case .ping(let payload):
                send(WebSocketFrame(fin: true, opcode: .pong, data: payload), context: context)
            case .close(let code):
                receivedClose(code: code, context: context)
            case .broken(let closeCode, let reason):
                if let closeCode { sendClose(code: closeCode, context: context) }
                fail(.protocolViolation(reason), context: context)
            }
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
        finish(throwing: closingByUs ? nil : PersistentStorageError.revoked(reader.connectionEndReason))
        context.fireChannelInactive()
    }

    private func received(_ status: StorageStatus) {
        guard let waiting = writeAccess else {
            updates.yield(status)
            return
        }
        // PROTOCOL.md lets a daemon say "read-only" before its remount to
        // read-write is done: only `true` ends the wait.
        guard status.data.writeAllowed else {
            sawReadOnly = true
            return
        }
        writeAccess = nil
        writeAccessDeadline?.cancel()
        waiting.succeed(status)
    }

    private func receivedClose(code: ByteBuffer, context: ChannelHandlerContext) {
        guard !closingByUs else {
            context.close(promise: nil)
            return
        }
        // The daemon ends the session: answer its close frame (RFC 6455 5.5.1)
        // with the same status code, then let it close the connection.
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
