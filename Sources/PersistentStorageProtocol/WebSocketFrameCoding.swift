import NIOCore
import NIOWebSocket

/// WebSocket framing (RFC 6455 5.2) for both ends of `/ws`, done by one
/// handler of ours instead of NIO's frame decoder and encoder.
///
/// Those two were two more handlers in every session's pipeline, with a
/// `ByteToMessageHandler` around the decoder; adding, running and tearing
/// them down was a twentieth of the client's CPU time per session
/// (Documentation/Benchmarks.md). Reading a frame and writing one take little
/// code, and the rules about messages are the handlers' own
/// (``WebSocketMessageAssembler``).
package enum WebSocketFrameCoding {
    /// Why the bytes at the front of a connection are not a frame we accept.
    package enum ReadFailure: Error, Equatable, CustomStringConvertible {
        /// The frame is larger than the bound (answered with 1009).
        case frameTooLarge(limit: Int)
        /// A control frame without FIN (answered with 1002, as are the others).
        case fragmentedControlFrame
        /// A control frame with more than 125 bytes of payload.
        case controlFrameTooLong

        package var description: String {
            switch self {
            case .frameTooLarge(let limit): "a frame larger than \(limit) bytes"
            case .fragmentedControlFrame: "a fragmented control frame"
            case .controlFrameTooLong: "a control frame longer than 125 bytes"
            }
        }

        package var closeCode: WebSocketErrorCode {
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
    package static func readFrame(from buffer: inout ByteBuffer, maximumSize: Int) throws(ReadFailure) -> WebSocketFrame? {
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

    /// Appends `frame` to `buffer`, header and payload together: masked with
    /// `key`, as every frame a client sends must be (RFC 6455 5.3), or
    /// unmasked (`nil`), as a server sends them. `frame.data` is taken as it
    /// is, unmasked; the frame's own `maskKey` is not used.
    package static func write(_ frame: WebSocketFrame, maskedWith key: WebSocketMaskingKey?, to buffer: inout ByteBuffer) {
        var first = UInt8(webSocketOpcode: frame.opcode)
        if frame.fin { first |= 0x80 }
        if frame.rsv1 { first |= 0x40 }
        if frame.rsv2 { first |= 0x20 }
        if frame.rsv3 { first |= 0x10 }
        buffer.writeInteger(first)
        let maskBit: UInt8 = key == nil ? 0 : 0x80
        let length = frame.data.readableBytes
        switch length {
        case ..<126:
            buffer.writeInteger(maskBit | UInt8(length))
        case ...Int(UInt16.max):
            buffer.writeInteger(maskBit | 126)
            buffer.writeInteger(UInt16(length))
        default:
            buffer.writeInteger(maskBit | 127)
            buffer.writeInteger(UInt64(length))
        }
        var payload = frame.data
        if let key {
            buffer.writeBytes(key)
            payload.webSocketMask(key)
        }
        buffer.writeBuffer(&payload)
    }
}

/// The frames in a connection's bytes as they arrive, for one connection:
/// what ends in the middle of a frame is kept until the rest comes.
///
/// Frames are taken one call at a time, so that a handler may close its
/// channel (and be called again, for `channelInactive`) while it handles one.
package struct WebSocketFrameReader {
    private let maximumSize: Int
    /// What has come and is not yet a frame taken; when it is the start of a
    /// frame, at most that frame's worth, since
    /// ``WebSocketFrameCoding/readFrame(from:maximumSize:)`` fails a larger
    /// one by its header.
    private var buffered: ByteBuffer?

    package init(maximumSize: Int) {
        self.maximumSize = maximumSize
    }

    /// Whether part of a frame is waiting for the rest of it.
    package var isInsideFrame: Bool { buffered != nil }

    package mutating func append(_ bytes: ByteBuffer) {
        if buffered == nil {
            buffered = bytes
        } else {
            var bytes = bytes
            buffered!.writeBuffer(&bytes)
        }
    }

    /// The next whole frame of what has come, or nil until more comes.
    package mutating func nextFrame() throws(WebSocketFrameCoding.ReadFailure) -> WebSocketFrame? {
        // Taken out while it is read, so that it is not copied on write.
        guard var bytes = buffered.take() else { return nil }
        let frame = try WebSocketFrameCoding.readFrame(from: &bytes, maximumSize: maximumSize)
        if bytes.readableBytes > 0 { buffered = bytes }
        return frame
    }
}
