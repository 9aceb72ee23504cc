import NIOCore
import NIOWebSocket

extension SessionChannel {
    /// How long to wait for the daemon's half of the close handshake.
    static let closeHandshakeTimeout = TimeAmount.seconds(1)

    /// Ends a session with the WebSocket close handshake (RFC 6455 7.1.2).
    ///
    /// Waiting for the daemon to answer and close the connection means the
    /// daemon has seen the session end when this returns; a daemon that never
    /// answers is cut off after ``closeHandshakeTimeout``.
    static func close(_ channel: any Channel) async {
        guard channel.isActive else {
            try? await channel.closeFuture.get()
            return
        }
        var code = ByteBuffer()
        code.write(webSocketErrorCode: .normalClosure)
        let frame = WebSocketFrame(fin: true, opcode: .connectionClose, data: code)
        channel.writeAndFlush(frame, promise: nil)
        let forcedClose = channel.eventLoop.scheduleTask(in: closeHandshakeTimeout) {
            channel.close(promise: nil)
        }
        try? await channel.closeFuture.get()
        forcedClose.cancel()
    }
}
