import PersistentStorageProtocol
import Glibc
import NIOCore

/// The client half of the WebSocket opening handshake of `GET /ws`
/// (RFC 6455 4.1), written by hand: the request never changes but for its
/// key, and the only answer that matters is `101`, so the client sends the
/// request, reads the answer's head, and checks it itself rather than
/// building an HTTP client for it (Documentation/Benchmarks.md).
enum WebSocketClientHandshake {
    /// An answer's head larger than this is not the daemon's.
    static let maximumHeadSize = 16 * 1024

    /// The upgrade request of one session, and the accept value its answer
    /// must carry.
    struct Request: Sendable {
        let bytes: ByteBuffer
        let expectedAccept: String
        /// The daemon's socket, to name in an error.
        let socketPath: String

        init(path: String, socketPath: String) {
            self.socketPath = socketPath
            // Two draws of 64 bits: every draw is a getrandom(2) call.
            var generator = SystemRandomNumberGenerator()
            var keyBytes: [UInt8] = []
            keyBytes.reserveCapacity(16)
            for _ in 0..<2 {
                let word: UInt64 = generator.next()
                for shift in stride(from: 0, to: 64, by: 8) { keyBytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
            }
            let key = Base64.encoded(keyBytes)
            expectedAccept = WebSocketAccept.value(forKey: key)
            bytes = ByteBuffer(string: """
                GET \(path) HTTP/1.1\r
                Host: localhost\r
                User-Agent: swift-pst\r
                Upgrade: websocket\r
                Connection: Upgrade\r
                Sec-WebSocket-Key: \(key)\r
                Sec-WebSocket-Version: 13\r
                \r

                """)
        }
    }

    /// Reads the answer to `request` up to the end of its head, checks it, and
    /// returns what came after the head (the daemon may send its first events
    /// in the same segment); nil if `wakeUp` was woken.
    static func readAnswer(
        to request: Request, from descriptor: CInt, wakeUp: WakeUp?,
        until deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(PersistentStorageError) -> ByteBuffer? {
        var received = ByteBuffer()
        while true {
            if let headLength = HTTPHeadScanning.headLength(in: received) {
                let problem = received.withUnsafeReadableBytes { bytes in
                    request.problem(withAnswerHead: UnsafeBufferPointer(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[..<headLength]))
                }
                if let problem { throw problem }
                received.moveReaderIndex(forwardBy: headLength)
                return received
            }
            guard received.readableBytes <= maximumHeadSize else {
                throw .protocolViolation("the daemon's answer to GET /ws has no end of head within \(maximumHeadSize) bytes")
            }
            switch DaemonConnection.wait(for: Int16(POLLIN), on: descriptor, wakeUp: wakeUp, until: deadline) {
            case .ready: break
            case .timedOut: throw .timedOut(after: timeout, waitingFor: "the WebSocket upgrade of GET /ws")
            case .interrupted: return nil
            }
            switch DaemonConnection.read(from: descriptor) {
            case .bytes(var bytes):
                received.writeBuffer(&bytes)
            case .wouldBlock:
                continue
            case .endOfStream:
                throw .protocolViolation("the daemon closed the connection instead of answering GET /ws")
            }
        }
    }
}

extension WebSocketClientHandshake.Request {
    /// Why `head` is not an acceptance of the upgrade, or nil if it is: a
    /// refusal by status (``PersistentStorageError/refusal(statusCode:reason:socketPath:request:)``),
    /// or a ``PersistentStorageError/protocolViolation(_:)``.
    ///
    /// Read as bytes, without a `String` until there is something to report:
    /// splitting the head into `Substring` lines was a twentieth of the
    /// client's CPU time per session, and an array of line slices was a
    /// generic type for a fresh process to instantiate
    /// (Documentation/Benchmarks.md).
    func problem(withAnswerHead head: UnsafeBufferPointer<UInt8>) -> PersistentStorageError? {
        malformation(ofAnswerHead: head).map { problem in
            switch problem {
            case .refused(let statusCode, let reason):
                .refusal(statusCode: statusCode, reason: reason, socketPath: socketPath, request: "GET /ws")
            case .malformed(let detail):
                .protocolViolation(detail)
            }
        }
    }

    private enum AnswerProblem {
        /// A well-formed answer with another status than 101.
        case refused(statusCode: Int, reason: String)
        case malformed(String)
    }

    private func malformation(ofAnswerHead head: UnsafeBufferPointer<UInt8>) -> AnswerProblem? {
        let answer: ResponseHead
        do {
            answer = try ResponseHead(parsing: head)
        } catch {
            return .malformed(error.message(about: "the daemon's answer to GET /ws"))
        }
        guard answer.statusCode == 101 else {
            return .refused(statusCode: answer.statusCode, reason: answer.reason)
        }
        var upgrade = false
        var connection = false
        var acceptIsRight: Bool?
        answer.forEachField(in: head) { name, value in
            if HTTPHeadScanning.equalsIgnoringCase(name, "upgrade") {
                upgrade = upgrade || HTTPHeadScanning.equalsIgnoringCase(head[value], "websocket")
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "connection") {
                connection = connection || HTTPHeadScanning.containsToken("upgrade", in: value, of: head)
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "sec-websocket-accept") {
                acceptIsRight = head[value].elementsEqual(expectedAccept.utf8)
            }
        }
        guard upgrade, connection else {
            return .malformed("the daemon's 101 answer to GET /ws lacks Upgrade: websocket or Connection: Upgrade")
        }
        guard acceptIsRight == true else {
            return .malformed("the daemon's 101 answer to GET /ws has a wrong Sec-WebSocket-Accept")
        }
        return nil
    }
}
