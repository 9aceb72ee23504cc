import NIOCore
import PersistentStorage

/// The first handler after the request deadline on every connection: it
/// takes the common request, a well-formed WebSocket upgrade of `GET /ws`
/// that the daemon would accept, straight to a session, and hands anything
/// else, unread, to the HTTP pipeline (NIO's parser, upgrader and our
/// routes), which answers it exactly as before.
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
        /// The request deadline's handler, which a session does not keep.
        var deadlineHandlerName: String
    }

    private let routes: Routes
    private let maximumHeadSize: Int
    private var received: ByteBuffer?

    init(routes: Routes, maximumHeadSize: Int) {
        self.routes = routes
        self.maximumHeadSize = maximumHeadSize
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        if received == nil {
            received = bytes
        } else {
            received!.writeBuffer(&bytes)
        }
        guard let buffer = received else { return }
        guard let headLength = Self.headLength(in: buffer, limit: maximumHeadSize) else {
            if buffer.readableBytes > maximumHeadSize { handOver(to: routes.addHTTPHandlers, context: context) }
            return
        }
        let head = buffer.getString(at: buffer.readerIndex, length: headLength) ?? ""
        guard let key = Self.webSocketKey(inUpgradeHead: head), routes.admitsSession() else {
            handOver(to: routes.addHTTPHandlers, context: context)
            return
        }
        received!.moveReaderIndex(forwardBy: headLength)
        let response = "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nsec-websocket-accept: "
            + WebSocketAccept.value(forKey: key) + "\r\nconnection: upgrade\r\n\r\n"
        context.write(wrapInboundOut(ByteBuffer(string: response)), promise: nil)
        context.pipeline.syncOperations.removeHandler(name: routes.deadlineHandlerName, promise: nil)
        // The session handler writes its first event when it is added; the
        // 101 goes out first, in the same flush.
        handOver(to: routes.addSessionHandlers, context: context)
        context.flush()
    }

    /// Adds the handlers that take over, gives them what was read so far,
    /// and leaves the pipeline.
    private func handOver(to addHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void, context: ChannelHandlerContext) {
        do {
            try addHandlers(context.pipeline.syncOperations)
        } catch {
            context.fireErrorCaught(error)
            return
        }
        let rest = received
        received = nil
        if let rest, rest.readableBytes > 0 {
            context.fireChannelRead(wrapInboundOut(rest))
            context.fireChannelReadComplete()
        }
        context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
    }

    /// The length of the head, blank line included, if it ends within `limit` bytes.
    static func headLength(in buffer: ByteBuffer, limit: Int) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            let end = min(bytes.count, limit)
            guard end >= 4 else { return nil }
            for index in 3..<end
            where bytes[index] == UInt8(ascii: "\n") && bytes[index - 1] == UInt8(ascii: "\r")
                && bytes[index - 2] == UInt8(ascii: "\n") && bytes[index - 3] == UInt8(ascii: "\r") {
                return index + 1
            }
            return nil
        }
    }

    /// The `Sec-WebSocket-Key` of `head` if it is a plain, well-formed
    /// WebSocket upgrade of `GET /ws` (RFC 6455 4.2.1) with no body;
    /// nil for anything else, which then goes the HTTP pipeline's way.
    static func webSocketKey(inUpgradeHead head: String) -> Substring? {
        var lines = head.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).makeIterator()
        guard let requestLine = lines.next(), Substring(requestLine) == "GET /ws HTTP/1.1\r" else { return nil }
        var key: Substring?
        var hasVersion = false
        var upgradesToWebSocket = false
        var connectionUpgrades = false
        while let rawLine = lines.next() {
            // Every line ends in CRLF; the head ends with an empty one.
            guard rawLine.last == UInt8(ascii: "\r") else { return nil }
            let line = Substring(rawLine.dropLast())
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex,
                line[..<colon].utf8.allSatisfy(Self.isTokenByte)
            else { return nil }
            let value = Self.trimmed(line[line.index(after: colon)...])
            guard value.utf8.allSatisfy({ $0 == 9 || ($0 >= 32 && $0 != 127) }) else { return nil }
            switch line[..<colon].lowercased() {
            case "sec-websocket-key":
                guard key == nil, !value.isEmpty else { return nil }
                key = value
            case "sec-websocket-version":
                guard !hasVersion, value == "13" else { return nil }
                hasVersion = true
            case "upgrade":
                upgradesToWebSocket = upgradesToWebSocket || Self.tokens(value).contains("websocket")
            case "connection":
                connectionUpgrades = connectionUpgrades || Self.tokens(value).contains("upgrade")
            case "content-length":
                guard value == "0" else { return nil }
            case "transfer-encoding":
                return nil
            default:
                break
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

    private static func trimmed(_ text: Substring) -> Substring {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isBlank($0) }), let last = text.lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return text[first...last]
    }

    /// A comma-separated header value's tokens, lowercased.
    private static func tokens(_ value: Substring) -> [String] {
        value.split(separator: ",").map { trimmed($0).lowercased() }
    }
}
