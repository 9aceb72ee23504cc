import Logging
import NIOCore
import NIOWebSocket
import PersistentStorageProtocol
import Synchronization

/// One session: an upgraded `/ws` connection.
///
/// It sends `loop` at once, registers with the controller (which sends the
/// `storage` events) and the ``Heartbeat``, and answers `ping` events and
/// WebSocket pings.
final class WebSocketSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame

    private let controller: RemountController
    private let peer: PeerCredentials
    private let heartbeat: Heartbeat?
    private let log: PeerLogger
    /// Messages may come in fragments; they are joined here.
    private var messages: WebSocketMessageAssembler

    init(controller: RemountController, peer: PeerCredentials, heartbeat: Heartbeat?, maximumMessageSize: Int, log: PeerLogger) {
        self.controller = controller
        self.peer = peer
        self.heartbeat = heartbeat
        self.log = log
        messages = WebSocketMessageAssembler(maximumSize: maximumMessageSize, maximumFragments: 256, minimumNonFinalFragmentSize: 0)
    }

    func handlerAdded(context: ChannelHandlerContext) {
        // Written before the session is registered, so it always comes first.
        context.writeAndFlush(wrapOutboundOut(.text(StorageEvent.loop.encodedText(), allocator: context.channel.allocator)), promise: nil)
        heartbeat?.add(context.channel, peer: peer)
        runSession(on: context.channel)
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        heartbeat?.remove(context.channel)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = unwrapInboundIn(data)
        // RFC 6455 5.1-5.2: a client must mask every frame, no extension was
        // negotiated (so no RSV bit), and reserved opcodes mean nothing. NIO's
        // decoder passes all three on; like aiohttp, end the session.
        if frame.maskKey == nil || frame.rsv1 || frame.rsv2 || frame.rsv3 || !Self.knownOpcodes.contains(frame.opcode) {
            log.info("a malformed frame (unmasked, RSV bits or reserved opcode) ends the session")
            controller.metrics.peerDropped(.protocolError)
            close(context: context, code: .protocolError)
            return
        }
        switch frame.opcode {
        case .binary:
            log.info("a binary frame ends the session")
            controller.metrics.peerDropped(.protocolError)
            close(context: context, code: .unacceptableData)
        case .text, .continuation:
            switch messages.add(frame) {
            case .message(_, let text):
                receiveEvent(text, context: context)
            case .incomplete:
                break
            case .failure(let code, let reason):
                log.info("\(reason) ends the session")
                controller.metrics.peerDropped(.protocolError)
                close(context: context, code: code)
            }
        case .connectionClose:
            // Echo a valid code, as RFC 6455 asks, or fail a broken close; then hang up.
            close(context: context, code: WebSocketCloseAnswer.code(answering: frame.unmaskedData))
        case .ping:
            context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)), promise: nil)
        case .pong:
            heartbeat?.pongReceived(on: context.channel)
        default:
            break  // Reserved opcodes ended the session above.
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        log.info("session error: \(error)")
        // A frame the decoder rejects gets the close code RFC 6455 7.4.1
        // names for it before the connection goes; anything else just closes it.
        if let error = error as? NIOWebSocketError {
            controller.metrics.peerDropped(.protocolError)
            close(context: context, code: error == .invalidFrameLength ? .messageTooLarge : .protocolError)
        } else {
            context.close(promise: nil)
        }
    }

    private static let knownOpcodes: [WebSocketOpcode] = [.continuation, .text, .binary, .connectionClose, .ping, .pong]

    private func receiveEvent(_ bytes: ByteBuffer, context: ChannelHandlerContext) {
        let event: StorageEvent
        do {
            event = try StorageEvent(decoding: bytes.readableBytesView)
        } catch {
            log.info("ignoring a frame: \(error)")
            return
        }
        switch event {
        case .ping:
            context.writeAndFlush(wrapOutboundOut(.text(StorageEvent.pong.encodedText(), allocator: context.channel.allocator)), promise: nil)
        default:
            log.info("ignoring an event of type '\(event.eventType)'")
        }
    }

    private func close(context: ChannelHandlerContext, code: WebSocketErrorCode) {
        var data = context.channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    // MARK: - Session lifetime

    /// Registers with the controller, then unregisters when the connection
    /// closes, in that order even when the peer hangs up at once.
    private func runSession(on channel: any Channel) {
        let log = log
        let connection = ChannelSessionConnection(channel: channel)
        let peer = SessionPeer(pid: self.peer.pid, uid: self.peer.uid, command: self.peer.command)
        controller.onController { controller in
            guard let id = controller.sessionDidOpen(connection, peer: peer) else {
                log.warning("refused a session: too many sessions, or shutting down")
                controller.metrics.sessionRefused(.unavailable)
                connection.close(code: .policyViolation)
                return
            }
            log.info("session \(id) opened")
            channel.closeFuture.whenComplete { _ in
                controller.onController { controller in
                    controller.sessionDidClose(id)
                    log.info("session \(id) closed")
                }
            }
        }
    }
}

/// The controller's view of a session's connection.
struct ChannelSessionConnection: SessionConnection {
    let channel: any Channel

    /// The last event encoded: the controller sends one status to every
    /// session in turn, and encoding is the costliest step of a send.
    private static let lastEncoded = Mutex<(status: StorageStatus, text: String)?>(nil)

    func send(_ status: StorageStatus) {
        let text = Self.lastEncoded.withLock { last in
            if let last, last.status == status { return last.text }
            let text = StorageEvent.storage(status).encodedText()
            last = (status, text)
            return text
        }
        channel.writeAndFlush(WebSocketFrame.text(text, allocator: channel.allocator), promise: nil)
    }

    func close() {
        close(code: .goingAway)
    }

    func close(code: WebSocketErrorCode) {
        var data = channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: code)
        let channel = channel
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
            .whenComplete { _ in channel.close(promise: nil) }
    }
}

extension WebSocketFrame {
    static func text(_ text: String, allocator: ByteBufferAllocator) -> WebSocketFrame {
        WebSocketFrame(fin: true, opcode: .text, data: allocator.buffer(string: text))
    }
}
