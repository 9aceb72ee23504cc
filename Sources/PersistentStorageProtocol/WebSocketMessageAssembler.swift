import NIOCore
import NIOWebSocket

/// Joins the frames of a fragmented WebSocket message (RFC 6455 5.4), for
/// both ends of `/ws`: a text or binary frame without FIN starts a message,
/// continuation frames add to it, the one with FIN ends it. Control frames
/// may come in between; they do not pass through here.
///
/// It replaces NIO's frame aggregator, a pipeline handler of its own, which
/// was one more handler to add per session (Documentation/Benchmarks.md),
/// and which handed the daemon joined messages without their masks, so that
/// a client's fragmented message looked unmasked.
package struct WebSocketMessageAssembler {
    package enum Outcome: Equatable {
        /// A whole message: its opcode (text or binary) and its unmasked bytes.
        case message(WebSocketOpcode, ByteBuffer)
        /// A fragment was kept; more must follow.
        case incomplete
        /// The frame breaks the rules: end the connection with `code`.
        case failure(WebSocketErrorCode, String)
    }

    private let maximumSize: Int
    private let maximumFragments: Int
    private let minimumNonFinalFragmentSize: Int
    private var opcode: WebSocketOpcode?
    private var joined = ByteBuffer()
    private var fragments = 0

    /// - Parameters:
    ///   - maximumSize: the largest message, in bytes.
    ///   - maximumFragments: the most frames one message may come in.
    ///   - minimumNonFinalFragmentSize: the smallest fragment but the last
    ///     (tiny fragments cost a frame each to process).
    package init(maximumSize: Int, maximumFragments: Int, minimumNonFinalFragmentSize: Int) {
        self.maximumSize = maximumSize
        self.maximumFragments = maximumFragments
        self.minimumNonFinalFragmentSize = minimumNonFinalFragmentSize
    }

    /// Takes a text, binary or continuation frame.
    package mutating func add(_ frame: WebSocketFrame) -> Outcome {
        switch frame.opcode {
        case .text, .binary:
            guard opcode == nil else {
                return failed(.protocolError, "a new message began before the previous one ended")
            }
            if frame.fin { return .message(frame.opcode, frame.unmaskedData) }
            opcode = frame.opcode
            joined.clear()
            fragments = 0
        case .continuation:
            guard opcode != nil else {
                return failed(.protocolError, "a continuation frame without a message to continue")
            }
        default:
            return failed(.protocolError, "a control frame cannot be part of a message")
        }
        fragments += 1
        guard frame.fin || frame.length >= minimumNonFinalFragmentSize else {
            return failed(.protocolError, "a fragment smaller than \(minimumNonFinalFragmentSize) bytes")
        }
        guard fragments <= maximumFragments else {
            return failed(.protocolError, "a message in more than \(maximumFragments) fragments")
        }
        guard joined.readableBytes + frame.length <= maximumSize else {
            return failed(.messageTooLarge, "a message larger than \(maximumSize) bytes")
        }
        var data = frame.unmaskedData
        joined.writeBuffer(&data)
        guard frame.fin, let messageOpcode = opcode else { return .incomplete }
        let message = joined
        opcode = nil
        joined = ByteBuffer()
        return .message(messageOpcode, message)
    }

    private mutating func failed(_ code: WebSocketErrorCode, _ reason: String) -> Outcome {
        opcode = nil
        joined = ByteBuffer()
        return .failure(code, reason)
    }
}
