import PersistentStorageProtocol

/// Why the daemon did not grant write access, and the error a caller can
/// act on for it.
///
/// PROTOCOL.md allows a daemon to send `write_allowed: false` before its
/// remount to read-write completes, so a `false` is not final; but if time
/// runs out after one, the daemon refused rather than stayed silent, and the
/// error says so (with its reason from `GET /state` when it gives one).
enum WriteAccessWait {
    /// Why write access was not granted, as ``BlockingSession`` sees it.
    enum Failure: Error {
        /// Time ran out; `sawReadOnly` if the daemon had said "read-only" meanwhile.
        case timedOut(sawReadOnly: Bool)
        case revoked(RevocationReason)
    }

    /// What to tell the caller when write access was not granted. It may ask
    /// the daemon for its reason, on this thread; a woken `wakeUp` ends that
    /// question without an answer.
    static func error(for failure: Failure, from endpoint: DaemonEndpoint, wakeUp: WakeUp?) -> PersistentStorageError {
        switch failure {
        case .timedOut(sawReadOnly: true):
            .writeRefused(reason: refusalReason(from: endpoint, wakeUp: wakeUp))
        case .timedOut(sawReadOnly: false):
            .timedOut(after: endpoint.timeout, waitingFor: "the PST daemon to make the storage writable")
        case .revoked(.connectionClosed):
            // Closing before granting access is how a daemon refuses.
            .writeRefused(reason: refusalReason(from: endpoint, wakeUp: wakeUp))
        case .revoked(.protocolViolation(let detail)):
            .protocolViolation(detail)
        case .revoked(let reason):
            .revoked(reason)
        }
    }

    /// The daemon's own explanation, if `GET /state` reports an error: the
    /// envelope's (a failed request), or the last remount failure that
    /// swift-pst's daemon shows beside the status.
    private static func refusalReason(from endpoint: DaemonEndpoint, wakeUp: WakeUp?) -> String? {
        switch try? StateRequest.fetch(from: endpoint, wakeUp: wakeUp) {
        case .failure(let failure, _)?: "\(failure.errorMessage) (\(failure.error))"
        case .state(let state)?: state.error
        default: nil
        }
    }
}
