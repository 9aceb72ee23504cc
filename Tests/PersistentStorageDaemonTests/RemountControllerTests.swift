import PersistentStorageTestSupport
import Logging
import PersistentStorage
import PersistentStorageMount
import Synchronization
import Testing
@testable import PersistentStorageDaemon

@Suite("Remount controller (recording remounter)")
struct RemountControllerTests {
    let remounter: RecordingRemounter
    let controller: RemountController

    init() {
        self.init(remounter: RecordingRemounter())
    }

    init(remounter: RecordingRemounter, retryDelay: Duration = .seconds(10), maxSessions: Int = 1000) {
        self.remounter = remounter
        controller = RemountController(
            settings: .init(mountPath: "/pst", dataPath: "/pst/data", readOnlyRetryDelay: retryDelay, maxSessions: maxSessions),
            remounter: remounter,
            mountState: { [remounter] _ in remounter.isWritable ? .readWrite : .readOnly },
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    @Test("100 overlapping sessions cause exactly one RW remount and one RO remount")
    func overlappingSessionsShareOneRemountEachWay() async throws {
        var sessions: [(SessionID, RecordingSession)] = []
        for _ in 0..<100 {
            let session = RecordingSession()
            let id = try #require(await controller.sessionDidOpen(session))
            sessions.append((id, session))
        }
        for (_, session) in sessions {
            let first = await session.firstStatus()
            #expect(first?.data.writeAllowed == true)
        }
        // Close in an order unrelated to opening, the way clients would.
        for (id, _) in sessions.shuffled() {
            await controller.sessionDidClose(id)
        }
        #expect(await eventually { remounter.calls.count == 2 })
        #expect(remounter.calls == [.readWrite, .readOnly])
        let report = await controller.report
        #expect(report.remounts == DaemonState.Remounts(rw: 1, ro: 1, failed: 0))
        #expect(report.clients == 0)
        #expect(report.data.writeAllowed == false)
    }

    @Test("a new session hears nothing until the RW remount has finished")
    func firstEventWaitsForTheRemount() async throws {
        remounter.holdNextRemount()
        let session = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(session))
        #expect(await eventually { remounter.isHeldAtGate })
        #expect(session.received.isEmpty)
        remounter.releaseGate()
        let first = await session.firstStatus()
        #expect(first == StorageStatus(clients: 1, data: .init(path: "/pst/data", writeAllowed: true)))
    }

    @Test("a session that opens while the storage is RW is served at once, with no remount")
    func sessionOnWritableStorageNeedsNoRemount() async throws {
        let first = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(first))
        _ = await first.firstStatus()
        let second = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(second))
        // Served synchronously inside sessionDidOpen: nothing to wait for.
        #expect(second.received.first?.data.writeAllowed == true)
        #expect(second.received.first?.clients == 2)
        #expect(remounter.calls == [.readWrite])
        #expect(await eventually { first.received.last?.clients == 2 })
    }

    @Test("a refused RW remount answers write_allowed false, reports the reason, and is tried again for the next session")
    func refusedReadWrite() async throws {
        remounter.fail(.readWrite, reason: "the device is write-protected")
        let session = RecordingSession()
        let id = try #require(await controller.sessionDidOpen(session))
        let first = await session.firstStatus()
        #expect(first?.data.writeAllowed == false)
        var report = await controller.report
        #expect(report.error == "the device is write-protected")
        #expect(report.remounts?.failed == 1)

        let next = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(next))
        #expect(await next.firstStatus()?.data.writeAllowed == true)
        report = await controller.report
        #expect(report.error == nil)
        #expect(remounter.calls == [.readWrite, .readWrite])
        await controller.sessionDidClose(id)
    }

    @Test("a busy RO remount is retried after the delay, not in a loop")
    func busyReadOnlyIsRetriedAfterTheDelay() async throws {
        let remounter = RecordingRemounter(latency: .milliseconds(1))
        let tests = RemountControllerTests(remounter: remounter, retryDelay: .milliseconds(150))
        remounter.fail(.readOnly, times: 2, reason: "busy")
        let session = RecordingSession()
        let id = try #require(await tests.controller.sessionDidOpen(session))
        _ = await session.firstStatus()
        let closedAt = ContinuousClock.now
        await tests.controller.sessionDidClose(id)
        #expect(await eventually { remounter.isWritable == false })
        let elapsed = ContinuousClock.now - closedAt
        // Two failures, each followed by the 150 ms pause, then success.
        #expect(remounter.calls == [.readWrite, .readOnly, .readOnly, .readOnly])
        #expect(elapsed >= .milliseconds(300))
        #expect(await tests.controller.report.remounts == DaemonState.Remounts(rw: 1, ro: 1, failed: 2))
    }

    @Test("a session that arrives during the RO retry cancels it and is served RW at once")
    func sessionDuringReadOnlyRetry() async throws {
        let remounter = RecordingRemounter(latency: .milliseconds(1))
        // Long enough that a loaded machine (the whole suite runs at once)
        // cannot let the retry fire before the second session opens.
        let tests = RemountControllerTests(remounter: remounter, retryDelay: .seconds(1))
        remounter.fail(.readOnly, reason: "busy")
        let first = RecordingSession()
        let firstID = try #require(await tests.controller.sessionDidOpen(first))
        _ = await first.firstStatus()
        await tests.controller.sessionDidClose(firstID)
        #expect(await eventually { await tests.controller.report.remounts?.failed == 1 })

        let second = RecordingSession()
        let secondID = try #require(await tests.controller.sessionDidOpen(second))
        #expect(second.received.first?.data.writeAllowed == true)
        // Longer than the retry delay: a retry that was not cancelled would
        // have made the storage read-only under the open session.
        try await Task.sleep(for: .milliseconds(1500))
        #expect(remounter.calls == [.readWrite, .readOnly])
        #expect(remounter.isWritable)

        await tests.controller.sessionDidClose(secondID)
        #expect(await eventually { remounter.isWritable == false })
        #expect(remounter.calls == [.readWrite, .readOnly, .readOnly])
    }

    @Test("a session that opens while the RO remount runs waits for it, then gets RW again")
    func sessionDuringReadOnlyRemount() async throws {
        let first = RecordingSession()
        let firstID = try #require(await controller.sessionDidOpen(first))
        _ = await first.firstStatus()
        remounter.holdNextRemount()
        await controller.sessionDidClose(firstID)
        #expect(await eventually { remounter.isHeldAtGate })

        let second = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(second))
        #expect(second.received.isEmpty)
        remounter.releaseGate()
        #expect(await second.firstStatus()?.data.writeAllowed == true)
        #expect(remounter.calls == [.readWrite, .readOnly, .readWrite])
    }

    @Test("a remount behind the controller's back reaches every session")
    func externalRemountIsBroadcast() async throws {
        let sessions = [RecordingSession(), RecordingSession()]
        for session in sessions {
            _ = try #require(await controller.sessionDidOpen(session))
            _ = await session.firstStatus()
        }
        remounter.isWritable = false
        await controller.mountTableDidChange()
        for session in sessions {
            #expect(session.received.last?.data.writeAllowed == false)
        }
        // Nothing changed: nothing more is sent.
        let counts = sessions.map(\.received.count)
        await controller.mountTableDidChange()
        #expect(sessions.map(\.received.count) == counts)
    }

    @Test("the mount table is read only when it may have changed, or on the periodic re-check")
    func readsOnlyWhenTheTableMayHaveChanged() async throws {
        let remounter = RecordingRemounter()
        let readings = Mutex(0)
        let tableChanged = Mutex(false)
        let controller = RemountController(
            settings: .init(mountPath: "/pst", dataPath: "/pst/data", readOnlyRetryDelay: .seconds(10), maxSessions: 10),
            remounter: remounter,
            mountState: { [remounter] _ in
                readings.withLock { $0 += 1 }
                return remounter.isWritable ? .readWrite : .readOnly
            },
            mountTableMayHaveChanged: { tableChanged.withLock { $0 } },
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let session = RecordingSession()
        _ = try #require(await controller.sessionDidOpen(session))
        #expect(await session.firstStatus()?.data.writeAllowed == true)
        let before = readings.withLock { $0 }

        // An admin's remount the probe did not see (ext4's errors=remount-ro
        // moves no event counter): only the periodic re-check finds it.
        remounter.isWritable = false
        await controller.mountTableDidChange()
        #expect(readings.withLock { $0 } == before)
        #expect(session.received.last?.data.writeAllowed == true)
        await controller.mountTableDidChange(isPeriodicRecheck: true)
        #expect(readings.withLock { $0 } == before + 1)
        #expect(session.received.last?.data.writeAllowed == false)

        // A change the probe saw is read at once.
        remounter.isWritable = true
        tableChanged.withLock { $0 = true }
        await controller.mountTableDidChange()
        #expect(readings.withLock { $0 } == before + 2)
        #expect(session.received.last?.data.writeAllowed == true)
    }

    @Test("shutdown tells every session write_allowed false, closes it, and refuses new ones")
    func shutdownRevokesAndCloses() async throws {
        let sessions = [RecordingSession(), RecordingSession()]
        for session in sessions {
            _ = try #require(await controller.sessionDidOpen(session))
            _ = await session.firstStatus()
        }
        #expect(await controller.endAllSessions() == 2)
        for session in sessions {
            #expect(session.received.last?.data.writeAllowed == false)
            #expect(session.isClosed)
        }
        #expect(await controller.sessionDidOpen(RecordingSession()) == nil)
        #expect(await controller.remountReadOnlyForExit(until: .now + .seconds(1)) == nil)
        #expect(remounter.calls == [.readWrite, .readOnly])
    }

    @Test("start-up remounts RW (the fix step) and then RO")
    func startUpRepairs() async {
        remounter.isWritable = true  // as a crash would have left it
        try? await controller.prepareStorage()
        #expect(remounter.calls == [.readWrite, .readOnly])
        #expect(remounter.isWritable == false)
    }

    @Test("no more than max-sessions sessions are accepted")
    func sessionLimit() async throws {
        let tests = RemountControllerTests(remounter: RecordingRemounter(), maxSessions: 2)
        _ = try #require(await tests.controller.sessionDidOpen(RecordingSession()))
        _ = try #require(await tests.controller.sessionDidOpen(RecordingSession()))
        #expect(await tests.controller.canAcceptSession == false)
        #expect(await tests.controller.sessionDidOpen(RecordingSession()) == nil)
    }
}
