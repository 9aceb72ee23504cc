import NIOCore
import NIOWebSocket
import PersistentStorageProtocol

/// Frames in and out of a session: bytes to ``WebSocketFrame``s for the
/// ``WebSocketSessionHandler``, and its frames to bytes, header and payload
/// in one buffer, with the package's own `WebSocketFrameCoding` (the
/// client frames with it too).
///
/// One handler in place of NIO's `WebSocketFrameEncoder` and a
/// `ByteToMessageHandler` around its `WebSocketFrameDecoder`, which cost a
/// handler more and their machinery on every session (Documentation/Benchmarks.md).
/// A frame it cannot accept is reported as NIO's decoder reports it (a
/// `NIOWebSocketError` through `errorCaught`), and the session handler
/// answers it with the close code RFC 6455 names; nothing after it is read.
final class WebSocketServerFraming: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = WebSocketFrame
    typealias OutboundIn = WebSocketFrame
    typealias OutboundOut = ByteBuffer

    private var frames: WebSocketFrameReader
    private var failed = false

    init(maximumFrameSize: Int) {
        frames = WebSocketFrameReader(maximumSize: maximumFrameSize)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        frames.append(unwrapInboundIn(data))
        do {
            while let frame = try frames.nextFrame() {
                context.fireChannelRead(wrapInboundOut(frame))
            }
        } catch {
            failed = true
            context.fireErrorCaught(Self.nioError(for: error))
        }
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
