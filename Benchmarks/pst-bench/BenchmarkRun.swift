import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestSupport

/// What has been measured so far.
final class Results {
    var figures: [Figure] = []
    var notes: [String] = []
}

struct BenchmarkFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The whole run: the fixture, the physical limit, a real daemon, every figure.
struct BenchmarkRun {
    enum Group: String, CaseIterable {
        case limit, idle, latency, pstrun, churn, scale, soak
    }

    var workload: Workload
    var groups: Set<Group>
    var log: (String) -> Void

    private let clock = ContinuousClock()

    /// Adds each figure to `results` as soon as it is measured, so a
    /// failure later still leaves what was measured before it.
    func run(into results: Results) async throws {
        // Every session is a socket in this process and one in the daemon.
        let wanted = rlim_t(workload.largestConcurrency + 2048)
        let descriptors = raiseFileDescriptorLimit(to: wanted)
        if descriptors < wanted {
            results.notes.append("RLIMIT_NOFILE is \(descriptors), below the \(wanted) the largest figure wants")
        }

        // The demo image: 64 MiB of ext4 on a loop device, mounted read-only like on a PiKVM.
        try await withStorageFixture(.init(sizeMiB: 64, pstOptions: "X-kvmd.pst-user=root,X-kvmd.pst-group=root")) { fixture in
            log("fixture: \(fixture.device) on \(fixture.mountPath)")
            // Measured first, while no daemon watches the mount.
            let limit = try PhysicalLimit.measure(
                mountPath: fixture.mountPath, fstabPath: fixture.fstabPath, socketDirectory: fixture.directory,
                cycles: groups.contains(.limit) ? workload.bareRemountCycles : 3,
                spawns: groups.contains(.limit) ? workload.bareSpawns : 10,
                exchanges: groups.contains(.limit) || groups.contains(.latency) ? workload.bareSocketExchanges : 10)
            results.figures += [
                .latency("bare_mount_rw", "bare mount(2) remount RW", limit.mountReadWrite),
                .latency("bare_mount_ro", "bare mount(2) remount RO", limit.mountReadOnly),
                .latency("bare_libmount_rw", "KernelRemounter (libmount) RW", limit.libmountReadWrite,
                         limit: limit.mountReadWrite.median, basis: "mount RW"),
                .latency("bare_libmount_ro", "KernelRemounter (libmount, syncfs) RO", limit.libmountReadOnly,
                         limit: limit.mountReadOnly.median, basis: "mount RO"),
                .latency("bare_spawn_true", "bare posix_spawn + wait of `true`", limit.spawnTrue),
                .latency("bare_socket_exchange", "bare Unix socket: connect, 200 B request, 260 B answer", limit.socketExchange),
            ]
            log("physical limit measured")

            let socketPath = fixture.directory + "/pst.sock"
            let maxSessions = workload.largestConcurrency + 256
            // The daemon's RSS is mostly its executable's pages, and how many
            // a page fault maps (and so how many faults a start takes) depends
            // on how they came into the page cache: a file just copied
            // (Scripts/build-release.sh) sits in large folios, which are
            // mapped whole, about 1 MiB more RSS than the same file read from
            // disk, as after installing and rebooting. Measure the latter.
            for executable in ["kvmd-pst", "kvmd-pstrun"] { evictFromPageCache(BuiltProducts.path(of: executable)) }
            try await withDaemonProcess(
                arguments: [
                    "--run", "--fstab", fixture.fstabPath, "--socket", socketPath, "--socket-group", "",
                    "--ro-cleanup-delay", "0", "--max-sessions", String(maxSessions),
                ],
                socketPath: socketPath
            ) { daemon in
                let context = DaemonUnderTest(fixture: fixture, daemon: daemon, socketPath: socketPath, limit: limit)
                do {
                    try await context.waitUntilReadOnly()
                    let startUsage = context.usage
                    results.figures.append(.value("daemon_rss_start", "daemon RSS after start", startUsage.rssMiB, unit: "MiB"))
                    if groups.contains(.idle) { results.figures += try await idleCost(context) }
                    if groups.contains(.latency) { results.figures += try await latencies(context) }
                    if groups.contains(.pstrun) { results.figures += try await pstrun(context) }
                    if groups.contains(.churn) { results.figures += try await churnRates(context) }
                    // The soak looks for leaks, so it runs before the 10,000-session
                    // burst: after it, glibc's heap (trimmed once the storage went
                    // read-only) fills its freed pages again for a while, which
                    // shows as growth that is not a leak.
                    if groups.contains(.soak) { results.figures += try await soak(context) }
                    if groups.contains(.scale) {
                        for count in workload.scaleSessions { results.figures += try await scale(context, sessions: count, results: results) }
                    }
                    let state = try context.state()
                    results.notes.append("remounts over the whole run: \(state.rw) RW, \(state.ro) RO, \(state.failed) failed")
                    if state.failed > 0 { throw BenchmarkFailure("the daemon reported \(state.failed) failed remount(s)") }
                } catch {
                    log("the daemon's log ends with:\n" + daemon.log.split(separator: "\n").suffix(20).joined(separator: "\n"))
                    throw error
                }
                daemon.terminate()
                let status = try await daemon.waitForExit()
                if status != 0 { throw BenchmarkFailure("kvmd-pst exited with \(status) on SIGTERM") }
                if fixture.state != .readOnly { throw BenchmarkFailure("the storage is \(fixture.state) after the daemon stopped") }
            }
        }
    }

