import SystemSupport
import PersistentStorageProtocol
import Dispatch
import Glibc
import Logging
import NIOCore
import NIOWebSocket
import Synchronization

/// A session held by one thread over a plain socket, for `kvmd-pstrun`: a
/// process that lives for one session and must not pay for what
/// ``StorageSession`` brings to a service that lives for many.
///
/// A fresh process that opens a ``StorageSession`` starts NIO's event-loop
/// threads and Swift's thread pool, and looks up the generic types of a
/// channel pipeline for the first time; that was half of a
/// `kvmd-pstrun -- true`'s time (Documentation/Benchmarks.md). This speaks
/// the same protocol with the same errors: the upgrade request and its check
/// are ``WebSocketClientHandshake``'s, and the daemon's frames are read by
/// the same ``DaemonEventReader``. The caller polls ``descriptor`` while it
/// holds the session and calls ``readAvailable()`` when it is readable.
///
/// Not for async code: opening it blocks the calling thread.
package final class BlockingSession {
    /// The status that granted write access (`writeAllowed` is `true`).
    package let initialStatus: StorageStatus
    /// The connection: poll it for reading, then call ``readAvailable()``.
    package let descriptor: CInt
    private var reader: DaemonEventReader
    /// Set once the daemon ended the connection or broke the protocol:
    /// nothing more is read or sent.
    private var ended = false
    private var closed = false

    private init(descriptor: CInt, initialStatus: StorageStatus, reader: DaemonEventReader) {
        self.descriptor = descriptor
        self.initialStatus = initialStatus
        self.reader = reader
    }

    deinit {
        if !closed { Glibc.close(descriptor) }
    }

    /// Connects, upgrades `GET /ws`, and waits until the daemon reports the
    /// storage writable. Like ``PersistentStorageClient/openSession(subdirectory:)``,
    /// the upgrade and the wait for write access may take `timeout` each.
    package static func open(socketPath: String, timeout: Duration, logger: Logger) throws(PersistentStorageError) -> BlockingSession {
        let endpoint = DaemonEndpoint(socketPath: socketPath, timeout: timeout)
        let descriptor = try connectedSocket(to: endpoint)
        var reader = DaemonEventReader(logger: logger)
        let outcome: Result<StorageStatus, WriteAccessWait.Failure>
        do throws(PersistentStorageError) {
            let request = WebSocketClientHandshake.Request(path: "/ws", socketPath: socketPath)
            let upgradeDeadline = ContinuousClock.now + timeout
            guard send(request.bytes, on: descriptor, until: upgradeDeadline) else {
                throw PersistentStorageError.protocolViolation("the daemon closed the connection instead of answering GET /ws")
            }
            let rest = try readUpgradeAnswer(to: request, from: descriptor, until: upgradeDeadline, timeout: timeout)
            reader.append(rest)
            outcome = waitForWriteAccess(with: &reader, on: descriptor, until: .now + timeout)
        } catch {
            Glibc.close(descriptor)
            throw error
        }
        switch outcome {
        case .success(let status):
            return BlockingSession(descriptor: descriptor, initialStatus: status, reader: reader)
        case .failure(let failure):
            Glibc.close(descriptor)
            throw waitFor { await WriteAccessWait.error(for: failure, from: endpoint) }
        }
    }

    /// Reads what has come, answering pings and the daemon's close frame.
    /// Call it once after opening (what came with the granting status is
    /// read already, so the socket need not poll readable for it), and then
    /// whenever ``descriptor`` polls readable (or hung up).
    ///
    /// - Returns: why write access ended, once it has: the daemon said the
    ///   storage is read-only, closed the connection, or broke the protocol.
    ///   `nil` while the session holds.
    package func readAvailable() -> RevocationReason? {
        guard !ended else { return .connectionClosed }
        if let reason = handleIncoming() { return reason }
        while true {
            switch Self.read(from: descriptor) {
            case .bytes(let bytes):
                reader.append(bytes)
                if let reason = handleIncoming() { return reason }
            case .wouldBlock:
                return nil
            case .endOfStream:
                ended = true
                return reader.connectionEndReason
            }
        }
    }

    /// Ends the session with the WebSocket close handshake, waiting at most
    /// ``SessionChannel/closeHandshakeTimeout`` for the daemon's answer,
    /// so that the daemon has seen the session end when this returns.
    /// Safe to call more than once.
    package func close() {
        guard !closed else { return }
        closed = true
        defer { Glibc.close(descriptor) }
        guard !ended else { return }
        let deadline = ContinuousClock.now + .nanoseconds(SessionChannel.closeHandshakeTimeout.nanoseconds)
        var code = ByteBuffer()
        code.write(webSocketErrorCode: .normalClosure)
        guard Self.sendFrame(.connectionClose, code, on: descriptor, until: deadline) else { return }
        while Self.pollReadable(descriptor, until: deadline) {
            switch Self.read(from: descriptor) {
            case .bytes(let bytes):
                reader.append(bytes)
                while let incoming = reader.next() {
                    // The daemon's close frame answers ours; anything else is
                    // of no use any more.
                    if case .close = incoming { return }
                    if case .broken = incoming { return }
                }
            case .wouldBlock:
                continue
            case .endOfStream:
                return
            }
        }
    }

    /// Acts on what the reader has: pings are answered, and the first thing
    /// that ends write access is returned.
    private func handleIncoming() -> RevocationReason? {
        while let incoming = reader.next() {
            switch Self.answer(incoming, on: descriptor) {
            case .status(let status):
                if !status.data.writeAllowed { return .writeNoLongerAllowed }
            case .answered:
                break
            case .ended(let reason):
                ended = true
                return reason
            }
        }
        return nil
    }
}

