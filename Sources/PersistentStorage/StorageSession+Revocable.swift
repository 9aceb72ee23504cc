#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension StorageSession {
    private enum Finished<T: Sendable>: Sendable {
        case body(Result<T, any Error>)
        case revoked(RevocationReason?)
    }

    /// Runs `body` with this session's URL in a child task, and cancels it if
    /// write access goes away first.
    ///
    /// - Returns: `body`'s outcome, and the revocation if one happened before it ended.
    func runRevocably<T: Sendable>(
        _ body: @Sendable (URL) async throws -> T
    ) async -> (Result<T, any Error>, RevocationReason?) {
        let url = self.url
        // The task group guarantees `body` does not outlive this call.
        return await withoutActuallyEscaping(body) { body in
            await withTaskGroup(of: Finished<T>.self) { group in
                group.addTask {
                    do {
                        return .body(.success(try await body(url)))
                    } catch {
                        return .body(.failure(error))
                    }
                }
                group.addTask { .revoked(await self.waitUntilRevoked()) }

                var revocation: RevocationReason?
                while let finished = await group.next() {
                    switch finished {
                    case .body(let outcome):
                        group.cancelAll()
                        return (outcome, revocation)
                    case .revoked(let reason?):
                        revocation = reason
                        group.cancelAll()
                    case .revoked(nil):
                        // Only cancellation of the whole call ends the watch without
                        // a reason; the body is cancelled with it and ends soon.
                        break
                    }
                }
                preconditionFailure("the body's child task always reports an outcome")
            }
        }
    }
}
