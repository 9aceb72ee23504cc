import NIOCore
import NIOWebSocket
import PersistentStorage

/// Frames in and out of a session that came through ``UpgradeFastPath``:
/// bytes to ``WebSocketFrame``s for the ``WebSocketSessionHandler``, and its
/// frames to bytes, header and payload in one buffer.
///
/// One handler in place of NIO's `WebSocketFrameEncoder` and a
/// `ByteToMessageHandler` around its `WebSocketFrameDecoder`, which cost a
/// handler more and their machinery on every session (Documentation/Benchmarks.md).
/// A frame it cannot accept is reported the way NIO's decoder reports it
/// (a `NIOWebSocketError` through `errorCaught`), so that the session handler
/// answers it with the same close code on either path; nothing after it is read.
final class WebSocketServerFraming: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private let maximumFrameSize: Int
    /// The start of a frame whose rest has not arrived yet.
    private var unread: ByteBuffer?
    private var failed = false

    init(maximumFrameSize: Int) {
        self.maximumFrameSize = maximumFrameSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        var bytes = unwrapInboundIn(data)
        if var earlier = unread {
            unread = nil
            earlier.writeBuffer(&bytes)
            bytes = earlier
        }
        do {
            while !failed, let frame = try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: maximumFrameSize) {
                context.fireChannelRead(wrapInboundOut(frame))
            }
        } catch {
            failed = true
            context.fireErrorCaught(Self.nioError(for: error))
            return
        }
        // At most one frame's worth: readFrame fails a larger one by its header.
        if bytes.readableBytes > 0 { unread = bytes }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let frame = unwrapOutboundIn(data)
        var bytes = context.channel.allocator.buffer(capacity: 10 + frame.data.readableBytes)
        WebSocketFrameCoding.write(frame, maskedWith: nil, to: &bytes)
        context.write(wrapOutboundOut(bytes), promise: promise)
    }

    private static func nioError(for failure: WebSocketFrameCoding.ReadFailure) -> NIOWebSocketError {
        switch failure {
        case .frameTooLarge: .invalidFrameLength
        case .fragmentedControlFrame: .fragmentedControlFrame
        case .controlFrameTooLong: .multiByteControlFrameLength
        }
    }
}
