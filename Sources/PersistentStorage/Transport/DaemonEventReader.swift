import PersistentStorageProtocol
import Logging
import NIOCore
import NIOWebSocket

/// What the daemon says on `/ws` after the upgrade, as a client reads it,
/// from bytes however they came: frames are read and checked, fragmented
/// messages joined, events decoded, and the rest of the protocol's rules
/// applied. ``BlockingSession`` feeds it what it reads from the socket.
struct DaemonEventReader {
    /// One thing the daemon said that its client must act on.
    enum Incoming: Equatable {
        /// A `storage` event.
        case status(StorageStatus)
        /// A ping frame: answer it with a pong carrying `payload` (RFC 6455 5.5.3);
        /// the daemon drops peers that do not answer its heartbeat.
        case ping(payload: ByteBuffer)
        /// The daemon's close frame, with its status code (empty if it gave
        /// none). Nothing after it is read.
        case close(code: ByteBuffer)
        /// The daemon broke the protocol: send a close frame with `closeCode`
        /// if there is one, and end the session. Nothing after it is read.
        case broken(closeCode: WebSocketErrorCode?, reason: String)
    }

    private var frames = WebSocketFrameReader(maximumSize: BlockingSession.maximumMessageSize)
    /// Servers may fragment a message (RFC 6455 5.4); the daemon's events are
    /// small, so the whole message is bounded too.
    private var messages = WebSocketMessageAssembler(
        maximumSize: BlockingSession.maximumMessageSize, maximumFragments: 64, minimumNonFinalFragmentSize: 1)
    private let logger: Logger
    /// Set after a close frame or a broken rule: what follows is not read.
    private(set) var stopped = false

    init(logger: Logger) {
        self.logger = logger
    }

    /// Whether the connection ending now would cut a frame in two.
    var endedMidFrame: Bool { frames.isInsideFrame && !stopped }

    /// Why a session ends when its connection does now.
    var connectionEndReason: RevocationReason {
        endedMidFrame ? .protocolViolation("the daemon closed the connection in the middle of a WebSocket frame") : .connectionClosed
    }

    mutating func append(_ bytes: ByteBuffer) {
        guard !stopped else { return }
        frames.append(bytes)
    }

    /// The next thing to act on in what has come, or nil until more comes.
    /// Events that need no action (`loop`, `pong`, unknown types, and ones
    /// that cannot be read, which the protocol says to log and skip) are
    /// logged and passed over.
    mutating func next() -> Incoming? {
        while !stopped {
            let frame: WebSocketFrame
            do {
                guard let next = try frames.nextFrame() else { return nil }
                frame = next
            } catch {
                return broken(closeCode: error.closeCode, "invalid WebSocket frame (\(error))")
            }
            switch frame.opcode {
            case .text, .continuation:
                switch messages.add(frame) {
                case .message(_, let text):
                    if let status = status(in: text) { return .status(status) }
                case .incomplete:
                    break
                case .failure(let code, let reason):
                    return broken(closeCode: code, "invalid WebSocket message (\(reason))")
                }
            case .ping:
                return .ping(payload: frame.unmaskedData)
            case .pong:
                break
            case .connectionClose:
                // Nothing may follow a close frame (RFC 6455 5.5.1).
                stopped = true
                var payload = frame.unmaskedData
                return .close(code: payload.readSlice(length: 2) ?? ByteBuffer())
            case .binary:
                return broken(closeCode: nil, "the daemon sent a binary frame")
            default:
                return broken(closeCode: nil, "the daemon sent a frame with opcode \(frame.opcode)")
            }
        }
        return nil
    }

    private mutating func broken(closeCode: WebSocketErrorCode?, _ reason: String) -> Incoming {
        stopped = true
        return .broken(closeCode: closeCode, reason: reason)
    }

    private func status(in text: ByteBuffer) -> StorageStatus? {
        let event: StorageEvent
        do {
            event = try StorageEvent(decoding: text.readableBytesView)
        } catch {
            // The protocol asks both ends to log and skip frames they cannot read.
            logger.warning("ignoring an unreadable event from the PST daemon: \(error)")
            return nil
        }
        switch event {
        case .storage(let status):
            logger.debug("PST storage event: clients=\(status.clients) write_allowed=\(status.data.writeAllowed)")
            return status
        case .loop, .pong:
            return nil
        case .ping, .unknown:
            logger.debug("ignoring a \(event.eventType) event from the PST daemon")
            return nil
        }
    }
}
