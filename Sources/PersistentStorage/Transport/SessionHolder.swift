import Glibc
import Logging
import Synchronization

/// A ``BlockingSession`` held for the async API (``StorageSession``) on a
/// thread of its own, from the connect to the close handshake.
///
/// The thread opens the session, hands the granting status back to the
/// caller's task, and then waits in `poll(2)` on the socket and a ``WakeUp``
/// until the connection ends or ``close()`` wakes it: it answers pings, and
/// passes every later status to ``Updates``. One thread per session rather
/// than one poller shared by all: the thread that opened the session goes on
/// to hold it, so nothing is handed between threads, and a blocked thread
/// costs a few pages of stack while a service holds a handful of sessions
/// (the tests open 200 at once). A session that is never closed keeps its
/// thread, and the storage read-write, until the daemon ends it or the
/// process exits.
final class SessionHolder: Sendable {
    /// A session's later statuses; it finishes without an error after
    /// ``close()``, and with ``PersistentStorageError/revoked(_:)`` when the
    /// daemon ends the connection or breaks the protocol.
    typealias Updates = AsyncThrowingStream<StorageStatus, any Error>

    private struct State {
        /// Who waits in ``close()`` for the thread to be done.
        var closeWaiters: [CheckedContinuation<Void, Never>] = []
        /// Set once the connection is closed and ``Updates`` finished.
        var finished = false
    }

    private let wakeUp: WakeUp
    private let state = Mutex(State())

    private init(wakeUp: WakeUp) {
        self.wakeUp = wakeUp
    }

    /// Opens a session on a new thread and holds it there.
    ///
    /// - Throws: the ``PersistentStorageError`` of the open, or
    ///   `CancellationError` if the caller is cancelled before it is done.
    static func open(at endpoint: DaemonEndpoint, logger: Logger) async throws -> (SessionHolder, StorageStatus, Updates) {
        let (updates, continuation) = Updates.makeStream()
        do {
            let (holder, status): (SessionHolder, StorageStatus) = try await BlockingCall.run(name: "pst-session", for: endpoint) {
                (wakeUp: WakeUp, opened: CheckedContinuation<(SessionHolder, StorageStatus), any Error>) in
                let session: BlockingSession
                do {
                    session = try BlockingSession.open(at: endpoint, logger: logger, wakeUp: wakeUp)
                } catch {
                    opened.resume(throwing: error)
                    return
                }
                let holder = SessionHolder(wakeUp: wakeUp)
                opened.resume(returning: (holder, session.initialStatus))
                holder.hold(session, updates: continuation)
            }
            if Task.isCancelled {
                // Cancelled as the open succeeded: close what was opened
                // (the cancellation may have woken the thread for it already).
                await holder.close()
                throw CancellationError()
            }
            return (holder, status, updates)
        } catch {
            continuation.finish()
            throw error
        }
    }

    /// The thread's work once the session is open.
    private func hold(_ session: BlockingSession, updates: Updates.Continuation) {
        var end = session.readAvailable { updates.yield($0) }
        while end == nil {
            switch DaemonConnection.wait(for: Int16(POLLIN), on: session.descriptor, wakeUp: wakeUp, until: nil) {
            case .ready, .timedOut:
                end = session.readAvailable { updates.yield($0) }
            case .interrupted:
                session.close()
                updates.finish()
                finished()
                return
            }
        }
        updates.finish(throwing: PersistentStorageError.revoked(end!))
        session.close()
        finished()
    }

    private func finished() {
        let waiters = state.withLock { state in
            state.finished = true
            defer { state.closeWaiters = [] }
            return state.closeWaiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Ends the session with the close handshake (``BlockingSession/close()``,
    /// at most ``BlockingSession/closeHandshakeTimeout``), so that the daemon
    /// has seen the end when this returns. Safe to call more than once and
    /// from several tasks: every call returns once the connection is closed.
    func close() async {
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let done = state.withLock { state in
                if !state.finished { state.closeWaiters.append(waiter) }
                return state.finished
            }
            if done {
                waiter.resume()
            } else {
                wakeUp.wake()
            }
        }
    }
}
