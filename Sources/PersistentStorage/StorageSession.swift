#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SystemSupport
import PersistentStorageProtocol
import Glibc
import Logging

/// One open session with the PST daemon: while it is open, the daemon keeps
/// the storage writable.
///
/// Most code wants ``PersistentStorageClient/withWritableStorage(subdirectory:isolation:_:)``,
/// which is built on this type. Use a session directly when a service holds the
/// storage across several calls, and close it yourself:
///
/// ```swift
/// let session = try await storage.openSession(subdirectory: "my-service")
/// defer { Task { await session.close() } }       // or close it in your shutdown path
/// try data.write(to: session.url.appending(path: "cache.bin"))
/// for try await status in session.statusUpdates where !status.data.writeAllowed {
///     break                                       // revoked: stop writing
/// }
/// await session.close()
/// ```
///
/// A session that was never closed keeps the storage read-write until the
/// process exits, so always call ``close()``.
public final class StorageSession: Sendable {
    /// The writable directory: the data directory, or the subdirectory inside it
    /// that was asked for (created if it was missing).
    public let url: URL
    /// The status that made the storage usable (`writeAllowed` is `true`).
    public let initialStatus: StorageStatus
    /// Every later `storage` event, in order.
    ///
    /// It finishes without an error after ``close()``, and throws
    /// ``PersistentStorageError/revoked(_:)`` when the connection closes or the
    /// daemon breaks the protocol. A status with `writeAllowed == false` is a
    /// revocation too. Iterate it from one task at a time; use either this or
    /// ``waitUntilRevoked()``, not both.
    public let statusUpdates: AsyncThrowingStream<StorageStatus, any Error>

    private let holder: SessionHolder
    /// The storage's filesystem, as the data directory showed it at the start.
    private let device: dev_t?

    private init(url: URL, initialStatus: StorageStatus, holder: SessionHolder, updates: SessionHolder.Updates) {
        self.url = url
        self.initialStatus = initialStatus
        self.statusUpdates = updates
        self.holder = holder
        self.device = StorageSync.device(of: initialStatus.data.path)
    }

    /// Opens `/ws` and waits until the daemon reports the storage writable.
    static func open(
        at endpoint: DaemonEndpoint,
        subdirectory: StorageSubdirectory?,
        logger: Logger
    ) async throws -> StorageSession {
        let (holder, status, updates) = try await SessionHolder.open(at: endpoint, logger: logger)
        do {
            try DataDirectoryCheck.check(status.data.path)
            let url = StorageSubdirectory.resolve(subdirectory, in: status.data.path)
            if let subdirectory, let link = subdirectory.firstSymbolicLink(below: status.data.path) {
                throw PersistentStorageError.invalidSubdirectory(
                    subdirectory.components.joined(separator: "/"),
                    reason: "\(link) is a symbolic link, which could lead out of the data directory")
            }
            try createDirectory(url)
            return StorageSession(url: url, initialStatus: status, holder: holder, updates: updates)
        } catch {
            await holder.close()
            throw error
        }
    }

    /// `mkdir -p`: every missing directory on the way, with the mode the umask gives.
    private static func createDirectory(_ url: URL) throws(PersistentStorageError) {
        let path = url.path(percentEncoded: false)
        var info = stat()
        if stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { return }  // the usual case
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, 0o777) == 0 { continue }
            let error = errno
            if error == EEXIST && stat(prefix, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR { continue }
            let reason = error == EEXIST ? "\(prefix) exists and is not a directory" : String(cString: strerror(error))
            throw .cannotCreateDirectory(path: path, reason: reason)
        }
    }

    /// Waits until write access goes away and says why.
    ///
    /// Returns `nil` when the session was closed with ``close()`` or the
    /// waiting task was cancelled first.
    public func waitUntilRevoked() async -> RevocationReason? {
        do {
            for try await status in statusUpdates where !status.data.writeAllowed {
                return .writeNoLongerAllowed
            }
            return nil
        } catch PersistentStorageError.revoked(let reason) {
            return reason
        } catch {
            return .protocolViolation("\(error)")
        }
    }

    /// Flushes everything written to the storage to the disk (syncfs(2)),
    /// on a thread of its own, since the disk may take a while.
    ///
    /// ``close()`` does this first, and ``PersistentStorageClient/withWritableStorage(subdirectory:isolation:_:)``
    /// before it returns or throws; call it yourself to make data durable
    /// while the session stays open.
    ///
    /// - Throws: ``PersistentStorageError/notDurable(path:reason:)`` when the
    ///   filesystem reported an error (what was written may not be on the disk).
    public func syncToDisk() async throws(PersistentStorageError) {
        let path = url.path(percentEncoded: false)
        let directories = StorageSync.candidates(path, dataPath: initialStatus.data.path)
        guard let device else { throw .notDurable(path: path, reason: "the data directory was not there when the session opened") }
        let failure = await withCheckedContinuation { (continuation: CheckedContinuation<String?, Never>) in
            DetachedThread.run(name: "pst-syncfs") {
                continuation.resume(returning: StorageSync.sync(anyOf: directories, device: device))
            }
        }
        if let failure { throw .notDurable(path: path, reason: failure) }
    }

    /// Flushes what was written to the disk (see ``syncToDisk()``), then ends
    /// the session: the daemon makes the storage read-only again once no
    /// session is left. Safe to call more than once. A failed flush is
    /// logged by nobody here; call ``syncToDisk()`` first to see it.
    public func close() async {
        try? await syncToDisk()
        await closeConnection()
    }

    /// Ends the session without flushing (``PersistentStorageClient`` has flushed).
    func closeConnection() async {
        await holder.close()
    }
}
