import SystemSupport
import Foundation
import Glibc
import PersistentStorage

/// Why a raw socket exchange failed.
public enum RawSocketError: Error, CustomStringConvertible {
    case system(call: String, errno: Int32)
    case timedOut(waitingFor: String)
    case closedByPeer(waitingFor: String)
    case malformed(String)

    public var description: String {
        switch self {
        case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
        case .timedOut(let what): "timed out waiting for \(what)"
        case .closedByPeer(let what): "the peer closed the connection while waiting for \(what)"
        case .malformed(let text): "malformed answer: \(text)"
        }
    }
}

/// An HTTP response as read off the wire.
public struct RawHTTPResponse: Sendable {
    public var statusCode: Int
    /// Header lines in order; names as sent.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    /// The first header called `name`, compared case-insensitively.
    public func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    public var bodyText: String { String(decoding: body, as: UTF8.self) }

    /// The body parsed as a JSON object (nil when it is not one).
    public var jsonObject: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any]
    }
}

/// One WebSocket frame as read off the wire.
public struct RawWebSocketFrame: Sendable, Equatable {
    public static let continuation: UInt8 = 0x0, text: UInt8 = 0x1, binary: UInt8 = 0x2
    public static let close: UInt8 = 0x8, ping: UInt8 = 0x9, pong: UInt8 = 0xA

    public var fin: Bool
    public var opcode: UInt8
    public var payload: [UInt8]

    public init(fin: Bool = true, opcode: UInt8, payload: [UInt8]) {
        self.fin = fin
        self.opcode = opcode
        self.payload = payload
    }

    /// The payload as text, for text frames.
    public var text: String? { opcode == Self.text ? String(decoding: payload, as: UTF8.self) : nil }

    /// The close code of a close frame, if it carries one.
    public var closeCode: UInt16? {
        guard opcode == Self.close, payload.count >= 2 else { return nil }
        return UInt16(payload[0]) << 8 | UInt16(payload[1])
    }
}

/// A tiny blocking client for a Unix stream socket that speaks raw bytes, so
/// tests check the wire format itself and not some client's view of it.
///
/// Every read has a deadline (`timeout`), so a test fails instead of hanging
/// when the server does not answer. The socket is closed by ``close()`` or
/// when the client is released.
///
/// ```swift
/// let client = try RawUnixSocketClient(path: socketPath)
/// let state = try client.request("GET", "/state")
/// #expect(state.statusCode == 200)
///
/// let session = try RawUnixSocketClient(path: socketPath)
/// _ = try session.upgradeToWebSocket()
/// let loop = try session.readFrame()          // {"event_type": "loop", ...}
/// try session.sendText(#"{"event_type": "ping", "event": {}}"#)
/// ```
public final class RawUnixSocketClient {
    public let path: String
    /// How long each read may wait.
    public var timeout: Duration
    private var fd: Int32
    /// Bytes read past the end of the last message.
    private var pending: [UInt8] = []

