import Dispatch
import PersistentStorageMount

/// Remounts with libmount in this process, then runs the fix step after a
/// read-write remount. Needs root or `CAP_SYS_ADMIN`.
///
/// ```swift
/// let location = try FstabReader().findStorage().location
/// let remounter = InProcessRemounter(location: location)
/// try await remounter.remount(to: .readWrite)
/// ```
public struct InProcessRemounter: StorageRemounter {
    public var location: StorageLocation
    public var layout: DataLayout
    public var fstabPath: String

    public init(location: StorageLocation, layout: DataLayout = .dataSubdirectory, fstabPath: String = FstabReader.defaultPath) {
        self.location = location
        self.layout = layout
        self.fstabPath = fstabPath
    }

    public func remount(to mode: RemountMode) async throws {
        let location = location
        let remount = StorageRemount(fstabPath: fstabPath, layout: layout)
        // mount(2) and syncfs(2) can block for as long as the disk takes; keep
        // them off the cooperative thread pool that serves the sessions.
        try await runBlocking {
            do {
                try remount.perform(mode, at: location)
            } catch let error as StorageRemountError {
                if case .fix = error {
                    // Clients would be told they may write into a directory that is
                    // missing or not theirs: refuse instead, and leave nothing writable.
                    try? remount.perform(.readOnly, at: location)
                }
                throw error
            }
        }
    }
}

/// Runs blocking work on a Dispatch thread and awaits its result.
func runBlocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async {
            continuation.resume(with: Result { try work() })
        }
    }
}
