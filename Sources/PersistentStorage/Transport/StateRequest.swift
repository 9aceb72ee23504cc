#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PersistentStorageProtocol
import Glibc
import NIOCore

/// `GET /state` over the daemon's socket, one request per connection, on the
/// same plain socket as a session (``DaemonConnection``): blocking, and for
/// the async API on a thread of its own (``BlockingCall``).
enum StateRequest {
    /// The daemon's answer: the status, or the error it reported in the envelope.
    enum Answer: Sendable, Equatable {
        case state(DaemonState)
        /// The daemon's error envelope, and the HTTP status it came with.
        case failure(ErrorResult, statusCode: Int)
    }

    /// Bounds what a broken or hostile peer can make a client buffer. swift-pst's
    /// daemon lists every session (about 150 bytes each, up to 100,000 with
    /// `--max-sessions`) and up to 16 busy holders with paths of up to 4 KiB.
    static let maximumBodySize = 32 * 1024 * 1024

    /// The request: a GET is complete with its head. The daemon accepts any
    /// `Host`; a Unix socket has no host name, so we send `localhost` like
    /// the reference client does.
    private static let request = ByteBuffer(string: "GET /state HTTP/1.1\r\nHost: localhost\r\nUser-Agent: swift-pst\r\n\r\n")

    /// Asks on a thread of its own; cancellation of the caller ends the wait
    /// with `CancellationError`.
    static func fetch(from endpoint: DaemonEndpoint) async throws -> Answer {
        try await BlockingCall.run(name: "pst-state", for: endpoint) { wakeUp, answered in
            answered.resume(with: Result { () throws(PersistentStorageError) in try fetch(from: endpoint, wakeUp: wakeUp) })
        }
    }

    /// Asks on this thread: connecting may take the endpoint's timeout, and
    /// the exchange after it as long again. When `wakeUp` is woken this
    /// throws ``PersistentStorageError/connectionFailed(socketPath:reason:)``
    /// with ``BlockingSession/interruptedReason``, for its caller to replace.
    static func fetch(from endpoint: DaemonEndpoint, wakeUp: WakeUp?) throws(PersistentStorageError) -> Answer {
        let interrupted = PersistentStorageError.connectionFailed(socketPath: endpoint.socketPath, reason: BlockingSession.interruptedReason)
        let timedOut = PersistentStorageError.timedOut(after: endpoint.timeout, waitingFor: "GET /state")
        let incomplete = PersistentStorageError.protocolViolation("the connection closed before the /state answer was complete")
        guard let descriptor = try DaemonConnection.connect(to: endpoint, wakeUp: wakeUp) else { throw interrupted }
        defer { close(descriptor) }
        let deadline = ContinuousClock.now + endpoint.timeout
        switch DaemonConnection.send(request, on: descriptor, wakeUp: wakeUp, until: deadline) {
        case .sent: break
        case .failed: throw ContinuousClock.now < deadline ? incomplete : timedOut
        case .interrupted: throw interrupted
        }
        var response = ResponseReader()
        while true {
            if let (statusCode, body) = try response.complete(atEnd: false) {
                return try decode(statusCode: statusCode, body: body)
            }
            switch DaemonConnection.wait(for: Int16(POLLIN), on: descriptor, wakeUp: wakeUp, until: deadline) {
            case .ready: break
            case .timedOut: throw timedOut
            case .interrupted: throw interrupted
            }
            switch DaemonConnection.read(from: descriptor) {
            case .bytes(var bytes):
                try response.append(&bytes)
            case .wouldBlock:
                continue
            case .endOfStream:
                // A body without a length ends with the connection.
                guard let (statusCode, body) = try response.complete(atEnd: true) else { throw incomplete }
                return try decode(statusCode: statusCode, body: body)
            }
        }
    }

    /// Decodes the envelope; the HTTP status only matters when the body is not one.
    static func decode(statusCode: Int, body: ByteBuffer) throws(PersistentStorageError) -> Answer {
        let data = Data(body.readableBytesView)
        let decoder = JSONDecoder()
        struct OkOnly: Decodable { var ok: Bool }
        guard let ok = try? decoder.decode(OkOnly.self, from: data).ok else {
            throw .protocolViolation("GET /state answered \(statusCode) without a JSON envelope")
        }
        if ok, let envelope = try? decoder.decode(ResponseEnvelope<DaemonState>.self, from: data) {
            return .state(envelope.result)
        }
        if !ok, let envelope = try? decoder.decode(ResponseEnvelope<ErrorResult>.self, from: data) {
            return .failure(envelope.result, statusCode: statusCode)
        }
        throw .protocolViolation("GET /state answered \(statusCode) with an envelope whose result has unexpected fields")
    }
}

