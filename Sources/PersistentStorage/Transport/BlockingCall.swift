import SystemSupport

/// Blocking work with the daemon for the async API, kept off Swift's
/// cooperative pool on a thread of its own.
///
/// The work gets a ``WakeUp`` to poll beside the daemon's socket; the
/// calling task's cancellation wakes it, and the call then throws
/// `CancellationError` whatever the work reported. The work resumes the
/// continuation once with its outcome, and may go on using the thread
/// afterwards (a session is held on it until it ends, ``SessionHolder``).
enum BlockingCall {
    /// - Throws: what `work` resumed with, `CancellationError`, or
    ///   ``PersistentStorageError/connectionFailed(socketPath:reason:)`` if
    ///   no thread or descriptor could be had (the caller's thread is not
    ///   blocked instead: it may be one of the cooperative pool's few).
    static func run<T: Sendable>(
        name: String, for endpoint: DaemonEndpoint, _ work: @escaping @Sendable (WakeUp, CheckedContinuation<T, any Error>) -> Void
    ) async throws -> T {
        // Not even a socket for a caller that is cancelled already.
        try Task.checkCancellation()
        let wakeUp: WakeUp
        do {
            wakeUp = try WakeUp()
        } catch {
            throw PersistentStorageError.connectionFailed(socketPath: endpoint.socketPath, reason: "cannot make a socket pair: \(error.description)")
        }
        do {
            return try await withTaskCancellationHandler {
                try await withCheckedThrowingContinuation { continuation in
                    if DetachedThread.start(name: name, { work(wakeUp, continuation) }) != nil {
                        continuation.resume(throwing: PersistentStorageError.connectionFailed(
                            socketPath: endpoint.socketPath, reason: "cannot start a thread for the connection"))
                    }
                }
            } onCancel: {
                wakeUp.wake()
            }
        } catch where wakeUp.isWoken {
            // Whatever the work met on its way out (an interrupted wait, a
            // refusal read into the missing answer), the caller's
            // cancellation is the reason.
            throw CancellationError()
        }
    }
}
