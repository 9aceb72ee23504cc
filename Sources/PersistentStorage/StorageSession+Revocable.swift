#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension StorageSession {
    /// Runs `body` with this session's URL, on the caller's actor, in a task
    /// of its own that is cancelled if write access goes away first.
    ///
    /// A task of its own, because a revocation must cancel `body` without
    /// cancelling the caller's task. Unstructured, because a child task of a
    /// group cannot take the caller's isolation (and so would require a
    /// `@Sendable` body); it is awaited before this returns, so `body`
    /// never outlives the call, and it is cancelled with the caller's task.
    ///
    /// - Returns: `body`'s outcome, and the revocation if one happened before it ended.
    func runRevocably<T>(
        isolation: isolated (any Actor)?,
        _ body: (URL) async throws -> sending T
    ) async -> sending (Result<T, any Error>, RevocationReason?) {
        let url = self.url
        let outcome = OutcomeBox<T>()
        let revocation: RevocationReason? = await withoutActuallyEscaping(body) { body in
            let bodyTask = Task {
                // Capturing the isolated parameter runs the task on its actor.
                _ = isolation
                do {
                    outcome.result = .success(try await body(url))
                } catch {
                    outcome.result = .failure(error)
                }
            }
            let watch = Task {
                // nil once the watch is cancelled: the body ended first.
                let reason = await self.waitUntilRevoked()
                if reason != nil { bodyTask.cancel() }
                return reason
            }
            await withTaskCancellationHandler {
                await bodyTask.value
            } onCancel: {
                bodyTask.cancel()
            }
            watch.cancel()
            return await watch.value
        }
        guard let result = outcome.result else {
            preconditionFailure("the body's task always reports an outcome")
        }
        return (result, revocation)
    }
}

/// Where the body's task leaves its outcome for the caller, which awaits
/// the task (on the same actor) before it reads it.
private final class OutcomeBox<T> {
    var result: Result<T, any Error>?
}
