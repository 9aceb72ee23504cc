import SystemSupport
import PersistentStorageProtocol
import Glibc
import Logging
import NIOCore
import NIOWebSocket

/// One session with the daemon, held by one thread over a plain socket: the
/// library's only session client.
///
/// It connects, sends the upgrade request of `/ws`, checks the answer
/// (``WebSocketClientHandshake``), waits until the daemon first reports the
/// storage writable (with the daemon's reason when it refuses,
/// ``WriteAccessWait``), and then, each time its caller finds
/// ``descriptor`` readable, reads the daemon's frames (``DaemonEventReader``),
/// answering pings and the daemon's close frame; ``close()`` is the close
/// handshake.
///
/// Two callers hold it: `kvmd-pstrun`, on its one thread, in its own poll
/// loop, so that a process which lives for one script starts no event loop
/// and no thread pool (Documentation/Benchmarks.md); and ``SessionHolder``,
/// which holds one on a thread of its own for the async API
/// (``StorageSession``), passing a ``WakeUp`` so that cancellation and
/// ``StorageSession/close()`` can reach a thread blocked in `poll(2)`.
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

    /// How long ``close()`` waits for the daemon's half of the close handshake.
    static let closeHandshakeTimeout: Duration = .seconds(1)
    /// Events are a few hundred bytes; a frame or message far larger is not the daemon.
    static let maximumMessageSize = 64 * 1024

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
        try open(at: DaemonEndpoint(socketPath: socketPath, timeout: timeout), logger: logger, wakeUp: nil)
    }

    /// ``open(socketPath:timeout:logger:)``, ended early when `wakeUp` is woken:
    /// it then throws ``PersistentStorageError/connectionFailed(socketPath:reason:)``
    /// with ``interruptedReason``, which the async caller, whose task was
    /// cancelled, replaces with `CancellationError`.
    static func open(at endpoint: DaemonEndpoint, logger: Logger, wakeUp: WakeUp?) throws(PersistentStorageError) -> BlockingSession {
        let interrupted = PersistentStorageError.connectionFailed(socketPath: endpoint.socketPath, reason: interruptedReason)
        guard let descriptor = try DaemonConnection.connect(to: endpoint, wakeUp: wakeUp) else { throw interrupted }
        var reader = DaemonEventReader(logger: logger)
        let outcome: Result<StorageStatus, WriteAccessWait.Failure>
        do throws(PersistentStorageError) {
            let request = WebSocketClientHandshake.Request(path: "/ws", socketPath: endpoint.socketPath)
            let upgradeDeadline = ContinuousClock.now + endpoint.timeout
            switch DaemonConnection.send(request.bytes, on: descriptor, wakeUp: wakeUp, until: upgradeDeadline) {
            case .sent: break
            case .failed: throw .protocolViolation("the daemon closed the connection instead of answering GET /ws")
            case .interrupted: throw interrupted
            }
            guard let rest = try WebSocketClientHandshake.readAnswer(
                to: request, from: descriptor, wakeUp: wakeUp, until: upgradeDeadline, timeout: endpoint.timeout)
            else { throw interrupted }
            reader.append(rest)
            guard let waited = waitForWriteAccess(with: &reader, on: descriptor, wakeUp: wakeUp, until: .now + endpoint.timeout) else {
                throw interrupted
            }
            outcome = waited
        } catch {
            Glibc.close(descriptor)
            throw error
        }
        switch outcome {
        case .success(let status):
            return BlockingSession(descriptor: descriptor, initialStatus: status, reader: reader)
        case .failure(let failure):
            Glibc.close(descriptor)
            throw WriteAccessWait.error(for: failure, from: endpoint, wakeUp: wakeUp)
        }
    }

    /// The reason of the error an open ended by its ``WakeUp`` throws.
    static let interruptedReason = "the call was cancelled"

    /// Reads what has come, answering pings and the daemon's close frame.
    /// Call it once after opening (what came with the granting status is
    /// read already, so the socket need not poll readable for it), and then
    /// whenever ``descriptor`` polls readable (or hung up).
    ///
    /// - Returns: why write access ended, once it has: the daemon said the
    ///   storage is read-only, closed the connection, or broke the protocol.
    ///   `nil` while the session holds.
    package func readAvailable() -> RevocationReason? {
        var readOnly = false
        let end = readAvailable { status in
            if !status.data.writeAllowed { readOnly = true }
        }
        return readOnly ? .writeNoLongerAllowed : end
    }

    /// Reads what has come, passes every `storage` status to `received` in
    /// order (one that says read-only does not end the session here), and
    /// answers pings and the daemon's close frame.
    ///
    /// - Returns: why the connection ended, once it has (the daemon closed
    ///   it or broke the protocol); `nil` while it is open.
    func readAvailable(_ received: (StorageStatus) -> Void) -> RevocationReason? {
        guard !ended else { return .connectionClosed }
        if let reason = handleIncoming(received) { return reason }
        // One read, then back to the caller's poll, which also watches what
        // else the caller must see (kvmd-pstrun's signals and script, the
        // library's close): a daemon that never stops sending, a flood of
        // pings, must not keep it from them. If more has come, the poll
        // returns at once.
        switch DaemonConnection.read(from: descriptor) {
        case .bytes(let bytes):
            reader.append(bytes)
            return handleIncoming(received)
        case .wouldBlock:
            return nil
        case .endOfStream:
            ended = true
            return reader.connectionEndReason
        }
    }

    /// Ends the session with the WebSocket close handshake (RFC 6455 7.1.2),
    /// waiting at most ``closeHandshakeTimeout`` for the daemon's answer, so
    /// that the daemon has seen the session end when this returns.
    /// Safe to call more than once.
    package func close() {
        guard !closed else { return }
        closed = true
        defer { Glibc.close(descriptor) }
        guard !ended else { return }
        let deadline = ContinuousClock.now + Self.closeHandshakeTimeout
        var code = ByteBuffer()
        code.write(webSocketErrorCode: .normalClosure)
        guard Self.sendFrame(.connectionClose, code, on: descriptor, until: deadline) else { return }
        while case .ready = DaemonConnection.wait(for: Int16(POLLIN), on: descriptor, wakeUp: nil, until: deadline) {
            switch DaemonConnection.read(from: descriptor) {
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

    /// Acts on what the reader has: pings are answered, statuses passed on,
    /// and the end of the connection returned.
    private func handleIncoming(_ received: (StorageStatus) -> Void) -> RevocationReason? {
        while let incoming = reader.next() {
            switch Self.answer(incoming, on: descriptor) {
            case .status(let status):
                received(status)
            case .answered:
                break
            case .ended(let reason):
                ended = true
                return reason
            }
        }
        return nil
    }

    /// Whether `descriptor` has something to read (or has hung up) before `deadline`.
    static func pollReadable(_ descriptor: CInt, until deadline: ContinuousClock.Instant) -> Bool {
        if case .ready = DaemonConnection.wait(for: Int16(POLLIN), on: descriptor, wakeUp: nil, until: deadline) { return true }
        return false
    }

    /// `poll(2)`'s timeout for a wait until `deadline`: milliseconds, rounded
    /// up so that a wait never ends just before its deadline; 0 once it is past.
    package static func pollTimeout(until deadline: ContinuousClock.Instant) -> Int32 {
        DaemonConnection.pollTimeout(until: deadline)
    }
}

extension BlockingSession {
    /// The daemon's first statuses: a `false` may come before its remount to
    /// read-write is done (PROTOCOL.md), so only `true` ends the wait.
    /// Nil if `wakeUp` was woken.
    private static func waitForWriteAccess(
        with reader: inout DaemonEventReader, on descriptor: CInt, wakeUp: WakeUp?, until deadline: ContinuousClock.Instant
    ) -> Result<StorageStatus, WriteAccessWait.Failure>? {
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
            switch DaemonConnection.wait(for: Int16(POLLIN), on: descriptor, wakeUp: wakeUp, until: deadline) {
            case .ready: break
            case .timedOut: return .failure(.timedOut(sawReadOnly: sawReadOnly))
            case .interrupted: return nil
            }
            switch DaemonConnection.read(from: descriptor) {
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
            // A pong that cannot be sent within the second: the daemon reads
            // nothing of ours, and its heartbeat would drop us anyway.
            guard sendFrame(.pong, payload, on: descriptor, until: deadline) else {
                guard ContinuousClock.now >= deadline else { return .ended(.connectionClosed) }
                return .ended(.protocolViolation("the daemon took no pong for a second: it does not read the connection"))
            }
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
        if case .sent = DaemonConnection.send(bytes, on: descriptor, until: deadline) { return true }
        return false
    }
}
