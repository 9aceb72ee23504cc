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
    static func open(at endpoint: DaemonEndpoint, logger: Logger) async throws -> SessionConnection {
        do {
            return try await SessionConnection.open(to: endpoint, logger: logger)
        } catch Failure.timedOut(sawReadOnly: true) {
            throw PersistentStorageError.writeRefused(reason: await refusalReason(from: endpoint))
        } catch Failure.timedOut(sawReadOnly: false) {
            throw PersistentStorageError.timedOut(after: endpoint.timeout, waitingFor: "the PST daemon to make the storage writable")
        } catch Failure.revoked(.connectionClosed) {
            // Closing before granting access is how a daemon refuses.
            throw PersistentStorageError.writeRefused(reason: await refusalReason(from: endpoint))
        } catch Failure.revoked(.protocolViolation(let detail)) {
            throw PersistentStorageError.protocolViolation(detail)
        } catch Failure.revoked(let reason) {
            throw PersistentStorageError.revoked(reason)
        }
    }
    /// The daemon's own explanation, if `GET /state` reports an error: the
    /// envelope's (a failed request), or the last remount failure that
    /// swift-pst's daemon shows beside the status.
    private static func refusalReason(from endpoint: DaemonEndpoint) async -> String? {
        switch try? await StateRequest.fetch(from: endpoint) {
        case .failure(let failure)?: "\(failure.errorMessage) (\(failure.error))"
        case .status(_, let lastRemountError?)?: lastRemountError
        default: nil
        }
    }
}
