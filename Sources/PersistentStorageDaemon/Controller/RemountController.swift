import CSystemShims
import Logging
import NIOCore
import NIOPosix
import PersistentStorage
import PersistentStorageMount
import Synchronization

/// Owns the session set and decides when the storage is remounted.
///
/// The rules, from the protocol: the first session makes the storage
/// read-write, the last one to close makes it read-only again, and however
/// many sessions overlap there is exactly one remount each way. A new session
/// hears about the storage only once it is writable or the remount to
/// read-write has failed, because the reference's clients take a first
/// `write_allowed: false` as a refusal.
///
/// What sessions are told always comes from the kernel (`statvfs`), never from
/// what the controller last asked for: a remount done by someone else, or the
/// kernel's own `errors=remount-ro`, is reported as it is.
///
/// The actor runs on the daemon's event loop (its executor), so the session
/// handlers, which run there too, reach it without a thread switch: see
/// ``onController(_:)``. Remounts still run elsewhere (the remounters do
/// their blocking work on Dispatch threads).
actor RemountController {
    struct Settings: Sendable {
        /// Where the partition is mounted; remount decisions look at this.
        var mountPath: String
        /// The directory handed to clients; `write_allowed` is about this.
        var dataPath: String
        var readOnlyRetryDelay: Duration
        var maxSessions: Int
    }

    private struct Session {
        let connection: any SessionConnection
        /// False until the first `storage` event may be sent (see the type's comment).
        var isServed: Bool
        var lastSent: StorageStatus?
    }

    private let settings: Settings
    private let remounter: any StorageRemounter
    /// `MountTable.isWritable` outside tests.
    private let isWritable: @Sendable (String) -> Bool
    /// Told whenever the status changes (systemd's `STATUS=` line).
    private let statusObserver: (@Sendable (StorageStatus) -> Void)?
    private var lastObservedStatus: StorageStatus?
    private let logger: Logger

    private var sessions: [SessionID: Session] = [:]
    private var nextSessionNumber: UInt64 = 1
    /// The one task that remounts; while it runs, nobody else does.
    private var remountTask: Task<Void, Never>?
    private var readOnlyRetry: (task: Task<Void, Never>, generation: UInt64)?
    private var retryGeneration: UInt64 = 0
    private var counters = RemountCounters()
    private var lastFailure: String?
    private var isShuttingDown = false
    /// The coming broadcast of a changed session count; see ``publishSoon()``.
    private var queuedPublish: Scheduled<Void>?
    /// ``canAcceptSession`` as of the last change, for ``acceptsSessionsNow``.
    private let admission: Atomic<Bool>
    /// The actor's executor.
    private let eventLoop: any EventLoop

    nonisolated var unownedExecutor: UnownedSerialExecutor {
        eventLoop.executor.asUnownedSerialExecutor()
    }

    init(
        settings: Settings,
        remounter: any StorageRemounter,
        isWritable: @escaping @Sendable (String) -> Bool = { MountTable.isWritable($0) },
        statusObserver: (@Sendable (StorageStatus) -> Void)? = nil,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        logger: Logger
    ) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.remounter = remounter
        self.isWritable = isWritable
        self.statusObserver = statusObserver
        self.logger = logger
        admission = Atomic(settings.maxSessions > 0)
    }

    // MARK: - What the server and the status page ask

    /// The storage as sessions should see it now.
    var status: StorageStatus {
        StorageStatus(
            clients: sessions.count,
            data: .init(path: settings.dataPath, writeAllowed: isWritable(settings.dataPath)))
    }

    var report: StateReport {
        let status = status
        return StateReport(clients: status.clients, data: status.data, remounts: counters, error: lastFailure)
    }

    /// Whether one more session would be accepted now. Checked before the
    /// WebSocket upgrade so a refused peer gets an HTTP answer; ``sessionDidOpen(_:)``
    /// checks again because the two can race.
    var canAcceptSession: Bool {
        !isShuttingDown && sessions.count < settings.maxSessions
    }

    /// ``canAcceptSession`` without waiting for the actor: the server asks
    /// before every upgrade, and a hop to the actor and back cost a
    /// thread switch each way on the path of every new session. It may be a
    /// moment out of date, which ``sessionDidOpen(_:)`` checks anyway.
    nonisolated var acceptsSessionsNow: Bool {
        admission.load(ordering: .relaxed)
    }

    /// Runs `work` on the controller: at once when called on its event loop
    /// (where every session handler of the daemon runs), otherwise after
    /// a hop there. Opening and closing a session cost two thread switches
    /// each way through a `Task` and `await`; this way they cost none.
    nonisolated func onController(_ work: @escaping @Sendable (isolated RemountController) -> Void) {
        if eventLoop.inEventLoop {
            assumeIsolated { work($0) }
        } else {
            eventLoop.execute { self.assumeIsolated { work($0) } }
        }
    }

    private func updateAdmission() {
        admission.store(canAcceptSession, ordering: .relaxed)
    }

    // MARK: - Sessions

    /// Registers a new session, or returns nil when the daemon is shutting
    /// down or full (the caller then closes the connection).
    func sessionDidOpen(_ connection: any SessionConnection) -> SessionID? {
        guard canAcceptSession else { return nil }
        let id = SessionID(rawValue: nextSessionNumber)
        nextSessionNumber += 1
        // The storage is still writable while a read-only retry waits: this
        // session keeps it so, and the retry has nothing left to do.
        cancelReadOnlyRetry()
        sessions[id] = Session(connection: connection, isServed: false, lastSent: nil)
        updateAdmission()
        if remountTask == nil && isWritable(settings.mountPath) {
            sessions[id]?.isServed = true
            // The new session's open waits for this event: send it now.
            if !isShuttingDown { send(status, to: id) }
        } else {
            startRemounting()
        }
        publishSoon()
        return id
    }

    func sessionDidClose(_ id: SessionID) {
        guard sessions.removeValue(forKey: id) != nil else { return }
        updateAdmission()
        publishSoon()
        if sessions.isEmpty { startRemounting() }
    }

    /// The kernel's mount table changed (or the periodic re-check fired):
    /// tell every session whose view is now out of date.
    func mountTableDidChange() {
        publish()
    }

    // MARK: - Start-up and shutdown

    /// Read-write with the fix step, then read-only: repairs a storage left
    /// writable by a crash, and makes sure the data directory exists.
    func prepareStorage() async {
        await attemptRemount(to: .readWrite)
        await attemptRemount(to: .readOnly)
        if isWritable(settings.mountPath) && sessions.isEmpty {
            scheduleReadOnlyRetry()
        }
    }

    /// Tells every session that writing is no longer allowed and closes it.
    /// Returns how many sessions were open. No session is accepted afterwards.
    func endAllSessions() async -> Int {
        isShuttingDown = true
        updateAdmission()
        cancelReadOnlyRetry()
        queuedPublish?.cancel()
        // Let a remount in progress finish, so no command or syscall is cut
        // off half way; the loop stops after it because of `isShuttingDown`.
        await remountTask?.value
        let revoked = StorageStatus(clients: sessions.count, data: .init(path: settings.dataPath, writeAllowed: false))
        for session in sessions.values {
            session.connection.send(revoked)
            session.connection.close()
        }
        let count = sessions.count
        sessions.removeAll()
        return count
    }

    /// The last step of shutdown.
    func remountReadOnlyForExit() async {
        guard isWritable(settings.mountPath) else { return }
        await attemptRemount(to: .readOnly)
    }

    // MARK: - Remounting

    private func startRemounting() {
        guard remountTask == nil, !isShuttingDown else { return }
        remountTask = Task { await self.remountUntilSettled() }
    }

    /// Brings the mount in line with the session set, looking again after
    /// every remount because sessions come and go while it runs.
    private func remountUntilSettled() async {
        defer {
            remountTask = nil
            publish()
        }
        while !isShuttingDown {
            let mountIsWritable = isWritable(settings.mountPath)
            if sessions.isEmpty {
                guard mountIsWritable else { return }
                guard await attemptRemount(to: .readOnly) else {
                    scheduleReadOnlyRetry()
                    return
                }
                if isWritable(settings.mountPath) {
                    logger.warning("the remount to read-only succeeded, but \(settings.mountPath) is still writable")
                    return
                }
                releaseFreedMemory()
            } else {
                if mountIsWritable {
                    serveWaitingSessions()
                    return
                }
                let succeeded = await attemptRemount(to: .readWrite)
                if succeeded && !isWritable(settings.mountPath) {
                    lastFailure = "the remount to read-write succeeded, but \(settings.mountPath) is still read-only"
                    logger.error("\(lastFailure!)")
                }
                if !succeeded || !isWritable(settings.mountPath) {
                    // Those waiting get `false` now; the next session to open tries again.
                    serveWaitingSessions()
                    return
                }
            }
        }
    }

    /// One remount with its bookkeeping. Returns whether it succeeded.
    @discardableResult
    private func attemptRemount(to mode: RemountMode) async -> Bool {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try await remounter.remount(to: mode)
        } catch {
            counters.failed += 1
            lastFailure = String(describing: error)
            logger.error("remount to \(mode) failed: \(lastFailure!)")
            return false
        }
        switch mode {
        case .readWrite: counters.rw += 1
        case .readOnly: counters.ro += 1
        }
        lastFailure = nil
        logger.info("storage remounted \(mode) in \(clock.now - start)")
        return true
    }

    /// The last session has gone: hand the memory of its connections back
    /// to the kernel. glibc keeps freed heap otherwise, so after a burst of
    /// 10,000 sessions the daemon stayed at its peak RSS for good.
    private func releaseFreedMemory() {
        _ = pst_malloc_trim()
    }

    private func serveWaitingSessions() {
        for id in sessions.keys { sessions[id]?.isServed = true }
    }

    // MARK: - Read-only retry

    private func scheduleReadOnlyRetry() {
        cancelReadOnlyRetry()
        retryGeneration += 1
        let generation = retryGeneration
        let delay = settings.readOnlyRetryDelay
        logger.warning("cannot make \(settings.mountPath) read-only yet; retrying in \(delay)")
        let task = Task {
            do {
                try await Task.sleep(for: delay)
            } catch {
                return
            }
            self.readOnlyRetryIsDue(generation: generation)
        }
        readOnlyRetry = (task, generation)
    }

    private func readOnlyRetryIsDue(generation: UInt64) {
        guard readOnlyRetry?.generation == generation else { return }
        readOnlyRetry = nil
        startRemounting()
    }

    private func cancelReadOnlyRetry() {
        readOnlyRetry?.task.cancel()
        readOnlyRetry = nil
    }

    // MARK: - Telling sessions

    /// Sends the current state to every served session that has not seen it.
    private func publish() {
        guard !isShuttingDown else { return }
        let status = status
        if let statusObserver, status != lastObservedStatus {
            lastObservedStatus = status
            statusObserver(status)
        }
        for id in sessions.keys {
            send(status, to: id)
        }
    }

    private func send(_ status: StorageStatus, to id: SessionID) {
        guard let session = sessions[id], session.isServed, session.lastSent != status else { return }
        session.connection.send(status)
        sessions[id]?.lastSent = status
    }

    /// Tells the other sessions about a changed session count a little
    /// later, once for all the opens and closes in between. Every open or
    /// close changes `clients`, so telling everyone at once costs N² frames
    /// when N clients arrive together (1,000 sessions took 14 s, 10,000
    /// never finished) and 17 frames per session at a steady churn. The
    /// pause grows with the number of sessions so that a broadcast costs at
    /// most about a tenth of the daemon's time. Changes of `write_allowed`
    /// are not delayed: the remount and the mount-table watcher publish at once.
    private func publishSoon() {
        guard queuedPublish == nil, !isShuttingDown else { return }
        let delay = max(.milliseconds(20), .microseconds(50) * sessions.count)
        // A timer on the actor's own event loop: no task, and no thread switch when it fires.
        queuedPublish = eventLoop.scheduleTask(in: TimeAmount(delay)) {
            self.assumeIsolated { $0.publishQueued() }
        }
    }

    private func publishQueued() {
        queuedPublish = nil
        publish()
    }
}