    // MARK: - Figures

    /// Figure 6: what the daemon costs while nothing happens.
    private func idleCost(_ context: DaemonUnderTest) async throws -> [Figure] {
        let seconds = workload.idleDuration.seconds
        log("idle: \(seconds) s with no clients")
        let quiet = try await context.idleWindow(workload.idleDuration)
        log("idle: \(seconds) s with \(workload.idleSessions) idle sessions")
        let opened = await openConcurrently(context.storage, count: workload.idleSessions)
        let busy: (cpu: Double, usage: ProcessUsage)
        do {
            guard opened.failures.isEmpty else { throw BenchmarkFailure("idle sessions failed: \(opened.failures[0])") }
            busy = try await context.idleWindow(workload.idleDuration)
        } catch {
            await closeAll(opened.sessions)
            throw error
        }
        await closeAll(opened.sessions)
        try await context.waitUntilReadOnly()
        let percent = { (cpu: Double) in cpu / seconds * 100 }
        return [
            .value("idle_rss", "idle daemon RSS, no clients", quiet.usage.rssMiB, unit: "MiB",
                   target: "< 16 MiB", met: quiet.usage.rssMiB < 16),
            .value("idle_cpu", "idle daemon CPU, no clients (\(Report.format(seconds)) s)", percent(quiet.cpu), unit: "% CPU"),
            .value("idle_sessions_rss", "idle daemon RSS, \(workload.idleSessions) idle sessions", busy.usage.rssMiB, unit: "MiB"),
            .value("idle_sessions_cpu", "idle daemon CPU, \(workload.idleSessions) idle sessions (\(Report.format(seconds)) s)",
                   percent(busy.cpu), unit: "% CPU"),
        ]
    }

