import Logging
import NIOCore
import PersistentStorageProtocol

/// The first handler on every connection: it takes the common request, a
/// well-formed WebSocket upgrade of `GET /ws` that the daemon would accept,
/// straight to a session, and hands anything else, unread, to the HTTP
/// pipeline (NIO's parser, upgrader and our routes), which answers it
/// as any other request. It also keeps the request deadline
/// (`--http-timeout`, counted from the accept): for a session until the
/// upgrade, and for HTTP, passing bytes through, until NIO's upgrader
/// removes it or the plain answer closes the connection.
///
/// One deadline for the whole request, not an idle timer: an idle timer
/// restarts with every byte, so a client dripping a request head one byte
/// at a time would hold its connection (and a descriptor) forever.
///
/// Why: building the HTTP pipeline for every connection (seven handlers)
/// and tearing it down again at the upgrade was most of the daemon's work
/// per session (Documentation/Benchmarks.md). A session's request is
/// always the same few lines; when anything about it is unusual (another
/// path or method, a query, a body, a header folded over lines, a second
/// key, a head larger than the limit), the HTTP pipeline decides.
final class UpgradeFastPath: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    /// What the server plugs in: whether a session would be accepted now, and
    /// the two ways on.
    struct Routes {
        /// Peer allowed and room for a session: the upgrader's own check.
        var admitsSession: () -> Bool
        /// Adds the WebSocket and session handlers at the end of the pipeline.
        var addSessionHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void
        /// Adds the HTTP handlers at the end of the pipeline.
        var addHTTPHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void
    }

    private let routes: Routes
    private let maximumHeadSize: Int
    private let timeout: TimeAmount
    private let logger: Logger
    private let metrics: DaemonMetrics?
    private var timer: Scheduled<Void>?
    private var received: ByteBuffer?
    /// Set once the HTTP handlers have taken over: bytes only pass through.
    private var passingThrough = false
    /// Set while the handlers that take over are added and given what was
    /// read so far. A read can arrive in the middle of that: when a write
    /// fails because the peer is gone (the session's first event, flushed
    /// as its handler is added), NIO reads what the peer sent before it
    /// closes the channel, inside that flush. Such a read is queued behind
    /// what was read before it, not handled here. Handled here, it once
    /// turned a session's frames into an HTTP request, and the events sent
    /// to the closing session into writes the HTTP encoder could not take
    /// (a crash, under the soak).
    private var handingOver = false

    /// - Parameter timeout: how long the request may take from now (the accept).
    init(routes: Routes, maximumHeadSize: Int, timeout: TimeAmount, metrics: DaemonMetrics? = nil, logger: Logger) {
        self.routes = routes
        self.maximumHeadSize = maximumHeadSize
        self.timeout = timeout
        self.metrics = metrics
        self.logger = logger
    }

    // The deadline: kept here rather than by a handler of its own, which
    // would be one more handler to add and remove per session.

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { startDeadline(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startDeadline(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
    }

    private func startDeadline(context: ChannelHandlerContext) {
        guard timer == nil else { return }
        let timeout = timeout
        let logger = logger
        let metrics = metrics
        timer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            logger.debug("closing a connection that sent no complete request within \(timeout)")
            metrics?.peerDropped(.requestTimeout)
            context.close(promise: nil)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if handingOver {
            received.append(&bytes)
            return
        }
        guard !passingThrough else {
            context.fireChannelRead(data)
            return
        }
        received.append(&bytes)
        guard let buffer = received else { return }
        // Bytes that cannot begin a session's request go to the HTTP parser
        // at once, which answers what is not HTTP with 400 straight away;
        // waiting here for the end of a head that never comes held random
        // bytes until the request deadline.
        let headLength = HTTPHeadScanning.headLength(in: buffer, limit: maximumHeadSize)
        let head = buffer.readableBytesView.prefix(headLength ?? buffer.readableBytes)
        guard Self.couldBeginUpgrade(buffer), !head.contains(where: Self.cannotBeInHead) else {
            handOverToHTTP(context: context)
            return
        }
        guard let headLength else {
            if buffer.readableBytes > maximumHeadSize { handOverToHTTP(context: context) }
            return
        }
        let key = buffer.withUnsafeReadableBytes { raw -> String? in
            let head = UnsafeBufferPointer(rebasing: raw.assumingMemoryBound(to: UInt8.self)[0..<headLength])
            return Self.webSocketKeyRange(inUpgradeHead: head).map {
                String(decoding: UnsafeBufferPointer(rebasing: head[$0]), as: UTF8.self)
            }
        }
        guard let key, routes.admitsSession() else {
            handOverToHTTP(context: context)
            return
        }
        received!.moveReaderIndex(forwardBy: headLength)
        let response = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nsec-websocket-accept: "
            + WebSocketAccept.value(forKey: key) + "\r\nconnection: upgrade\r\n\r\n"
        context.write(wrapInboundOut(ByteBuffer(string: response)), promise: nil)
        // The session handler writes its first event when it is added; the
        // 101 goes out first, in the same flush.
        handOver(to: routes.addSessionHandlers, context: context)
        context.flush()
    }

    /// The HTTP handlers take over; this one stays, passing bytes through,
    /// to keep the deadline.
    private func handOverToHTTP(context: ChannelHandlerContext) {
        passingThrough = true
        handOver(to: routes.addHTTPHandlers, context: context)
    }

    /// Adds the handlers that take over and gives them what was read so far;
    /// for a session, leaves the pipeline (which ends the deadline).
    private func handOver(to addHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void, context: ChannelHandlerContext) {
        handingOver = true
        defer { handingOver = false }
        do {
            try addHandlers(context.pipeline.syncOperations)
        } catch {
            context.fireErrorCaught(error)
            return
        }
        var delivered = false
        while let rest = received.take() {
            guard rest.readableBytes > 0 else { continue }
            context.fireChannelRead(wrapInboundOut(rest))
            delivered = true
        }
        if delivered { context.fireChannelReadComplete() }
        if !passingThrough { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    /// The `Sec-WebSocket-Key` of `head` if it is a plain, well-formed
    /// WebSocket upgrade of `GET /ws` (RFC 6455 4.2.1) with no body;
    /// nil for anything else, which then goes the HTTP pipeline's way.
    /// Scanned as bytes: this runs for every session.
    static func webSocketKey(inUpgradeHead head: String) -> Substring? {
        var head = head
        return head.withUTF8 { bytes -> Substring? in
            guard let range = webSocketKeyRange(inUpgradeHead: bytes) else { return nil }
            return Substring(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
    }

    private static let requestLine = Array("GET /ws HTTP/1.1\r\n".utf8)

    /// A control character other than tab, CR and LF, or DEL: no request
    /// head holds one (RFC 9112 2.2, 5), so what does is not a request.
    private static func cannotBeInHead(_ byte: UInt8) -> Bool {
        (byte < 32 && byte != 9 && byte != 10 && byte != 13) || byte == 127
    }

    /// Whether `buffer` is, so far, the start of a session's request line.
    private static func couldBeginUpgrade(_ buffer: ByteBuffer) -> Bool {
        let count = min(buffer.readableBytes, requestLine.count)
        return buffer.readableBytesView.prefix(count).elementsEqual(requestLine.prefix(count))
    }

    private static func webSocketKeyRange(inUpgradeHead bytes: UnsafeBufferPointer<UInt8>) -> Range<Int>? {
        guard bytes.starts(with: requestLine) else { return nil }
        var key: Range<Int>?
        var hasVersion = false
        var upgradesToWebSocket = false
        var connectionUpgrades = false
        var lineStart = requestLine.count
        while lineStart < bytes.count {
            guard let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")),
                newline > lineStart, bytes[newline - 1] == UInt8(ascii: "\r")
            else { return nil }
            let lineEnd = newline - 1
            defer { lineStart = newline + 1 }
            if lineEnd == lineStart { break }  // the blank line
            guard let colon = bytes[lineStart..<lineEnd].firstIndex(of: UInt8(ascii: ":")), colon > lineStart,
                bytes[lineStart..<colon].allSatisfy(isTokenByte)
            else { return nil }
            let value = HTTPHeadScanning.trimmed(colon + 1..<lineEnd, in: bytes)
            guard bytes[value].allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else { return nil }
            let name = bytes[lineStart..<colon]
            if HTTPHeadScanning.equalsIgnoringCase(name, "sec-websocket-key") {
                guard key == nil, WebSocketAccept.isValidKey(bytes[value]) else { return nil }
                key = value
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "sec-websocket-version") {
                guard !hasVersion, bytes[value].elementsEqual("13".utf8) else { return nil }
                hasVersion = true
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "upgrade") {
                upgradesToWebSocket = upgradesToWebSocket || HTTPHeadScanning.containsToken("websocket", in: value, of: bytes)
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "connection") {
                connectionUpgrades = connectionUpgrades || HTTPHeadScanning.containsToken("upgrade", in: value, of: bytes)
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "content-length") {
                guard bytes[value].elementsEqual("0".utf8) else { return nil }
            } else if HTTPHeadScanning.equalsIgnoringCase(name, "transfer-encoding") {
                return nil
            }
        }
        guard let key, hasVersion, upgradesToWebSocket, connectionUpgrades else { return nil }
        return key
    }

    /// RFC 9110 5.6.2 `tchar`.
    private static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }
}

extension Optional<ByteBuffer> {
    /// Appends `bytes`, starting the buffer with them if there is none.
    fileprivate mutating func append(_ bytes: inout ByteBuffer) {
        if self == nil {
            self = bytes
        } else {
            self!.writeBuffer(&bytes)
        }
    }
}
