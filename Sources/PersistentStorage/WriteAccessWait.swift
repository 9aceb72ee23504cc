import PersistentStorageProtocol
import Logging

/// Opening a session: connecting, the upgrade, and waiting for the daemon
/// to make the storage writable, with the errors a caller can act on.
enum WriteAccessWait {
    /// Why write access was not granted, as ``StorageEventHandler`` sees it.
    enum Failure: Error {
        /// Time ran out; `sawReadOnly` if the daemon had said "read-only" meanwhile.
        case timedOut(sawReadOnly: Bool)
        case revoked(RevocationReason)
    }

    /// A connection whose first `storage` status says `writeAllowed == true`.
    ///
    /// PROTOCOL.md allows a daemon to send `write_allowed: false` before its
    /// remount to read-write completes, so a `false` is not final; but if time
    /// runs out after one, the daemon refused rather than stayed silent, and the
    /// error says so (with its reason from `GET /state` when it gives one).
    static func open(at endpoint: DaemonEndpoint, logger: Logger) async throws -> SessionChannel {
        do {
            return try await SessionChannel.open(to: endpoint, logger: logger)
        } catch let failure as Failure {
            throw await error(for: failure, from: endpoint)
        }
    }

    /// What to tell the caller when write access was not granted.
    static func error(for failure: Failure, from endpoint: DaemonEndpoint) async -> PersistentStorageError {
        switch failure {
        case .timedOut(sawReadOnly: true):
            .writeRefused(reason: await refusalReason(from: endpoint))
        case .timedOut(sawReadOnly: false):
            .timedOut(after: endpoint.timeout, waitingFor: "the PST daemon to make the storage writable")
        case .revoked(.connectionClosed):
            // Closing before granting access is how a daemon refuses.
            .writeRefused(reason: await refusalReason(from: endpoint))
        case .revoked(.protocolViolation(let detail)):
            .protocolViolation(detail)
        case .revoked(let reason):
            .revoked(reason)
        }
    }

    /// The daemon's own explanation, if `GET /state` reports an error: the
    /// envelope's (a failed request), or the last remount failure that
    /// swift-pst's daemon shows beside the status.
    private static func refusalReason(from endpoint: DaemonEndpoint) async -> String? {
        switch try? await StateRequest.fetch(from: endpoint) {
        case .failure(let failure, _)?: "\(failure.errorMessage) (\(failure.error))"
        case .state(let state)?: state.error
        default: nil
        }
    }
}
