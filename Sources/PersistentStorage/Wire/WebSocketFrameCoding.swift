import NIOCore
import NIOWebSocket

/// The client's side of WebSocket framing (RFC 6455 5.2), done inside the
/// session's one event handler instead of by NIO's frame decoder and encoder.
///
/// Those two were two more handlers in every session's pipeline, with a
/// `ByteToMessageHandler` around the decoder; adding, running and tearing
/// them down was a twentieth of the client's CPU time per session
/// (Documentation/Benchmarks.md). A client only reads the daemon's frames and
/// writes small masked control frames, which takes little code.
enum WebSocketFrameCoding {
    /// Why the bytes at the front of a connection are not a frame we accept.
    enum ReadFailure: Error, Equatable, CustomStringConvertible {
        /// The frame is larger than the bound (answered with 1009).
        case frameTooLarge(limit: Int)
        /// A control frame without FIN (answered with 1002, as are the others).
        case fragmentedControlFrame
        /// A control frame with more than 125 bytes of payload.
        case controlFrameTooLong

        var description: String {
            switch self {
            case .frameTooLarge(let limit): "a frame larger than \(limit) bytes"
            case .fragmentedControlFrame: "a fragmented control frame"
            case .controlFrameTooLong: "a control frame longer than 125 bytes"
            }
        }

        var closeCode: WebSocketErrorCode {
            if case .frameTooLarge = self { .messageTooLarge } else { .protocolError }
        }
    }

    /// The whole frame at the front of `buffer`, which is then consumed; nil,
    /// with nothing consumed, while part of it has yet to arrive.
    ///
    /// A frame's header is checked as soon as it is complete, so that a frame
    /// over `maximumSize` fails before its payload is waited for (or kept).
    /// A masked frame is accepted and comes with its mask, as NIO's decoder
    /// did; ``WebSocketFrame/unmaskedData`` reads it either way.
    static func readFrame(from buffer: inout ByteBuffer, maximumSize: Int) throws(ReadFailure) -> WebSocketFrame? {
        var rest = buffer
        guard let first = rest.readInteger(as: UInt8.self), let second = rest.readInteger(as: UInt8.self) else { return nil }
        let length: UInt64
        switch second & 0x7F {
        case 126:
            guard let word = rest.readInteger(as: UInt16.self) else { return nil }
            length = UInt64(word)
        case 127:
            guard let word = rest.readInteger(as: UInt64.self) else { return nil }
            length = word
        case let short:
            length = UInt64(short)
        }
        guard length <= UInt64(maximumSize) else { throw .frameTooLarge(limit: maximumSize) }
        let opcodeBits = first & 0x0F
        if opcodeBits & 0x08 != 0 {
            guard first & 0x80 != 0 else { throw .fragmentedControlFrame }
            guard length <= 125 else { throw .controlFrameTooLong }
        }
        var maskKey: WebSocketMaskingKey?
        if second & 0x80 != 0 {
            guard let key = rest.readBytes(length: 4) else { return nil }
            maskKey = WebSocketMaskingKey(key)
        }
        guard let payload = rest.readSlice(length: Int(length)) else { return nil }
        buffer = rest
        return WebSocketFrame(
            fin: first & 0x80 != 0, rsv1: first & 0x40 != 0, rsv2: first & 0x20 != 0, rsv3: first & 0x10 != 0,
            // Four bits: every value is an opcode, if not a defined one.
            opcode: WebSocketOpcode(encodedWebSocketOpcode: opcodeBits)!,
            maskKey: maskKey, data: payload)
    }

    /// Appends `frame` to `buffer` masked with `key`, as every frame a client
    /// sends must be (RFC 6455 5.3). `frame.data` is taken as it is, unmasked;
    /// the frame's own `maskKey` is not used.
    static func write(_ frame: WebSocketFrame, maskedWith key: WebSocketMaskingKey, to buffer: inout ByteBuffer) {
        var first = UInt8(webSocketOpcode: frame.opcode)
        if frame.fin { first |= 0x80 }
        if frame.rsv1 { first |= 0x40 }
        if frame.rsv2 { first |= 0x20 }
        if frame.rsv3 { first |= 0x10 }
        buffer.writeInteger(first)
        let length = frame.data.readableBytes
        switch length {
        case ..<126:
            buffer.writeInteger(0x80 | UInt8(length))
        case ...Int(UInt16.max):
            buffer.writeInteger(UInt8(0x80 | 126))
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(UInt8(0x80 | 127))
            buffer.writeInteger(UInt64(length))
        }
        buffer.writeBytes(key)
        var payload = frame.data
        payload.webSocketMask(key)
        buffer.writeBuffer(&payload)
    }
}
