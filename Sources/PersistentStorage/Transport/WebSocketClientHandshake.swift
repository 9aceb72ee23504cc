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

    private let request: ByteBuffer
    private let expectedAccept: String
    private let installFrameHandlers: (ChannelPipeline.SynchronousOperations) throws -> Void
    private let upgraded: EventLoopPromise<Void>
    private let timeout: Duration
    private var deadline: Scheduled<Void>?
    private var received: ByteBuffer?
    private var done = false

    /// - Parameters:
    ///   - upgraded: succeeds once the frame handlers are in place, fails with a
    ///     ``PersistentStorageError`` if the daemon did not switch protocols
    ///     within `timeout`.
    init(
        path: String,
        timeout: Duration,
        upgraded: EventLoopPromise<Void>,
        installFrameHandlers: @escaping (ChannelPipeline.SynchronousOperations) throws -> Void
    ) {
        var keyBytes = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for index in keyBytes.indices { keyBytes[index] = generator.next() }
        let key = Data(keyBytes).base64EncodedString()
        expectedAccept = Self.acceptValue(forKey: key)
        request = ByteBuffer(string: """
            GET \(path) HTTP/1.1\r
            Host: localhost\r
            User-Agent: swift-pst\r
            Upgrade: websocket\r
            Connection: Upgrade\r
            Sec-WebSocket-Key: \(key)\r
            Sec-WebSocket-Version: 13\r
            \r

            """)
        self.upgraded = upgraded
        self.timeout = timeout
        self.installFrameHandlers = installFrameHandlers
    }

    /// `Sec-WebSocket-Accept` for `key`: base64 of the SHA-1 of the key and the RFC's GUID.
    static func acceptValue(forKey key: String) -> String {
        Data(SHA1.digest(Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8))).base64EncodedString()
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
        context.writeAndFlush(NIOAny(request), promise: nil)
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
        guard let headLength = Self.headLength(in: buffer) else {
            if buffer.readableBytes > Self.maximumHeadSize {
                fail(.protocolViolation("the daemon's answer to GET /ws has no end of head within \(Self.maximumHeadSize) bytes"), context: context)
            }
            return
        }
        var rest = buffer
        let head = rest.readString(length: headLength) ?? ""
        received = nil
        if let problem = problem(withHead: head) {
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

    /// The length of the head up to and including its blank line, if it is all there.
    private static func headLength(in buffer: ByteBuffer) -> Int? {
        buffer.withUnsafeReadableBytes { bytes -> Int? in
            guard bytes.count >= 4 else { return nil }
            for index in 3..<bytes.count
            where bytes[index] == UInt8(ascii: "\n") && bytes[index - 1] == UInt8(ascii: "\r")
                && bytes[index - 2] == UInt8(ascii: "\n") && bytes[index - 3] == UInt8(ascii: "\r") {
                return index + 1
            }
            return nil
        }
    }

    /// Why `head` is not an acceptance of the upgrade, or nil if it is.
    private func problem(withHead head: String) -> String? {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: true)
        guard let statusLine = lines.first else { return "the daemon's answer to GET /ws is empty" }
        let statusParts = statusLine.split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1.") else {
            return "the daemon's answer to GET /ws is not HTTP: \(statusLine.prefix(80))"
        }
        guard statusParts[1] == "101" else {
            return "the daemon did not accept the WebSocket upgrade of GET /ws: \(statusLine.dropFirst(statusParts[0].count + 1).prefix(80))"
        }
        var upgrade = false
        var connection = false
        var accept: Substring?
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].lowercased()
            let value = Self.trimmed(line[line.index(after: colon)...])
            switch name {
            case "upgrade": upgrade = upgrade || value.lowercased() == "websocket"
            case "connection":
                connection = connection || value.lowercased().split(separator: ",").contains { Self.trimmed($0) == "upgrade" }
            case "sec-websocket-accept": accept = value
            default: break
            }
        }
        guard upgrade, connection else {
            return "the daemon's 101 answer to GET /ws lacks Upgrade: websocket or Connection: Upgrade"
        }
        guard accept.map(String.init) == expectedAccept else {
            return "the daemon's 101 answer to GET /ws has a wrong Sec-WebSocket-Accept"
        }
        return nil
    }
}

extension WebSocketClientHandshake {
    /// Without the spaces and tabs HTTP allows around a header value.
    fileprivate static func trimmed(_ text: Substring) -> Substring {
        let isBlank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = text.firstIndex(where: { !isBlank($0) }), let last = text.lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return text[first...last]
    }
}

/// SHA-1 (FIPS 180-4), only for `Sec-WebSocket-Accept`: RFC 6455 fixes
/// the hash, and a 60-byte input a session does not need a crypto library.
enum SHA1 {
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var padded = message
        padded.append(0x80)
        while padded.count % 64 != 56 { padded.append(0) }
        let bitLength = UInt64(message.count) * 8
        for shift in stride(from: 56, through: 0, by: -8) { padded.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }

        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: padded.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(padded[j]) << 24 | UInt32(padded[j + 1]) << 16 | UInt32(padded[j + 2]) << 8 | UInt32(padded[j + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = x << 1 | x >> 31
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let (f, k): (UInt32, UInt32) = switch i {
                case 0..<20: ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (b ^ c ^ d, 0xCA62_C1D6)
                }
                let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = b << 30 | b >> 2
                b = a
                a = temp
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        var digest: [UInt8] = []
        digest.reserveCapacity(20)
        for word in [h.0, h.1, h.2, h.3, h.4] {
            for shift in stride(from: 24, through: 0, by: -8) { digest.append(UInt8(truncatingIfNeeded: word >> UInt32(shift))) }
        }
        return digest
    }
}
