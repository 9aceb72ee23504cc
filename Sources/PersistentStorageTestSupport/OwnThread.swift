import Foundation

/// Runs blocking `work` (waiting for a child process, mkfs, a mount) on a
/// thread of its own and suspends until it is done.
///
/// The cooperative pool that runs every test's tasks has one thread per core,
/// two on CI. Suites run in parallel, and a few of them blocking those threads
/// in `waitUntilExit` at once stalled all the others' tasks for seconds, so a
/// scripted peer missed a client's one-second deadline.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

/// ``onOwnThread(_:)`` for work that cannot fail.
public func onOwnThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
    await withCheckedContinuation { continuation in
        Thread { continuation.resume(returning: work()) }.start()
    }
}
