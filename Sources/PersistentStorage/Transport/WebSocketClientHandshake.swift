#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
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

        init(path: String) {
            // Two draws of 64 bits: every draw is a getrandom(2) call.
            var generator = SystemRandomNumberGenerator()
            var keyBytes: [UInt8] = []
            keyBytes.reserveCapacity(16)
            for _ in 0..<2 {
                let word: UInt64 = generator.next()
                for shift in stride(from: 0, to: 64, by: 8) { keyBytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
            }
            let key = Data(keyBytes).base64EncodedString()
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
    private let expectedAccept: String
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
        self.expectedAccept = request.expectedAccept
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
        let problem = buffer.withUnsafeReadableBytes { bytes -> String? in
            self.problem(withHead: UnsafeBufferPointer(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[..<headLength]))
        }
        var rest = buffer
        rest.moveReaderIndex(forwardBy: headLength)
        if let problem {
            fail(.protocolViolation(problem), context: context)
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

    /// Why `head` is not an acceptance of the upgrade, or nil if it is.
    ///
    /// Read as bytes, without a `String` until there is something to report:
    /// splitting the head into `Substring` lines was a twentieth of the
    /// client's CPU time per session (Documentation/Benchmarks.md).
    private func problem(withHead head: UnsafeBufferPointer<UInt8>) -> String? {
        var lines = Self.lines(of: head)[...]
        while let first = lines.first, first.isEmpty { lines = lines.dropFirst() }
        guard let statusLine = lines.popFirst() else { return "the daemon's answer to GET /ws is empty" }
        let text = { (bytes: Slice<UnsafeBufferPointer<UInt8>>) in String(decoding: bytes.prefix(80), as: UTF8.self) }
        // "HTTP/1.x", spaces, the code, and the reason after it.
        let versionEnd = statusLine.firstIndex(of: UInt8(ascii: " ")) ?? statusLine.endIndex
        let codeStart = statusLine[versionEnd...].firstIndex { $0 != UInt8(ascii: " ") } ?? statusLine.endIndex
        let codeEnd = statusLine[codeStart...].firstIndex(of: UInt8(ascii: " ")) ?? statusLine.endIndex
        guard codeStart < codeEnd, statusLine[..<versionEnd].starts(with: "HTTP/1.".utf8) else {
            return "the daemon's answer to GET /ws is not HTTP: \(text(statusLine))"
        }
        guard statusLine[codeStart..<codeEnd].elementsEqual("101".utf8) else {
            return "the daemon did not accept the WebSocket upgrade of GET /ws: \(text(statusLine[(versionEnd + 1)...]))"
        }
        var upgrade = false
        var connection = false
        var acceptIsRight: Bool?
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { continue }
            let name = line[..<colon]
            let value = Self.trimmed(line[(colon + 1)...])
            if HTTPHeadScanning.equalsIgnoringCase(name, "upgrade") {
                upgrade = upgrade || HTTPHeadScanning.equalsIgnoringCase(value, "websocket")
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "connection") {
                connection = connection || value.split(separator: UInt8(ascii: ",")).contains {
                    HTTPHeadScanning.equalsIgnoringCase(Self.trimmed($0), "upgrade")
                }
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "sec-websocket-accept") {
                acceptIsRight = value.elementsEqual(expectedAccept.utf8)
            }
        }
        guard upgrade, connection else {
            return "the daemon's 101 answer to GET /ws lacks Upgrade: websocket or Connection: Upgrade"
        }
        guard acceptIsRight == true else {
            return "the daemon's 101 answer to GET /ws has a wrong Sec-WebSocket-Accept"
        }
        return nil
    }
}

extension WebSocketClientHandshake {
    /// The lines of a head, split at LF, each without its CR. Runs of bare
    /// LFs yield no lines; a line that was only CR comes out empty.
    fileprivate static func lines(of head: UnsafeBufferPointer<UInt8>) -> [Slice<UnsafeBufferPointer<UInt8>>] {
        head.split(separator: UInt8(ascii: "\n")).map { line in
            line.last == UInt8(ascii: "\r") ? line.dropLast() : line
        }
    }

    /// Without the spaces and tabs HTTP allows around a header value.
    fileprivate static func trimmed(_ text: Slice<UnsafeBufferPointer<UInt8>>) -> Slice<UnsafeBufferPointer<UInt8>> {
        let isBlank = { (byte: UInt8) in byte == UInt8(ascii: " ") || byte == UInt8(ascii: "\t") }
        guard let first = text.firstIndex(where: { !isBlank($0) }), let last = text.lastIndex(where: { !isBlank($0) }) else {
            return text[text.startIndex..<text.startIndex]
        }
        return text[first...last]
    }
}
