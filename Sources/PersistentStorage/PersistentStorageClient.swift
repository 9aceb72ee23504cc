#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import PersistentStorageProtocol
import Logging

/// A client of the PST daemon (`kvmd-pst`): the way a service writes to
/// PiKVM's persistent storage, which is read-only except while someone holds
/// a session.
///
/// ```swift
/// let storage = PersistentStorageClient()      // /run/kvmd/pst.sock, 5 s timeout
/// try await storage.withWritableStorage(subdirectory: "my-service") { directory in
///     try settings.write(to: directory.appending(path: "settings.json"), options: .atomic)
/// }
/// let state = try await storage.state()  // clients, data.path, data.writeAllowed
/// let directory = try await storage.dataDirectory(subdirectory: "my-service")   // read-only use
/// ```
///
/// Every call connects anew, so a value can be shared freely between tasks.
/// Failures are ``PersistentStorageError``s.
public struct PersistentStorageClient: Sendable {
    /// The daemon's socket.
    public let socketPath: String
    /// How long to wait for the daemon: to connect, to answer, and to make the
    /// storage writable; between zero and ``maximumTimeout``.
    public let timeout: Duration
    /// The longest ``timeout``: a day. A longer one is taken as this, since a
    /// wait that long is a mistake and a far longer one overflows the timers.
    public static let maximumTimeout: Duration = .seconds(86_400)
    /// kvmd's default socket, `/run/kvmd/pst.sock`.
    public static let defaultSocketPath = defaultDaemonSocketPath
    private let logger: Logger

