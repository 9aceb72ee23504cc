/// Runs `operation`, failing with ``PersistentStorageError/timedOut(after:waitingFor:)``
/// if it has not finished within `timeout`. The operation is cancelled then.
func withTimeout<T: Sendable>(
    _ timeout: Duration,
    waitingFor what: String,
    _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: timeout)
            throw PersistentStorageError.timedOut(after: timeout, waitingFor: what)
        }
        defer { group.cancelAll() }
        // Both children are added, so `next()` returns a value or throws.
        return try await group.next()!
    }
}
