import Dispatch
import Logging
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
    /// Told what the fix step repaired (a link a client planted, say).
    public var logger: Logger
    /// Which filesystem is the storage, resolved once and kept.
    private let storage: MountedStorage

    public init(
        location: StorageLocation, layout: DataLayout = .kvmdDefault, fstabPath: String = FstabReader.defaultPath,
        logger: Logger = Logger(label: "kvmd-pst")
    ) {
        self.location = location
        self.layout = layout
        self.fstabPath = fstabPath
        self.logger = logger
        storage = MountedStorage(mountPath: location.mountPath, fstabPath: fstabPath)
    }

    public func remount(to mode: RemountMode) async throws {
        let location = location
        let storage = storage
        let remount = StorageRemount(fstabPath: fstabPath, layout: layout)
        // mount(2) and syncfs(2) can block for as long as the disk takes; keep
        // them off the cooperative thread pool that serves the sessions.
        let repairs = try await runBlocking {
            do {
                return try remount.perform(mode, at: location, storage: storage)
            } catch let error as StorageRemountError {
                if case .fix = error {
                    // Clients would be told they may write into a directory that is
                    // missing or not theirs: refuse instead, and leave nothing writable.
                    _ = try? remount.perform(.readOnly, at: location)
                }
                throw error
            }
        }
        for repair in repairs { logger.warning("\(repair)") }
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
