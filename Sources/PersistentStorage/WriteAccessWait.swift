/// Waiting for the daemon to make the storage writable for a new session.
enum WriteAccessWait {
    /// The first `storage` status with `writeAllowed == true`.
    ///
    /// PROTOCOL.md allows a daemon to send `write_allowed: false` before its
    /// remount to read-write completes, so a `false` is not final; but if time
    /// runs out after one, the daemon refused rather than stayed silent, and the
    /// error says so (with its reason from `GET /state` when it gives one).
    static func firstWritableStatus(
        in connection: SessionConnection,
        endpoint: DaemonEndpoint
    ) async throws -> StorageStatus {
        var sawReadOnly = false
        let deadline = connection.finishUpdates(
            after: endpoint.timeout,
            throwing: .timedOut(after: endpoint.timeout, waitingFor: "the PST daemon to make the storage writable"))
        defer { deadline.cancel() }
        do {
            for try await status in connection.updates {
                if status.data.writeAllowed { return status }
                sawReadOnly = true
            }
            try Task.checkCancellation()
            throw PersistentStorageError.revoked(.connectionClosed)
        } catch PersistentStorageError.timedOut where sawReadOnly {
            throw PersistentStorageError.writeRefused(reason: await refusalReason(from: endpoint))
        } catch PersistentStorageError.revoked(.connectionClosed) {
            // Closing before granting access is how a daemon refuses.
            throw PersistentStorageError.writeRefused(reason: await refusalReason(from: endpoint))
        } catch PersistentStorageError.revoked(.protocolViolation(let detail)) {
            throw PersistentStorageError.protocolViolation(detail)
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