    /// - Parameters:
    ///   - socketPath: the daemon's Unix socket.
    ///   - timeout: how long any one exchange with the daemon may take, at
    ///     most ``maximumTimeout`` (a longer one is taken as that, a negative one as zero).
    ///   - logger: receives debug details of the exchange; silent by default.
    public init(
        socketPath: String = PersistentStorageClient.defaultSocketPath,
        timeout: Duration = .seconds(5),
        logger: Logger = Logger(label: "PersistentStorage", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.socketPath = socketPath
        self.timeout = min(max(timeout, .zero), Self.maximumTimeout)
        self.logger = logger
    }

    private var endpoint: DaemonEndpoint { DaemonEndpoint(socketPath: socketPath, timeout: timeout) }

    /// Asks the daemon for its state (`GET /state`) without opening a session:
    /// the session count and the data directory, and from swift-pst's daemon
    /// also the remount counts, the last failure, the sessions and who holds
    /// the storage busy (nil from kvmd's daemon; see ``/PersistentStorageProtocol/DaemonState``).
    ///
    /// ```swift
    /// let state = try await PersistentStorageClient().state()
    /// print(state.clients, state.data.path, state.data.writeAllowed)
    /// ```
    public func state() async throws -> DaemonState {
        switch try await reportingCancellation({ try await StateRequest.fetch(from: endpoint) }) {
        case .state(let state):
            return state
        case .failure(let failure, let statusCode):
            throw PersistentStorageError.refusal(
                statusCode: statusCode, reason: failure.errorMessage, socketPath: socketPath, request: "GET /state")
        }
    }

    /// Where the data lives, for reading it: no session is opened, so the
    /// storage stays read-only and the directory may not exist yet.
    ///
    /// ```swift
    /// let directory = try await storage.dataDirectory(subdirectory: "my-service")
    /// let settings = try? Data(contentsOf: directory.appending(path: "settings.json"))
    /// ```
    ///
    /// - Parameter subdirectory: a relative path inside the data directory, or
    ///   `nil` for the data directory itself.
    public func dataDirectory(subdirectory: String? = nil) async throws -> URL {
        let validated = try subdirectory.map(StorageSubdirectory.init(validating:))
        return StorageSubdirectory.resolve(validated, in: try await state().data.path)
    }

    /// Opens a session and waits until the storage is writable; see ``StorageSession``.
    ///
    /// ```swift
    /// let session = try await storage.openSession(subdirectory: "my-service")
    /// try journal.append(to: session.url)
    /// await session.close()
    /// ```
    ///
    /// - Parameter subdirectory: a relative path inside the data directory,
    ///   created if missing, or `nil` for the data directory itself.
    public func openSession(subdirectory: String? = nil) async throws -> StorageSession {
        let validated = try subdirectory.map(StorageSubdirectory.init(validating:))
        return try await reportingCancellation {
            try await StorageSession.open(at: endpoint, subdirectory: validated, logger: logger)
        }
    }

    /// Runs `body` while the storage is writable, and ends the session afterwards.
    ///
    /// It opens a session, waits (at most ``timeout``) for the daemon to make the
    /// storage writable, creates `subdirectory` if it is missing, and passes its
    /// URL to `body`. The session ends when `body` returns, throws or is
    /// cancelled; the daemon makes the storage read-only again once no session
    /// is left.
    ///
    /// **Durable on return.** Whatever ended `body` (returning, throwing,
    /// cancellation, revocation), everything it wrote to the storage is
    /// flushed to the disk (syncfs(2)) before the session ends and before this
    /// returns or throws: a power cut after that loses none of it. For a file
    /// that must be either its old or its new version, write a temporary file,
    /// `fsync` it, rename it over the old one and `fsync` the directory.
    ///
    /// ```swift
    /// let count = try await storage.withWritableStorage(subdirectory: "my-service") { directory in
    ///     try Data("hello".utf8).write(to: directory.appending(path: "greeting"))
    ///     return try FileManager.default.contentsOfDirectory(atPath: directory.path).count
    /// }
    /// ```
    ///
    /// If write access goes away while `body` runs (the storage is remounted
    /// read-only, the daemon stops, or the connection drops), `body`'s task is
    /// cancelled and, once it has returned, this throws
    /// ``PersistentStorageError/revoked(_:)``; whatever `body` returned or threw
    /// is discarded because its writes may be incomplete.
    ///
    /// `body` runs on the caller's actor, like code written in its place: from
    /// an actor it may use the actor's state without `await`, and neither
    /// `body` nor its result need be `Sendable`. It runs in a task of its
    /// own, so that a revocation can cancel it without cancelling yours.
    ///
    /// ```swift
    /// actor SettingsStore {
    ///     var saved = 0
    ///     func save(_ text: String, with storage: PersistentStorageClient) async throws {
    ///         try await storage.withWritableStorage(subdirectory: "settings") { directory in
    ///             try Data(text.utf8).write(to: directory.appending(path: "settings.txt"))
    ///             saved += 1                       // the actor's state, no await
    ///         }
    ///     }
    /// }
    /// ```
    ///
    /// If your task is cancelled, at any stage (connecting, waiting for write
    /// access, or while `body` runs), the session is closed and this throws
    /// `CancellationError`.
    ///
    /// - Parameters:
    ///   - subdirectory: a relative path inside the data directory, created
    ///     if missing, or `nil` for the data directory itself.
    ///   - isolation: the actor `body` runs on; the caller's, unless given.
    ///   - body: what to do while the storage is writable, given the
    ///     directory's URL.
    /// - Returns: what `body` returned.
    /// - Throws: what `body` threw, a ``PersistentStorageError``, or
    ///   `CancellationError`; ``PersistentStorageError/notDurable(path:reason:)``
    ///   when `body` succeeded but the flush to the disk failed.
    public func withWritableStorage<T>(
        subdirectory: String? = nil,
        isolation: isolated (any Actor)? = #isolation,
        _ body: (URL) async throws -> sending T
    ) async throws -> sending T {
        let session = try await openSession(subdirectory: subdirectory)
        let (outcome, revocation) = await session.runRevocably(isolation: isolation, body)
        // Whatever ended the body, what it wrote is on the disk before the
        // session ends and before this returns (Documentation/Protocol.md).
        var notDurable: PersistentStorageError?
        do {
            try await session.syncToDisk()
        } catch {
            logger.error("\(error)")
            notDurable = error
        }
        await session.closeConnection()
        // Cancelled while the body ran: the body's task was cancelled with
        // ours, so its outcome (and a revocation that cancellation looks like)
        // is not what the caller asked for.
        try Task.checkCancellation()
        if let revocation {
            logger.debug("PST write access revoked while the body ran: \(revocation)")
            throw PersistentStorageError.revoked(revocation)
        }
        let value = try outcome.get()
        if let notDurable { throw notDurable }
        return value
    }
}