    /// Figures 1 and 2: one session at a time, warm and cold.
    private func latencies(_ context: DaemonUnderTest) async throws -> [Figure] {
        let storage = context.storage
        log("warm acquire and warm session")
        let holder = try await storage.openSession()
        let warmAcquire: Samples
        let warmOpen: Samples
        let warmSession: Samples
        do {
            var acquire = Samples(reserving: workload.warmAcquires)
            for run in -50..<workload.warmAcquires {
                let start = clock.now
                let bodyStarted = try await storage.withWritableStorage { _ in ContinuousClock.now }
                if run >= 0 { acquire.append(bodyStarted - start) }
            }
            warmAcquire = acquire
            // The same open without the body's task group: how much of a
            // warm acquire is starting the body and its revocation watcher.
            var open = Samples(reserving: workload.warmAcquires)
            for run in -50..<workload.warmAcquires {
                let start = clock.now
                let session = try await storage.openSession()
                if run >= 0 { open.append(clock.now - start) }
                await session.close()
            }
            warmOpen = open
            warmSession = try await measure(count: workload.warmSessions, warmUp: 20) {
                try await storage.withWritableStorage { try writeAndSync(in: $0) }
            }
        } catch {
            await holder.close()
            throw error
        }
        await holder.close()

        log("cold acquire and release")
        var coldAcquire = Samples(), release = Samples()
        for run in -2..<workload.coldCycles {
            try await context.waitUntilReadOnly()
            let start = clock.now
            let (bodyStarted, bodyEnded) = try await storage.withWritableStorage { _ in
                (ContinuousClock.now, ContinuousClock.now)
            }
            let readOnly = try await context.waitUntilReadOnly()
            if run >= 0 {
                coldAcquire.append(bodyStarted - start)
                release.append(readOnly - bodyEnded)
            }
        }
        if context.fixture.state != .readOnly {
            throw BenchmarkFailure("statvfs said read-only but the mount table says \(context.fixture.state)")
        }
        let limit = context.limit
        return [
            .latency("warm_acquire", "warm acquire (another session holds RW)", warmAcquire,
                     limit: limit.socketExchange.median, basis: "socket exchange",
                     target: "p50 < 250 µs", met: warmAcquire.median < 250),
            .latency("warm_open", "warm openSession() (no body, no task group)", warmOpen,
                     limit: limit.socketExchange.median, basis: "socket exchange"),
            .latency("warm_session", "warm session: open, write 4 KiB + fsync, close", warmSession),
            .latency("cold_acquire", "cold acquire (incl. RW remount)", coldAcquire,
                     limit: limit.mountReadWrite.median, basis: "mount RW"),
            .latency("release", "release: last close → kernel says RO", release,
                     limit: limit.mountReadOnly.median, basis: "mount RO"),
        ]
    }

    /// Figure 3: `kvmd-pstrun -- true` as a whole process.
    private func pstrun(_ context: DaemonUnderTest) async throws -> [Figure] {
        let command = [BuiltProducts.path(of: "kvmd-pstrun"), "--socket", context.socketPath, "--", "true"]
        log("kvmd-pstrun -- true, cold")
        var coldWall = Samples(), coldUntilReadOnly = Samples(), warmWall = Samples()
        var peakRSS = 0
        for run in -2..<workload.pstrunColdRuns {
            try await context.waitUntilReadOnly()
            let result = try spawnAndWait(command)
            guard result.exitStatus == 0 else { throw BenchmarkFailure("kvmd-pstrun -- true exited with \(result.exitStatus)") }
            let exited = clock.now
            let readOnly = try await context.waitUntilReadOnly()
            if run >= 0 {
                coldWall.append(result.wallTime)
                coldUntilReadOnly.append(result.wallTime + (readOnly - exited))
                peakRSS = max(peakRSS, result.peakRSSKiB)
            }
        }
        log("kvmd-pstrun -- true, warm")
        let holder = try await context.storage.openSession()
        do {
            for run in -2..<workload.pstrunWarmRuns {
                let result = try spawnAndWait(command)
                guard result.exitStatus == 0 else { throw BenchmarkFailure("kvmd-pstrun -- true exited with \(result.exitStatus)") }
                if run >= 0 {
                    warmWall.append(result.wallTime)
                    peakRSS = max(peakRSS, result.peakRSSKiB)
                }
            }
        } catch {
            await holder.close()
            throw error
        }
        await holder.close()
        // Start-up alone, without a daemon in the way: the part of the
        // figures above that is a Swift process starting and exiting.
        log("kvmd-pstrun --help")
        var helpWall = Samples()
        for run in -2..<workload.pstrunWarmRuns {
            let result = try spawnAndWait([BuiltProducts.path(of: "kvmd-pstrun"), "--help"])
            guard result.exitStatus == 0 else { throw BenchmarkFailure("kvmd-pstrun --help exited with \(result.exitStatus)") }
            if run >= 0 { helpWall.append(result.wallTime) }
        }
        let limit = context.limit
        let floor = limit.pstrunFloorMicroseconds
        return [
            .latency("pstrun_cold", "`kvmd-pstrun -- true` cold, wall", coldWall,
                     target: "< 15 ms", met: coldWall.median < 15_000),
            .latency("pstrun_cold_until_ro", "`kvmd-pstrun -- true` cold, until RO again", coldUntilReadOnly,
                     limit: floor, basis: "2 remounts + spawn", target: "≤ 5×", met: coldUntilReadOnly.median <= 5 * floor),
            .latency("pstrun_warm", "`kvmd-pstrun -- true` warm, wall", warmWall,
                     limit: limit.spawnTrue.median, basis: "spawn"),
            .value("pstrun_peak_rss", "`kvmd-pstrun` peak RSS", Double(peakRSS) / 1024, unit: "MiB"),
            .latency("pstrun_startup", "`kvmd-pstrun --help` (start-up and exit only), wall", helpWall,
                     limit: limit.spawnTrue.median, basis: "spawn"),
        ]
    }