extension StateRequest {
    /// An HTTP/1 response read as it comes: the head (status code,
    /// `Content-Length`, chunked `Transfer-Encoding`), then a body with a
    /// length, in chunks, or up to the end of the connection. Interim `1xx`
    /// answers are skipped. Enough for the one answer a daemon gives to a GET.
    struct ResponseReader {
        private var received = ByteBuffer()
        private var head: (statusCode: Int, contentLength: Int?, chunked: Bool)?
        private var body = ByteBuffer()
        /// Chunked: the body is complete.
        private var lastChunkSeen = false

        mutating func append(_ bytes: inout ByteBuffer) throws(PersistentStorageError) {
            received.writeBuffer(&bytes)
            guard head != nil || received.readableBytes <= WebSocketClientHandshake.maximumHeadSize else {
                throw .protocolViolation("the /state answer has no end of head within \(WebSocketClientHandshake.maximumHeadSize) bytes")
            }
            guard received.readableBytes + body.readableBytes <= StateRequest.maximumBodySize + WebSocketClientHandshake.maximumHeadSize else {
                throw .protocolViolation("the /state answer is larger than \(StateRequest.maximumBodySize) bytes")
            }
        }

        /// The status and body once the answer is complete; `atEnd` when the
        /// connection has ended (which completes a body without a length).
        mutating func complete(atEnd: Bool) throws(PersistentStorageError) -> (Int, ByteBuffer)? {
            while head == nil {
                guard let length = HTTPHeadScanning.headLength(in: received) else { return nil }
                let parsed = try received.withUnsafeReadableBytes { bytes in
                    Result { () throws(PersistentStorageError) in
                        try Self.parseHead(UnsafeBufferPointer(rebasing: bytes.assumingMemoryBound(to: UInt8.self)[..<length]))
                    }
                }.get()
                received.moveReaderIndex(forwardBy: length)
                if !(100..<200).contains(parsed.statusCode) { head = parsed }
            }
            let (statusCode, contentLength, chunked) = head!
            if chunked {
                try readChunks()
                return lastChunkSeen ? (statusCode, body) : nil
            }
            if let contentLength {
                guard contentLength <= StateRequest.maximumBodySize else {
                    throw .protocolViolation("the /state answer is larger than \(StateRequest.maximumBodySize) bytes")
                }
                guard received.readableBytes >= contentLength else { return nil }
                return (statusCode, received.getSlice(at: received.readerIndex, length: contentLength)!)
            }
            return atEnd ? (statusCode, received) : nil
        }

        private mutating func readChunks() throws(PersistentStorageError) {
            while !lastChunkSeen {
                // The size line, with any extension after `;`.
                guard let lineEnd = received.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else { return }
                let line = String(decoding: received.readableBytesView[received.readerIndex..<lineEnd], as: UTF8.self)
                let digits = String(line.prefix { $0 != ";" }.filter { $0 != " " && $0 != "\t" && $0 != "\r" })
                guard let size = Int(digits, radix: 16), size >= 0 else {
                    throw .protocolViolation("the /state answer has a malformed chunk size: \(line.prefix(40))")
                }
                guard body.readableBytes + size <= StateRequest.maximumBodySize else {
                    throw .protocolViolation("the /state answer is larger than \(StateRequest.maximumBodySize) bytes")
                }
                let dataStart = lineEnd + 1
                if size == 0 {
                    // Trailers, if any, are not waited for: the body is complete.
                    lastChunkSeen = true
                    return
                }
                // The data and its CRLF.
                guard received.writerIndex >= dataStart + size + 2 else { return }
                var chunk = received.getSlice(at: dataStart, length: size)!
                body.writeBuffer(&chunk)
                received.moveReaderIndex(to: dataStart + size + 2)
            }
        }

        private static func parseHead(
            _ head: UnsafeBufferPointer<UInt8>
        ) throws(PersistentStorageError) -> (statusCode: Int, contentLength: Int?, chunked: Bool) {
            let answer: ResponseHead
            do {
                answer = try ResponseHead(parsing: head)
            } catch {
                throw .protocolViolation(error.message(about: "the /state answer"))
            }
            let statusCode = answer.statusCode
            var contentLength: Int?
            var chunked = false
            try answer.forEachField(in: head) { (name, value) throws(PersistentStorageError) in
                if HTTPHeadScanning.equalsIgnoringCase(name, "content-length") {
                    guard let length = Int(String(decoding: head[value], as: UTF8.self)), length >= 0 else {
                        throw .protocolViolation("the /state answer has a malformed Content-Length")
                    }
                    contentLength = length
                } else if HTTPHeadScanning.equalsIgnoringCase(name, "transfer-encoding") {
                    chunked = HTTPHeadScanning.containsToken("chunked", in: value, of: head)
                }
            }
            // A 204 or 304 has no body, whatever its head says.
            if statusCode == 204 || statusCode == 304 { return (statusCode, 0, false) }
            return (statusCode, chunked ? nil : contentLength, chunked)
        }
    }
}
