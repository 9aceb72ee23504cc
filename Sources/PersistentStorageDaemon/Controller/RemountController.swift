import KvmdLogging
import SystemSupport
import CSystemShims
import Logging
import NIOCore
import NIOPosix
import PersistentStorageProtocol
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
/// What sessions are told always comes from the kernel's mount table, never
/// from what the controller last asked for, nor from a path inside the
/// storage (a client could remove it): a remount done by someone else, or the
/// kernel's own `errors=remount-ro`, is reported as it is. The state is read
/// again after every remount and whenever the mount table changes (see
/// ``mountTableDidChange()``), and kept in between, so that serving a
/// session does not cost a pass over the mount table.
///
/// The actor runs on the daemon's event loop (its executor), so the session
/// handlers, which run there too, reach it without a thread switch: see
/// ``onController(_:)``. Remounts still run elsewhere (the remounters do
/// their blocking work on Dispatch threads).
actor RemountController {
    struct Settings: Sendable {
        /// Where the partition is mounted; remount decisions look at this.
        var mountPath: String
        /// The directory handed to clients.
        var dataPath: String
        var readOnlyRetryDelay: Duration
        var maxSessions: Int
    }

    private struct Session {
        let connection: any SessionConnection
        let peer: SessionPeer
        /// Seconds since the epoch when it opened, for `GET /state`.
        let openedAt: Int
        /// When it opened, for the duration in `GET /metrics`.
        let openedInstant: ContinuousClock.Instant
        /// False until the first `storage` event may be sent (see the type's comment).
        var isServed: Bool
        var lastSent: StorageStatus?
    }

    private let settings: Settings
    private let remounter: any StorageRemounter
    /// `MountTable.state(ofMountPoint:)` outside tests.
    private let readMountState: @Sendable (String) -> MountState
    /// Whether the mount table may have changed since the last reading
    /// (``MountTableChangeProbe`` in the daemon); a reading is skipped when not.
    private let mountTableMayHaveChanged: @Sendable () -> Bool
    /// The state right after a successful remount to the given mode
    /// (``MountedStorage/state(afterRemountTo:)`` in the daemon).
    private let readMountStateAfterRemount: @Sendable (RemountMode) -> MountState
    /// The mount's state as last read; see the type's comment.
    private var mountState: MountState = .notMounted
    /// Whether the storage is writable beneath another filesystem mounted
    /// over it (``MountState/otherFilesystem``), which no remount can reach.
    private let storageBeneathIsWritable: @Sendable () -> Bool
    /// Told whenever the status changes (systemd's `STATUS=` line).
    private let statusObserver: (@Sendable (StorageStatus) -> Void)?
    private var lastObservedStatus: StorageStatus?
    private let logger: Logger
    let metrics: DaemonMetrics
    /// Since when the storage has been writable, while it is; the time up
    /// to then is in ``DaemonMetrics/readWriteSeconds``.
    private var writableSince: ContinuousClock.Instant?

    private var sessions: [SessionID: Session] = [:]
    private var nextSessionNumber: UInt64 = 1
    /// The one task that remounts; while it runs, nobody else does.
    private var remountTask: Task<Void, Never>?
    private var readOnlyRetry: (task: Task<Void, Never>, generation: UInt64)?
    private var retryGeneration: UInt64 = 0
    private var counters = DaemonState.Remounts()
    private var lastFailure: String?
    /// Who held the storage busy at the last refused read-only remount,
    /// until a remount succeeds (`GET /state`'s `busy`).
    private var busyHolders: [BusyHolder] = []
    private var busyScanGeneration: UInt64 = 0
    /// Finds the busy holders (``BusyHolders``); nil in unit tests.
    private let busyScan: (@Sendable () -> [BusyHolder])?
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
        mountState: @escaping @Sendable (String) -> MountState = { MountTable.state(ofMountPoint: $0) },
        mountTableMayHaveChanged: @escaping @Sendable () -> Bool = { true },
        mountStateAfterRemount: (@Sendable (RemountMode) -> MountState)? = nil,
        busyScan: (@Sendable () -> [BusyHolder])? = nil,
        storageBeneathIsWritable: @escaping @Sendable () -> Bool = { false },
        statusObserver: (@Sendable (StorageStatus) -> Void)? = nil,
        eventLoop: any EventLoop = MultiThreadedEventLoopGroup.singleton.next(),
        metrics: DaemonMetrics = DaemonMetrics(),
        logger: Logger
    ) {
        self.eventLoop = eventLoop
        self.settings = settings
        self.remounter = remounter
        self.readMountState = mountState
        self.mountTableMayHaveChanged = mountTableMayHaveChanged
        self.busyScan = busyScan
        let mountPath = settings.mountPath
        self.readMountStateAfterRemount = mountStateAfterRemount ?? { _ in mountState(mountPath) }
        self.storageBeneathIsWritable = storageBeneathIsWritable
        self.mountState = mountState(settings.mountPath)
        self.statusObserver = statusObserver
        self.logger = logger
        self.metrics = metrics
        if self.mountState.isWritable { writableSince = .now }
        metrics.storageWritable.set(Int64(self.mountState.isWritable ? 1 : 0))
        admission = Atomic(settings.maxSessions > 0)
    }

    // MARK: - What the server and the status page ask

    /// The storage as sessions should see it now.
    var status: StorageStatus {
        StorageStatus(
            clients: sessions.count,
            data: .init(path: settings.dataPath, writeAllowed: mountState.isWritable))
    }

    /// Reads the mount table again, unless it cannot have changed since the
    /// last reading and `evenIfUnchanged` is false; says so once when the
    /// filesystem has just turned read-only after errors.
    private func refreshMountState(evenIfUnchanged: Bool = false) {
        // Asked first in any case: the reading below covers what it reports.
        let changed = mountTableMayHaveChanged()
        // Over another filesystem the message depends on the sessions too.
        guard changed || evenIfUnchanged || mountState == .otherFilesystem else { return }
        update(to: readMountState(settings.mountPath))
    }

    private func update(to newState: MountState) {
        let previous = mountState
        mountState = newState
        accountWritableTime()
        if mountState == .otherFilesystem {
            // What is on top hides the storage from any remount: say so
            // while the storage beneath stays writable with no session.
            let message = Self.otherFilesystemMessage(
                settings.mountPath, leftWritable: sessions.isEmpty && storageBeneathIsWritable())
            if message != lastFailure {
                lastFailure = message
                logger.error("\(message)")
            }
            return
        }
        guard mountState != previous else { return }
        if mountState == .readOnlyAfterErrors {
            lastFailure = Self.filesystemErrorsMessage(settings.mountPath)
            logger.error("\(lastFailure!)")
        } else if previous == .readOnlyAfterErrors || previous == .otherFilesystem {
            logger.notice("\(settings.mountPath) is \(mountState) again")
            lastFailure = nil
        }
    }

    static func otherFilesystemMessage(_ mountPath: String, leftWritable: Bool) -> String {
        "another filesystem is mounted over the storage at \(mountPath); sessions are refused and nothing is remounted until it is unmounted"
            + (leftWritable ? "; the storage underneath is still READ-WRITE, and is made read-only as soon as that is unmounted" : "")
    }

    static func filesystemErrorsMessage(_ mountPath: String) -> String {
        "the filesystem at \(mountPath) has errors and the kernel made it read-only; "
            + "sessions are refused until it is unmounted, checked with e2fsck and mounted again"
    }

    /// The answer of `GET /state`.
    var report: DaemonState {
        let status = status
        // Names and times are formatted here, when someone asks, never on a
        // session's path; each uid is looked up once (getpwuid_r reads /etc/passwd).
        var userNames: [UInt32: String?] = [:]
        let sessions = self.sessions.sorted { $0.key.rawValue < $1.key.rawValue }.map { id, session in
            let uid = session.peer.uid
            if userNames[uid] == nil { userNames[uid] = .some(SessionPeer.userName(uid)) }
            return session.peer.report(id: id.rawValue, openedAt: session.openedAt, user: userNames[uid]!)
        }
        return DaemonState(
            clients: status.clients, data: status.data, remounts: counters, error: lastFailure, sessions: sessions,
            busy: busyHolders.isEmpty ? nil : busyHolders.map(DaemonState.BusyHolder.init))
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
    func sessionDidOpen(_ connection: any SessionConnection, peer: SessionPeer = .unknown) -> SessionID? {
        guard canAcceptSession else { return nil }
        let id = SessionID(rawValue: nextSessionNumber)
        nextSessionNumber += 1
        // The storage is still writable while a read-only retry waits: this
        // session keeps it so, and the retry has nothing left to do.
        cancelReadOnlyRetry()
        sessions[id] = Session(
            connection: connection, peer: peer, openedAt: time(nil), openedInstant: .now, isServed: false, lastSent: nil)
        updateAdmission()
        metrics.sessionsOpened.increment()
        metrics.sessionsOpen.set(Int64(sessions.count))
        if remountTask == nil && (mountState == .readWrite || mountState == .readOnlyAfterErrors) {
            // Writable: nothing to do. After errors: no remount can help, and
            // the session hears `write_allowed: false` at once (the reason is
            // in `GET /state`).
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
        guard let session = sessions.removeValue(forKey: id) else { return }
        updateAdmission()
        metrics.sessionDuration.record(.now - session.openedInstant)
        metrics.sessionsOpen.set(Int64(sessions.count))
        publishSoon()
        if sessions.isEmpty { startRemounting() }
    }

    /// The kernel's mount table changed, or (`isPeriodicRecheck`) the
    /// periodic re-check fired, which reads it even when no change was
    /// signalled: tell every session whose view is now out of date. Someone
    /// else's read-write remount while no session is open is undone: the
    /// storage must never stay writable without a session.
    func mountTableDidChange(isPeriodicRecheck: Bool = false) {
        // Mostly the remount's own change; the remount reads the state after
        // it, and once more when it is done (``remountUntilSettled()``).
        if remountTask != nil && !isPeriodicRecheck { return }
        refreshMountState(evenIfUnchanged: isPeriodicRecheck)
        if mountState.filesystemIsWritable && sessions.isEmpty && remountTask == nil && readOnlyRetry == nil && !isShuttingDown {
            logger.warning("\(settings.mountPath) was made read-write by someone else while no session is open (\(mountState)); making it read-only again")
            startRemounting()
        }
        publish()
    }

    // MARK: - Start-up and shutdown

    /// Read-write with the fix step, then read-only: repairs a storage left
    /// writable by a crash, and makes sure the data directory exists.
    ///
    /// Throws, leaving the storage as it was or read-only, when the daemon
    /// cannot work at all: nothing is mounted there, or it may not remount.
    /// Other failures (a write-protected device, a busy filesystem) are
    /// logged and retried later, as for any remount.
    func prepareStorage() async throws(RemountStartError) {
        refreshMountState(evenIfUnchanged: true)
        switch mountState {
        case .notMounted:
            throw RemountStartError("nothing is mounted at \(settings.mountPath); mount the storage (read-only) first")
        case .otherFilesystem:
            throw RemountStartError("another filesystem is mounted over the storage at \(settings.mountPath); unmount it first")
        case .readOnlyAfterErrors:
            // Serve, refusing sessions with the reason, until an admin repairs it.
            return
        case .readOnly, .readWrite, .writableElsewhere:
            break
        }
        if case .failure(let error) = await remount(to: .readWrite), Self.isFatalAtStart(error) {
            refreshMountState(evenIfUnchanged: true)
            if mountState.filesystemIsWritable { await attemptRemount(to: .readOnly) }
            throw RemountStartError("\(error)")
        }
        await attemptRemount(to: .readOnly)
        if mountState.filesystemIsWritable && sessions.isEmpty {
            scheduleReadOnlyRetry()
        }
    }

    /// Failures that every later remount would repeat: the daemon lacks the
    /// privilege, or the command cannot be run at all.
    private static func isFatalAtStart(_ error: any Error) -> Bool {
        if let error = error as? RemountError { return error.kind == .notPermitted || error.kind == .notMounted }
        if let error = error as? StorageRemountError, case .remount(let remount) = error {
            return remount.kind == .notPermitted || remount.kind == .notMounted
        }
        if let error = error as? RemountCommandError, case .couldNotStart = error.outcome { return true }
        return false
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
        let now = ContinuousClock.now
        for session in sessions.values { metrics.sessionDuration.record(now - session.openedInstant) }
        sessions.removeAll()
        metrics.sessionsOpen.set(Int64(0))
        return count
    }

    /// The last step of shutdown: read-only, trying again while the
    /// filesystem is busy until `deadline`. Returns nil when the storage is
    /// not writable any more, or why it is left writable.
    func remountReadOnlyForExit(until deadline: ContinuousClock.Instant) async -> String? {
        let pause = min(settings.readOnlyRetryDelay, .milliseconds(250))
        while true {
            refreshMountState(evenIfUnchanged: true)
            if mountState == .otherFilesystem && storageBeneathIsWritable() {
                return "another filesystem is mounted over it, so it cannot be remounted"
            }
            guard mountState.filesystemIsWritable else { return nil }
            if case .failure(let error) = await remount(to: .readOnly) {
                refreshMountState(evenIfUnchanged: true)
                guard mountState.filesystemIsWritable else { return nil }
                // Cancelled, the sleep would return at once and this would spin.
                if ContinuousClock.now + pause > deadline || Task.isCancelled { return "\(error)" }
                try? await Task.sleep(for: pause)
                continue
            }
        }
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
            // What changed while it ran and the watcher's events were left to it.
            refreshMountState()
            publish()
        }
        while !isShuttingDown {
            refreshMountState()
            if mountState == .readOnlyAfterErrors || mountState == .notMounted || mountState == .otherFilesystem {
                // No remount helps (see MountState); sessions hear `false`
                // and the reason is in `GET /state`, once, not in a loop.
                if mountState == .notMounted { lastFailure = "nothing is mounted at \(settings.mountPath)" }
                serveWaitingSessions()
                return
            }
            let mountIsWritable = mountState == .readWrite
            if sessions.isEmpty {
                guard mountState.filesystemIsWritable else { return }
                guard await attemptRemount(to: .readOnly) else {
                    scheduleReadOnlyRetry()
                    return
                }
                if mountState.filesystemIsWritable {
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
                if succeeded && mountState == .readOnly {
                    lastFailure = "the remount to read-write succeeded, but \(settings.mountPath) is still read-only"
                    logger.error("\(lastFailure!)")
                }
                if !succeeded || mountState != .readWrite {
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
        if case .success = await remount(to: mode) { return true }
        return false
    }

    /// One remount with its bookkeeping; the mount state is read again after it.
    private func remount(to mode: RemountMode) async -> Result<Void, any Error> {
        let clock = ContinuousClock()
        let start = clock.now
        do {
            try await remounter.remount(to: mode)
        } catch {
            counters.failed += 1
            metrics.remount(to: mode, succeeded: false)
            lastFailure = String(describing: error)
            logger.error("remount to \(mode) failed: \(lastFailure!)")
            refreshMountState()
            if mode == .readOnly && Self.isBusy(error) {
                metrics.busyRetries.increment()
                diagnoseBusy()
            }
            return .failure(error)
        }
        busyHolders = []
        busyScanGeneration += 1
        switch mode {
        case .readWrite: counters.rw += 1
        case .readOnly: counters.ro += 1
        }
        metrics.remount(to: mode, succeeded: true)
        lastFailure = nil
        logger.info("storage remounted \(mode) in \(clock.now - start)")
        // Read even when this namespace saw no change (a remount command may
        // act from another mount namespace), and let the event of this
        // remount pass unread.
        _ = mountTableMayHaveChanged()
        update(to: readMountStateAfterRemount(mode))
        return .success(())
    }

    // MARK: - Who holds the storage busy

    private static func isBusy(_ error: any Error) -> Bool {
        if let error = error as? RemountError { return error.kind == .busy }
        if let error = error as? StorageRemountError, case .remount(let remount) = error { return remount.kind == .busy }
        // A remount command says so in its own words (mount(8): "target is busy").
        return "\(error)".lowercased().contains("busy")
    }

    /// Looks in /proc for who holds the filesystem, once per refused
    /// read-only remount, on a thread of its own (it reads every process's
    /// descriptors), and says so in the log and in `GET /state`.
    private func diagnoseBusy() {
        guard let busyScan else { return }
        busyScanGeneration += 1
        let generation = busyScanGeneration
        DetachedThread.run(name: "pst-busy-scan") { [self] in
            let holders = busyScan()
            onController { controller in controller.busyScanFinished(holders, generation: generation) }
        }
    }

    private func busyScanFinished(_ holders: [BusyHolder], generation: UInt64) {
        guard generation == busyScanGeneration else { return }
        busyHolders = holders
        if holders.isEmpty {
            logger.warning("read-only refused: busy, but no process was found holding a file on \(settings.mountPath) open for writing (one the daemon may not look into, or one that let go meanwhile)")
        }
        for holder in holders.prefix(5) {
            logger.warning("read-only refused: busy: \(holder.sentence.escapingControlCharacters)")
        }
        if holders.count > 5 { logger.warning("read-only refused: busy: \(holders.count - 5) more in GET /state") }
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

    // MARK: - Metrics

    /// `GET /metrics`' answer, with the time read-write counted up to now.
    func metricsExposition() -> [UInt8] {
        accountWritableTime()
        return metrics.exposition()
    }

    /// Adds the time the storage has been writable since the last call to
    /// ``DaemonMetrics/readWriteSeconds``; called at every change of the
    /// mount state and before the metrics are read.
    private func accountWritableTime() {
        let now = ContinuousClock.now
        if let writableSince {
            let elapsed = (now - writableSince).components
            metrics.readWriteSeconds.increment(by: Double(elapsed.seconds) + Double(elapsed.attoseconds) * 1e-18)
        }
        writableSince = mountState.isWritable ? now : nil
        metrics.storageWritable.set(Int64(mountState.isWritable ? 1 : 0))
        metrics.filesystemErrors.set(Int64(mountState == .readOnlyAfterErrors ? 1 : 0))
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
        if session.lastSent == nil && !status.data.writeAllowed { metrics.sessionRefused(.notWritable) }
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

/// Why the daemon cannot start on this storage at all.
struct RemountStartError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