    /// Figure 4: sessions per second while the storage stays RW.
    private func churnRates(_ context: DaemonUnderTest) async throws -> [Figure] {
        var figures: [Figure] = []
        let holder = try await context.storage.openSession()
        do {
            for clients in workload.churnClients {
                log("churn with \(clients) client(s)")
                _ = try await churn(context.storage, clients: clients, budget: SessionBudget(sessions: clients * 4))
                let daemonCPUBefore = context.usage.cpuSeconds
                let clientCPUBefore = ProcessUsage.of(getpid()).cpuSeconds
                let result = try await churn(context.storage, clients: clients,
                                             budget: SessionBudget(until: clock.now + workload.churnDuration))
                // CPU time per session moves far less with the machine's
                // other load than sessions per second do.
                let daemonCPU = (context.usage.cpuSeconds - daemonCPUBefore) / Double(max(result.sessions, 1))
                let clientCPU = (ProcessUsage.of(getpid()).cpuSeconds - clientCPUBefore) / Double(max(result.sessions, 1))
                let rate = Double(result.sessions) / result.elapsed.seconds
                let target: (String, Bool)? = clients == 16 ? ("≥ 5,000/s", rate >= 5000) : nil
                figures.append(.value("churn_\(clients)", "churn, \(clients) client(s)", rate.rounded(), unit: "sessions/s",
                                      target: target?.0, met: target?.1))
                figures.append(.latency("churn_\(clients)_session", "churn, \(clients) client(s): one open+close", result.latency))
                figures.append(.value("churn_\(clients)_daemon_cpu", "churn, \(clients) client(s): daemon CPU per session",
                                      (daemonCPU * 1e6).rounded(), unit: "µs CPU"))
                figures.append(.value("churn_\(clients)_client_cpu", "churn, \(clients) client(s): client CPU per session",
                                      (clientCPU * 1e6).rounded(), unit: "µs CPU"))
            }
        } catch {
            await holder.close()
            throw error
        }
        await holder.close()
        try await context.waitUntilReadOnly()
        return figures
    }