extension BlockingSession {
    /// The daemon's first statuses: a `false` may come before its remount to
    /// read-write is done (PROTOCOL.md), so only `true` ends the wait, as in
    /// ``StorageEventHandler``.
    private static func waitForWriteAccess(
        with reader: inout DaemonEventReader, on descriptor: CInt, until deadline: ContinuousClock.Instant
    ) -> Result<StorageStatus, WriteAccessWait.Failure> {
        var sawReadOnly = false
        while true {
            while let incoming = reader.next() {
                switch answer(incoming, on: descriptor) {
                case .status(let status):
                    if status.data.writeAllowed { return .success(status) }
                    sawReadOnly = true
                case .answered:
                    break
                case .ended(let reason):
                    return .failure(.revoked(reason))
                }
            }
            guard pollReadable(descriptor, until: deadline) else { return .failure(.timedOut(sawReadOnly: sawReadOnly)) }
            switch read(from: descriptor) {
            case .bytes(let bytes):
                reader.append(bytes)
            case .wouldBlock:
                continue
            case .endOfStream:
                return .failure(.revoked(reader.connectionEndReason))
            }
        }
    }

    private enum Answered {
        /// A status, for the caller to judge.
        case status(StorageStatus)
        /// A ping, answered.
        case answered
        /// The daemon ended the connection or broke the protocol; its close
        /// frame was answered, or ours sent.
        case ended(RevocationReason)
    }

    /// Answers what the protocol says to answer: a ping with a pong, the
    /// daemon's close frame with the same status code (RFC 6455 5.5.1), a
    /// broken rule with a close frame of our own where it has a code.
    private static func answer(_ incoming: DaemonEventReader.Incoming, on descriptor: CInt) -> Answered {
        // Answers are a few bytes on an otherwise idle socket: a second is
        // long enough, and a daemon that takes none of them is gone anyway.
        let deadline = ContinuousClock.now + .seconds(1)
        switch incoming {
        case .status(let status):
            return .status(status)
        case .ping(let payload):
            _ = sendFrame(.pong, payload, on: descriptor, until: deadline)
            return .answered
        case .close(let code):
            _ = sendFrame(.connectionClose, code, on: descriptor, until: deadline)
            return .ended(.connectionClosed)
        case .broken(let closeCode, let reason):
            if let closeCode {
                var payload = ByteBuffer()
                payload.write(webSocketErrorCode: closeCode)
                _ = sendFrame(.connectionClose, payload, on: descriptor, until: deadline)
            }
            return .ended(.protocolViolation(reason))
        }
    }

    private static func sendFrame(
        _ opcode: WebSocketOpcode, _ payload: ByteBuffer, on descriptor: CInt, until deadline: ContinuousClock.Instant
    ) -> Bool {
        var bytes = ByteBuffer()
        // RFC 6455 5.3: every frame a client sends is masked with a fresh key.
        WebSocketFrameCoding.write(
            WebSocketFrame(fin: true, opcode: opcode, data: payload), maskedWith: WebSocketMaskingKey.random(), to: &bytes)
        return send(bytes, on: descriptor, until: deadline)
    }

