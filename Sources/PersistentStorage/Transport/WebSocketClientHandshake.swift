import PersistentStorageProtocol
import NIOCore

/// The client half of the WebSocket opening handshake of `GET /ws`
/// (RFC 6455 4.1), written by hand.
///
/// NIO's HTTP client upgrade (an HTTP encoder, llhttp's response decoder and
/// an upgrade handler, all added and then removed again for every session)
/// was the largest single cost of opening a session in the client
/// (Documentation/Benchmarks.md). The request never changes but for its key,
/// and the only answer that matters is `101`, so this handler writes the
/// request once the channel is active, reads the answer's head, checks it,
/// and makes way for the frame handlers `installFrameHandlers` adds. Bytes
/// that arrive with the head (the daemon may send its first events in the
/// same segment) are passed on to them.
final class WebSocketClientHandshake: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// An answer's head larger than this is not the daemon's.
    static let maximumHeadSize = 16 * 1024

    /// The upgrade request of one session, and the accept value its answer
    /// must carry. Made before connecting, so that the request can be sent as
    /// soon as the socket is connected (see ``DaemonEndpoint/connect(sending:_:)``).
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

    private let unsentRequest: ByteBuffer
    private let request: Request
    private let installFrameHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void
    private let upgraded: EventLoopPromise<Void>
    private let timeout: Duration
    private var deadline: Scheduled<Void>?
    private var received: ByteBuffer?
    private var done = false

    /// - Parameters:
    ///   - unsentRequest: what of `request` is still to be sent; the caller
    ///     may have sent the rest on the socket already.
    ///   - upgraded: succeeds once the frame handlers are in place, fails with a
    ///     ``PersistentStorageError`` if the daemon did not switch protocols
    ///     within `timeout`.
    init(
        request: Request,
        unsentRequest: ByteBuffer,
        timeout: Duration,
        upgraded: EventLoopPromise<Void>,
        installFrameHandlers: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        self.request = request
        self.unsentRequest = unsentRequest
        self.upgraded = upgraded
        self.timeout = timeout
        self.installFrameHandlers = installFrameHandlers
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { sendRequest(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        sendRequest(context: context)
        context.fireChannelActive()
    }

    private var requestSent = false

    private func sendRequest(context: ChannelHandlerContext) {
        guard !requestSent else { return }
        requestSent = true
        // A timer on the event loop rather than a racing task: it costs no
        // task of its own, and it is cancelled in the same place it fires.
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let timeout = timeout
        deadline = context.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
            let (handler, context) = loopBound.value
            guard !handler.done else { return }
            handler.fail(.timedOut(after: timeout, waitingFor: "the WebSocket upgrade of GET /ws"), context: context)
        }
        if unsentRequest.readableBytes > 0 { context.writeAndFlush(NIOAny(unsentRequest), promise: nil) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        var bytes = unwrapInboundIn(data)
        if received == nil {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        guard let buffer = received else { return }
        guard let headLength = HTTPHeadScanning.headLength(in: buffer) else {
            if buffer.readableBytes > Self.maximumHeadSize {
                fail(.protocolViolation("the daemon's answer to GET /ws has no end of head within \(Self.maximumHeadSize) bytes"), context: context)
            }
            return
        }
        received = nil
        let problem = buffer.withUnsafeReadableBytes { bytes -> PersistentStorageError? in
            self.request.problem(withAnswerHead: UnsafeBufferPointer(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[..<headLength]))
        }
        var rest = buffer
        rest.moveReaderIndex(forwardBy: headLength)
        if let problem {
            fail(problem, context: context)
            return
        }
        done = true
        deadline?.cancel()
        do {
            try installFrameHandlers(context.pipeline.syncOperations)
        } catch {
            fail(.protocolViolation("cannot set up the WebSocket: \(error)"), context: context)
            return
        }
        upgraded.succeed()
        // The frame handlers follow this one; hand them what came with the
        // head, then get out of the way.
        if rest.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(rest)) }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        if !done {
            done = true
            upgraded.fail(PersistentStorageError.protocolViolation("the daemon closed the connection instead of answering GET /ws"))
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !done {
            done = true
            upgraded.fail(error)
            context.close(promise: nil)
        } else {
            context.fireErrorCaught(error)
        }
    }

    private func fail(_ error: PersistentStorageError, context: ChannelHandlerContext) {
        done = true
        deadline?.cancel()
        upgraded.fail(error)
        context.close(promise: nil)
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
        var position = 0
        var firstLine: Range<Int>?
        repeat {
            firstLine = HTTPHeadScanning.nextLine(in: head, from: &position)
        } while firstLine?.isEmpty == true
        guard let statusLine = firstLine else { return .malformed("the daemon's answer to GET /ws is empty") }
        let text = { (range: Range<Int>) in String(decoding: head[range].prefix(80), as: UTF8.self) }
        // "HTTP/1.x", spaces, the code, and the reason after it.
        let lineEnd = statusLine.upperBound
        let versionEnd = head[statusLine].firstIndex(of: UInt8(ascii: " ")) ?? lineEnd
        let codeStart = head[versionEnd..<lineEnd].firstIndex { $0 != UInt8(ascii: " ") } ?? lineEnd
        let codeEnd = head[codeStart..<lineEnd].firstIndex(of: UInt8(ascii: " ")) ?? lineEnd
        guard codeStart < codeEnd, head[statusLine.lowerBound..<versionEnd].starts(with: "HTTP/1.".utf8) else {
            return .malformed("the daemon's answer to GET /ws is not HTTP: \(text(statusLine))")
        }
        guard head[codeStart..<codeEnd].elementsEqual("101".utf8) else {
            guard let statusCode = Int(text(codeStart..<codeEnd)) else {
                return .malformed("the daemon's answer to GET /ws has no status code: \(text(statusLine))")
            }
            let reason = codeEnd < lineEnd ? text((codeEnd + 1)..<lineEnd) : ""
            return .refused(statusCode: statusCode, reason: reason)
        }
        var upgrade = false
        var connection = false
        var acceptIsRight: Bool?
        while let line = HTTPHeadScanning.nextLine(in: head, from: &position) {
            guard let colon = head[line].firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = head[line.lowerBound..<colon]
            let value = HTTPHeadScanning.trimmed(colon + 1..<line.upperBound, in: head)
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