    /// Figure 5: many sessions at once on one daemon.
    private func scale(_ context: DaemonUnderTest, sessions count: Int, results: Results) async throws -> [Figure] {
        log("scale: \(count) concurrent sessions")
        try await context.waitUntilReadOnly()
        let before = try await context.settledState(since: nil)
        let idle = await context.settledUsage(like: nil)
        // The clients run in separate processes, each pacing its opens, so
        // that no client is too busy to answer the daemon's heartbeat (see
        // SessionHolders). A client may queue behind thousands of others for
        // the remount, hence the long client timeout (the daemon's own
        // timeouts are unchanged).
        let processes = count >= 4000 ? 4 : 1
        let start = clock.now
        let holders = try SessionHolders.Group(
            socketPath: context.socketPath, count: count, processes: processes, inFlight: 256, timeout: .seconds(120))
        let opened: SessionHolders.Opened
        do {
            opened = try await holders.waitUntilOpened()
        } catch {
            holders.terminate()
            throw error
        }
        let allWritable = clock.now - start
        let peak = context.usage
        let peakState = try? context.state()
        do {
            try await holders.closeAll()
        } catch {
            holders.terminate()
            throw error
        }
        let closed = clock.now
        try await context.waitUntilReadOnly(timeout: .seconds(60))
        let backToReadOnly = clock.now - closed
        if opened.failureCount > 0 {
            let first = opened.firstFailure ?? "?"
            log("scale: \(opened.failureCount) of \(count) sessions failed to open; the first: \(first)")
            results.notes.append("scale \(count): \(opened.failureCount) sessions failed to open; the first: \(first)")
        }
        guard peakState?.clients == opened.opened else {
            throw BenchmarkFailure("GET /state said \(peakState?.clients ?? -1) clients with \(opened.opened) sessions open")
        }
        let afterState = try await context.settledState(since: before)
        let after = await context.settledUsage(like: idle)
        let rw = afterState.rw - before.rw, ro = afterState.ro - before.ro
        let name = count.formatted(.number)
        return [
            .value("scale_\(count)_failed", "scale \(name): sessions that failed to open", Double(opened.failureCount),
                   unit: "sessions", target: "0", met: opened.failureCount == 0),
            .value("scale_\(count)_time", "scale \(name): time until all have write access", allWritable.seconds * 1000, unit: "ms"),
            .latency("scale_\(count)_acquire", "scale \(name): one session's acquire", opened.latency),
            .value("scale_\(count)_remounts", "scale \(name): remounts RW+RO (must be 1+1)", Double(rw + ro), unit: "remounts",
                   display: "\(rw) RW + \(ro) RO", target: "1 + 1", met: rw == 1 && ro == 1),
            .value("scale_\(count)_release", "scale \(name): last close → RO", backToReadOnly.seconds * 1000, unit: "ms"),
            .value("scale_\(count)_rss_peak", "scale \(name): daemon RSS at peak", peak.rssMiB, unit: "MiB",
                   target: count >= 10_000 ? "< 64 MiB" : nil, met: count >= 10_000 ? peak.rssMiB < 64 : nil),
            .value("scale_\(count)_fds_peak", "scale \(name): daemon fds at peak", Double(peak.openFileDescriptors), unit: "fds"),
            .value("scale_\(count)_rss_after", "scale \(name): daemon RSS after all closed (idle before: \(Report.format(idle.rssMiB)))",
                   after.rssMiB, unit: "MiB"),
            .value("scale_\(count)_fds_after", "scale \(name): daemon fds after all closed (idle before: \(idle.openFileDescriptors))",
                   Double(after.openFileDescriptors), unit: "fds",
                   target: "≤ idle", met: after.openFileDescriptors <= idle.openFileDescriptors),
        ]
    }

    /// No growth in RSS or descriptors after many sessions.
    private func soak(_ context: DaemonUnderTest) async throws -> [Figure] {
        let holder = try await context.storage.openSession()
        let start: ProcessUsage, end: ProcessUsage
        var rate = 0.0
        do {
            log("soak: \(workload.soakWarmUpSessions) sessions to warm up")
            _ = try await churn(context.storage, clients: 16, budget: SessionBudget(sessions: workload.soakWarmUpSessions))
            start = await context.settledUsage(like: nil)
            log("soak: \(workload.soakSessions) sessions")
            let result = try await churn(context.storage, clients: 16, budget: SessionBudget(sessions: workload.soakSessions))
            rate = Double(result.sessions) / result.elapsed.seconds
            end = await context.settledUsage(like: start)
        } catch {
            await holder.close()
            throw error
        }
        await holder.close()
        try await context.waitUntilReadOnly()
        let name = workload.soakSessions.formatted(.number)
        let growthKiB = end.rssKiB - start.rssKiB
        return [
            .value("soak_rate", "soak: \(name) sessions, 16 clients", rate.rounded(), unit: "sessions/s"),
            .value("soak_rss_growth", "soak: daemon RSS growth over \(name) sessions (\(Report.format(start.rssMiB)) → \(Report.format(end.rssMiB)) MiB)",
                   Double(growthKiB) / 1024, unit: "MiB", target: "≤ 1 MiB", met: growthKiB <= 1024),
            .value("soak_fds_growth", "soak: daemon fd growth (\(start.openFileDescriptors) → \(end.openFileDescriptors))",
                   Double(end.openFileDescriptors - start.openFileDescriptors), unit: "fds",
                   target: "= 0", met: end.openFileDescriptors == start.openFileDescriptors),
        ]
    }
}

/// The daemon being measured and the ways to look at it from outside.
struct DaemonUnderTest {
    let fixture: StorageFixture
    let daemon: DaemonProcess
    let socketPath: String
    let limit: PhysicalLimit
    let storage: PersistentStorageClient