    /// Connects; throws when nothing listens at `path`.
    public init(path: String, timeout: Duration = .seconds(5)) throws {
        self.path = path
        self.timeout = timeout
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw RawSocketError.system(call: "socket", errno: errno) }
        // A class whose init throws after every property is set still runs
        // deinit: the descriptor is closed once, here, and marked as such so
        // deinit does not close a number another thread has reused.
        guard let address = UnixSocketAddress(path: path) else {
            close()
            throw RawSocketError.system(call: "connect \(path)", errno: ENAMETOOLONG)
        }
        let result = address.withSocketAddress { connect(fd, $0, $1) }
        guard result == 0 else {
            let code = errno
            close()
            throw RawSocketError.system(call: "connect \(path)", errno: code)
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Whether `path` accepts connections now.
    public static func isAccepting(_ path: String) -> Bool {
        (try? RawUnixSocketClient(path: path)) != nil
    }

    // MARK: - Bytes

    public func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw RawSocketError.system(call: "send", errno: errno)
            }
            offset += written
        }
    }

    /// Sends as much of `bytes` as the peer takes within `time`, and returns
    /// how much that was: for floods, where a peer that stops reading must
    /// not hang the test in a blocking send.
    public func send(_ bytes: [UInt8], within time: Duration) throws -> Int {
        let deadline = ContinuousClock.now + time
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if written >= 0 {
                offset += written
                continue
            }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw RawSocketError.system(call: "send", errno: errno) }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { break }
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let milliseconds = Int32(clamping: max(1, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000))
            _ = poll(&descriptor, 1, milliseconds)
        }
        return offset
    }

    public func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    /// Reads whatever arrives next (at least one byte), or [] at end of stream.
    public func receiveSome(waitingFor what: String = "data") throws -> [UInt8] {
        if !pending.isEmpty {
            defer { pending = [] }
            return pending
        }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(clamping: timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
        while true {
            let ready = poll(&descriptor, 1, milliseconds)
            if ready < 0 && errno == EINTR { continue }
            if ready < 0 { throw RawSocketError.system(call: "poll", errno: errno) }
            if ready == 0 { throw RawSocketError.timedOut(waitingFor: what) }
            break
        }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count < 0 && errno == EINTR { continue }
            if count < 0 && errno == ECONNRESET { return [] }
            if count < 0 { throw RawSocketError.system(call: "recv", errno: errno) }
            return Array(buffer[0..<count])
        }
    }

    /// Reads until the peer closes the connection; returns everything read.
    public func receiveUntilClosed() throws -> [UInt8] {
        var all: [UInt8] = []
        while true {
            let chunk = try receiveSome(waitingFor: "the connection to close")
            if chunk.isEmpty { return all }
            all += chunk
        }
    }

    /// Waits until the peer closes the connection, ignoring what it sends.
    public func waitUntilClosed() throws {
        _ = try receiveUntilClosed()
    }

    private func receiveExactly(_ count: Int, waitingFor what: String) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let chunk = try receiveSome(waitingFor: what)
            if chunk.isEmpty { throw RawSocketError.closedByPeer(waitingFor: what) }
            bytes += chunk
        }
        pending = Array(bytes[count...]) + pending
        return Array(bytes[..<count])
    }

    // MARK: - HTTP

    /// Sends one HTTP/1.1 request (with `Host: localhost:0` like the reference
    /// client, and `Content-Length` when there is a body) and reads the answer.
    public func request(
        _ method: String, _ target: String, headers: [(String, String)] = [], body: [UInt8] = []
    ) throws -> RawHTTPResponse {
        var text = "\(method) \(target) HTTP/1.1\r\nHost: localhost:0\r\n"
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if !body.isEmpty { text += "Content-Length: \(body.count)\r\n" }
        text += "\r\n"
        try send(Array(text.utf8) + body)
        return try readHTTPResponse()
    }

    /// Reads one response: head, then a body of `Content-Length` bytes (or
    /// up to the end of the stream when there is none).
    public func readHTTPResponse() throws -> RawHTTPResponse {
        var buffer: [UInt8] = []
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            let chunk = try receiveSome(waitingFor: "an HTTP response head")
            if chunk.isEmpty { throw RawSocketError.closedByPeer(waitingFor: "an HTTP response head") }
            buffer += chunk
            headEnd = buffer.firstRange(of: separator)?.lowerBound
        }
        let head = String(decoding: buffer[..<headEnd!], as: UTF8.self)
        pending = Array(buffer[(headEnd! + 4)...])
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let code = Int(statusLine[1]) else {
            throw RawSocketError.malformed("status line of \(head)")
        }
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var response = RawHTTPResponse(statusCode: code, headers: headers, body: [])
        if code == 101 { return response }
        if let length = response.header("Content-Length").flatMap(Int.init) {
            response.body = try receiveExactly(length, waitingFor: "an HTTP body of \(length) bytes")
        } else {
            response.body = try receiveUntilClosed()
        }
        return response
    }

    // MARK: - WebSocket

    /// Sends the upgrade request for `target` and reads the answer; on `101`
    /// the connection speaks WebSocket from then on.
    @discardableResult
    public func upgradeToWebSocket(_ target: String = "/ws", extraHeaders: [(String, String)] = []) throws -> RawHTTPResponse {
        let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
        return try request("GET", target, headers: [
            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13"),
            ("User-Agent", "swift-pst-tests"),
        ] + extraHeaders)
    }

    /// Sends one frame, masked as a client must (RFC 6455 section 5.3).
    public func sendFrame(_ frame: RawWebSocketFrame, masked: Bool = true) throws {
        try send(Self.encoded(frame, masked: masked))
    }

    /// The bytes of `frame` as a client sends it, to send many at once.
    public static func encoded(_ frame: RawWebSocketFrame, masked: Bool = true) -> [UInt8] {
        var bytes: [UInt8] = [(frame.fin ? 0x80 : 0) | (frame.opcode & 0x0F)]
        let maskBit: UInt8 = masked ? 0x80 : 0
        let length = frame.payload.count
        if length < 126 {
            bytes.append(maskBit | UInt8(length))
        } else if length <= Int(UInt16.max) {
            bytes.append(maskBit | 126)
            bytes += [UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
        } else {
            bytes.append(maskBit | 127)
            bytes += (0..<8).reversed().map { UInt8(UInt64(length) >> (UInt64($0) * 8) & 0xFF) }
        }
        if masked {
            let key = (0..<4).map { _ in UInt8.random(in: 0...255) }
            bytes += key
            bytes += frame.payload.enumerated().map { $0.element ^ key[$0.offset % 4] }
        } else {
            bytes += frame.payload
        }
        return bytes
    }

    public func sendText(_ text: String) throws {
        try sendFrame(RawWebSocketFrame(opcode: RawWebSocketFrame.text, payload: Array(text.utf8)))
    }

    /// Reads one frame, or nil when the connection ended before one began.
    public func readFrame() throws -> RawWebSocketFrame? {
        let first = try receiveSome(waitingFor: "a WebSocket frame")
        if first.isEmpty { return nil }
        pending = first + pending
        let header = try receiveExactly(2, waitingFor: "a WebSocket frame header")
        var length = UInt64(header[1] & 0x7F)
        if length == 126 {
            length = try receiveExactly(2, waitingFor: "a frame length").reduce(0) { $0 << 8 | UInt64($1) }
        } else if length == 127 {
            length = try receiveExactly(8, waitingFor: "a frame length").reduce(0) { $0 << 8 | UInt64($1) }
        }
        let mask = header[1] & 0x80 != 0 ? try receiveExactly(4, waitingFor: "a frame mask") : nil
        var payload = try receiveExactly(Int(length), waitingFor: "a frame payload of \(length) bytes")
        if let mask { payload = payload.enumerated().map { $0.element ^ mask[$0.offset % 4] } }
        return RawWebSocketFrame(fin: header[0] & 0x80 != 0, opcode: header[0] & 0x0F, payload: payload)
    }

    /// The next text frame's JSON object, answering WebSocket pings on the
    /// way; nil when the connection closed (or a close frame came) first.
    public func readJSONMessage() throws -> [String: Any]? {
        while let frame = try readFrame() {
            switch frame.opcode {
            case RawWebSocketFrame.ping:
                try sendFrame(RawWebSocketFrame(opcode: RawWebSocketFrame.pong, payload: frame.payload))
            case RawWebSocketFrame.text:
                guard let object = (try? JSONSerialization.jsonObject(with: Data(frame.payload))) as? [String: Any] else {
                    throw RawSocketError.malformed("text frame is not a JSON object: \(frame.text ?? "")")
                }
                return object
            case RawWebSocketFrame.close:
                return nil
            default:
                continue
            }
        }
        return nil
    }
}