    /// Reads the answer to the upgrade request up to the end of its head,
    /// checks it, and returns what came after the head (the daemon may send
    /// its first events in the same segment).
    private static func readUpgradeAnswer(
        to request: WebSocketClientHandshake.Request, from descriptor: CInt,
        until deadline: ContinuousClock.Instant, timeout: Duration
    ) throws(PersistentStorageError) -> ByteBuffer {
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
            guard received.readableBytes <= WebSocketClientHandshake.maximumHeadSize else {
                throw .protocolViolation(
                    "the daemon's answer to GET /ws has no end of head within \(WebSocketClientHandshake.maximumHeadSize) bytes")
            }
            guard pollReadable(descriptor, until: deadline) else {
                throw .timedOut(after: timeout, waitingFor: "the WebSocket upgrade of GET /ws")
            }
            switch read(from: descriptor) {
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

/// The system calls, on a non-blocking socket.
extension BlockingSession {
    /// A close-on-exec Unix stream socket connected to the daemon, made
    /// non-blocking once connected.
    private static func connectedSocket(to endpoint: DaemonEndpoint) throws(PersistentStorageError) -> CInt {
        guard let address = UnixSocketAddress(path: endpoint.socketPath) else {
            throw endpoint.connectError(for: IOError(errnoCode: ENAMETOOLONG, reason: "connect"))
        }
        let descriptor = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw endpoint.connectError(for: IOError(errnoCode: errno, reason: "socket")) }
        // Connected while still blocking: when the daemon's listen queue is
        // full, a blocking connect(2) waits for room (for at most the send
        // timeout) instead of failing, so that a burst of clients queues.
        let (seconds, attoseconds) = endpoint.timeout.components
        var sendTimeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
        _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
        var result: CInt
        repeat {
            result = address.withSocketAddress { Glibc.connect(descriptor, $0, $1) }
        } while result != 0 && errno == EINTR
        guard result == 0, fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK) == 0 else {
            let code = errno
            Glibc.close(descriptor)
            throw endpoint.connectError(for: IOError(errnoCode: code, reason: "connect"))
        }
        return descriptor
    }

    private enum ReadResult {
        case bytes(ByteBuffer)
        case wouldBlock
        case endOfStream
    }

    /// One read(2) of what has come; an error other than EAGAIN ends the
    /// stream, as a reset connection does for ``StorageEventHandler``.
    private static func read(from descriptor: CInt) -> ReadResult {
        var buffer = ByteBuffer()
        var result = 0
        repeat {
            _ = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 4096) { space in
                result = Glibc.read(descriptor, space.baseAddress, space.count)
                return max(0, result)
            }
        } while result < 0 && errno == EINTR
        if result > 0 { return .bytes(buffer) }
        if result < 0 && errno == EAGAIN { return .wouldBlock }
        return .endOfStream
    }

    /// Sends all of `bytes`, waiting for room until `deadline`; false if the
    /// connection failed or time ran out. MSG_NOSIGNAL: a daemon that has
    /// closed must not kill us with SIGPIPE.
    private static func send(_ bytes: ByteBuffer, on descriptor: CInt, until deadline: ContinuousClock.Instant) -> Bool {
        var rest = bytes
        while rest.readableBytes > 0 {
            let sent = rest.withUnsafeReadableBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                rest.moveReaderIndex(forwardBy: sent)
            } else if sent < 0 && errno == EINTR {
                continue
            } else if sent < 0 && errno == EAGAIN {
                guard poll(descriptor, for: Int16(POLLOUT), until: deadline) else { return false }
            } else {
                return false
            }
        }
        return true
    }

    /// Whether `descriptor` has something to read (or has hung up) before `deadline`.
    static func pollReadable(_ descriptor: CInt, until deadline: ContinuousClock.Instant) -> Bool {
        poll(descriptor, for: Int16(POLLIN), until: deadline)
    }

    private static func poll(_ descriptor: CInt, for events: Int16, until deadline: ContinuousClock.Instant) -> Bool {
        while true {
            let left = deadline - .now
            guard left > .zero else { return false }
            var entry = pollfd(fd: descriptor, events: events, revents: 0)
            let result = Glibc.poll(&entry, 1, pollTimeout(until: deadline))
            if result > 0 { return true }
            if result < 0 && errno != EINTR { return true }  // let the read or send report it
        }
    }

    /// `poll(2)`'s timeout for a wait until `deadline`: milliseconds, rounded
    /// up so that a wait never ends just before its deadline; 0 once it is past.
    package static func pollTimeout(until deadline: ContinuousClock.Instant) -> Int32 {
        let (seconds, attoseconds) = max(.zero, deadline - .now).components
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }

    /// Waits on this thread for async work: only for the errors of a failed
    /// open, which may ask the daemon's `GET /state` for its reason through
    /// the async client. Safe here because the caller is not on Swift's
    /// thread pool (this type is not for async code).
    private static func waitFor<T: Sendable>(_ operation: @escaping @Sendable () async -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            let value = await operation()
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0! }
    }
}