    init(fixture: StorageFixture, daemon: DaemonProcess, socketPath: String, limit: PhysicalLimit) {
        self.fixture = fixture
        self.daemon = daemon
        self.socketPath = socketPath
        self.limit = limit
        storage = PersistentStorageClient(socketPath: socketPath, timeout: .seconds(10))
    }

    var usage: ProcessUsage { ProcessUsage.of(daemon.pid) }

    struct State {
        var clients: Int
        var rw: Int
        var ro: Int
        var failed: Int
    }

    /// `GET /state`, read raw so the `remounts` key (ours, not the reference's) is visible.
    func state() throws -> State {
        let response = try RawUnixSocketClient(path: socketPath).request("GET", "/state")
        guard let result = response.jsonObject?["result"] as? [String: Any],
              let clients = result["clients"] as? Int,
              let remounts = result["remounts"] as? [String: Any],
              let rw = remounts["rw"] as? Int, let ro = remounts["ro"] as? Int, let failed = remounts["failed"] as? Int
        else { throw BenchmarkFailure("GET /state answered \(response.statusCode): \(response.bodyText)") }
        return State(clients: clients, rw: rw, ro: ro, failed: failed)
    }

    /// The state once the daemon has noticed every closed connection and
    /// counted its last remount (the kernel says read-only a moment before
    /// the remount call returns to the daemon).
    func settledState(since earlier: State?) async throws -> State {
        let settled = try await eventually(within: .seconds(30)) { () throws -> State? in
            let state = try self.state()
            guard state.clients == 0 else { return nil }
            // The kernel says read-only a moment before the daemon counts the
            // remount: at rest every remount to read-write has its read-only one.
            guard let earlier else { return state.ro >= state.rw ? state : nil }
            return state.ro - earlier.ro >= state.rw - earlier.rw ? state : nil
        }
        guard let settled else { throw BenchmarkFailure("sessions were still open 30 s after all were closed") }
        return settled
    }

    /// Spins on statvfs (no sleep: the figure is how soon the kernel says
    /// read-only) and returns when it did.
    @discardableResult
    func waitUntilReadOnly(timeout: Duration = .seconds(15)) async throws -> ContinuousClock.Instant {
        let deadline = ContinuousClock.now + timeout
        var spins = 0
        while MountTable.isWritable(fixture.mountPath) {
            let now = ContinuousClock.now
            if now >= deadline { throw BenchmarkFailure("the storage was still writable after \(timeout)") }
            spins += 1
            // Let whatever else is runnable on this core go first (the
            // daemon's threads, the kernel's journal and I/O threads): on 2
            // cores a poller that keeps its core can delay the very
            // remount it waits for.
            sched_yield()
            if spins % 64 == 0 { await Task.yield() }
        }
        return ContinuousClock.now
    }

    /// The daemon's CPU time over `duration` of doing nothing, and its usage at the end.
    func idleWindow(_ duration: Duration) async throws -> (cpu: Double, usage: ProcessUsage) {
        try await Task.sleep(for: .milliseconds(500))
        let start = usage
        try await Task.sleep(for: duration)
        let end = usage
        return (end.cpuSeconds - start.cpuSeconds, end)
    }

    /// The usage once the descriptor count has stopped changing (closing
    /// connections is asynchronous): back to `reference`'s count, or the same
    /// count twice 100 ms apart.
    func settledUsage(like reference: ProcessUsage?) async -> ProcessUsage {
        var last = usage
        for _ in 0..<100 {
            try? await Task.sleep(for: .milliseconds(100))
            let now = usage
            if let reference, now.openFileDescriptors == reference.openFileDescriptors { return now }
            if reference == nil, now.openFileDescriptors == last.openFileDescriptors { return now }
            last = now
        }
        return last
    }
}

/// Writes `path`'s cached pages back and drops them from the page cache, so
/// that the next start reads the file from disk.
private func evictFromPageCache(_ path: String) {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    defer { close(descriptor) }
    // Only clean pages are dropped: a freshly copied file is written back first.
    _ = fdatasync(descriptor)
    _ = posix_fadvise(descriptor, 0, 0, POSIX_FADV_DONTNEED)
}
