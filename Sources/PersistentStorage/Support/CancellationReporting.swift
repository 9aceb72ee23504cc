/// Runs `operation` and, if the calling task has been cancelled by the time
/// it fails, throws `CancellationError` instead of its error.
///
/// Cancelling a call wakes the thread that waits on its connection, so
/// whatever stage it was in may fail with a consequence of that (an
/// interrupted wait, a refusal read into the missing answer); none of those
/// is what happened.
/// Every public entry point reports through here, so that a cancelled caller
/// always sees `CancellationError`, whatever stage it was cancelled in.
func reportingCancellation<T>(_ operation: () async throws -> T) async throws -> T {
    do {
        return try await operation()
    } catch where Task.isCancelled && !(error is CancellationError) {
        throw CancellationError()
    }
}
