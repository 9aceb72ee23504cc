import SystemSupport
import Glibc
import NIOCore

/// The system calls on a connection to the daemon: a plain non-blocking Unix
/// socket, waited on with `poll(2)`, beside a ``WakeUp`` when the waiting
/// thread must be wakeable (the async API's). Both ``BlockingSession`` and
/// ``StateRequest`` speak to the daemon only through these.
enum DaemonConnection {
    /// What a wait ended with.
    enum Waited {
        /// The socket is ready (or failed: the read or send that follows says how).
        case ready
        case timedOut
        /// The ``WakeUp`` was woken.
        case interrupted
    }

    /// A close-on-exec Unix stream socket connected to the daemon, non-blocking.
    ///
    /// When the daemon's listen queue is full, connect(2) on a Unix socket
    /// waits for room if the socket blocks, and fails with `EAGAIN` at once
    /// if not. Without a `wakeUp` (`kvmd-pstrun`) the socket is connected
    /// while still blocking, for at most the timeout, so that a burst of
    /// clients queues in the kernel; with one, a blocked connect could not be
    /// woken, so `EAGAIN` is retried after short pauses on the wake-up until
    /// the timeout, as a blocking client would wait.
    ///
    /// - Returns: the descriptor, or nil if `wakeUp` was woken.
    static func connect(to endpoint: DaemonEndpoint, wakeUp: WakeUp?) throws(PersistentStorageError) -> CInt? {
        guard let address = UnixSocketAddress(path: endpoint.socketPath) else {
            throw endpoint.connectError(for: IOError(errnoCode: ENAMETOOLONG, reason: "connect"))
        }
        let deadline = ContinuousClock.now + endpoint.timeout
        var pause = Duration.milliseconds(1)
        while true {
            if wakeUp?.isWoken == true { return nil }
            let flags = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (wakeUp == nil ? 0 : Int32(SOCK_NONBLOCK.rawValue))
            let descriptor = socket(AF_UNIX, flags, 0)
            guard descriptor >= 0 else { throw endpoint.connectError(for: IOError(errnoCode: errno, reason: "socket")) }
            if wakeUp == nil {
                let (seconds, attoseconds) = endpoint.timeout.components
                var sendTimeout = timeval(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
                _ = setsockopt(descriptor, SOL_SOCKET, SO_SNDTIMEO, &sendTimeout, socklen_t(MemoryLayout<timeval>.size))
            }
            var result: CInt
            repeat {
                result = address.withSocketAddress { Glibc.connect(descriptor, $0, $1) }
            } while result != 0 && errno == EINTR
            if result == 0 && wakeUp == nil {
                // Connected while blocking: non-blocking from here on.
                result = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) | O_NONBLOCK)
            }
            if result == 0 { return descriptor }
            let code = errno
            Glibc.close(descriptor)
            if let wakeUp, code == EAGAIN, ContinuousClock.now + pause < deadline {
                if case .interrupted = wait(for: 0, on: -1, wakeUp: wakeUp, until: .now + pause) { return nil }
                pause = min(pause * 2, .milliseconds(50))
                continue
            }
            throw endpoint.connectError(for: IOError(errnoCode: code, reason: "connect"))
        }
    }

    enum ReadResult {
        case bytes(ByteBuffer)
        case wouldBlock
        case endOfStream
    }

    /// One read(2) of what has come; an error other than EAGAIN ends the
    /// stream, as the daemon closing it would (a reset connection is a closed one).
    static func read(from descriptor: CInt) -> ReadResult {
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

    enum Sent {
        case sent
        /// The connection failed, or time ran out.
        case failed
        case interrupted
    }

    /// Sends all of `bytes`, waiting for room until `deadline`. MSG_NOSIGNAL:
    /// a daemon that has closed must not kill us with SIGPIPE.
    static func send(_ bytes: ByteBuffer, on descriptor: CInt, wakeUp: WakeUp? = nil, until deadline: ContinuousClock.Instant) -> Sent {
        var rest = bytes
        while rest.readableBytes > 0 {
            let sent = rest.withUnsafeReadableBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent > 0 {
                rest.moveReaderIndex(forwardBy: sent)
            } else if sent < 0 && errno == EINTR {
                continue
            } else if sent < 0 && errno == EAGAIN {
                switch wait(for: Int16(POLLOUT), on: descriptor, wakeUp: wakeUp, until: deadline) {
                case .ready: continue
                case .timedOut: return .failed
                case .interrupted: return .interrupted
                }
            } else {
                return .failed
            }
        }
        return .sent
    }

    /// Waits until `descriptor` polls for `events` (or hung up or failed),
    /// `wakeUp` is woken, or `deadline` passes (never, if nil). A `descriptor`
    /// of -1 waits on the wake-up alone.
    static func wait(for events: Int16, on descriptor: CInt, wakeUp: WakeUp?, until deadline: ContinuousClock.Instant?) -> Waited {
        var entries = [pollfd(fd: descriptor, events: events, revents: 0)]
        if let wakeUp { entries.append(pollfd(fd: wakeUp.descriptor, events: Int16(POLLIN), revents: 0)) }
        while true {
            if let deadline, deadline <= .now { return .timedOut }
            let result = Glibc.poll(&entries, nfds_t(entries.count), deadline.map(pollTimeout(until:)) ?? -1)
            if result < 0 && errno == EINTR { continue }
            if result < 0 { return .ready }  // let the read or send report it
            if entries.count > 1 && entries[1].revents != 0 { return .interrupted }
            if result > 0 { return .ready }
        }
    }

    /// `poll(2)`'s timeout for a wait until `deadline`: milliseconds, rounded
    /// up so that a wait never ends just before its deadline; 0 once it is past.
    static func pollTimeout(until deadline: ContinuousClock.Instant) -> Int32 {
        let (seconds, attoseconds) = max(.zero, deadline - .now).components
        return Int32(clamping: seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
    }
}
