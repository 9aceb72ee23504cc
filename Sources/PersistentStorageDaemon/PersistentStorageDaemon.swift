import CSystemShims
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import Glibc
import Logging
import NIOCore
import NIOPosix
import PersistentStorageMount
import ServiceLifecycle
import UnixSignals

/// Why the daemon could not start, or did not stop cleanly.
public enum DaemonError: Error, CustomStringConvertible {
    case configuration(DaemonConfigurationError)
    case instance(DaemonInstanceError)
    case discovery(StorageDiscoveryError)
    case storage(String)
    case mountWatch(String)
    case socket(String)
    /// Shutdown could not make the storage read-only in time.
    case storageLeftWritable(mountPath: String, reason: String)

    public var description: String {
        switch self {
        case .configuration(let error): error.description
        case .instance(let error): error.description
        case .discovery(let error): error.description
        case .storage(let text): "cannot prepare the storage: \(text)"
        case .mountWatch(let text): text
        case .socket(let text): text
        case .storageLeftWritable(let mountPath, let reason):
            "the storage at \(mountPath) is left READ-WRITE: \(reason); "
                + "find the writer (fuser -vm \(mountPath)) and run 'mount -o remount,ro \(mountPath)', or start kvmd-pst again"
        }
    }
}

/// The persistent-storage daemon: keeps the storage read-only except while
/// at least one client holds a session, and serves the kvmd PST protocol on a
/// Unix socket.
///
/// It is a swift-service-lifecycle `Service`: run it in a `ServiceGroup` that
/// turns SIGTERM/SIGINT into graceful shutdown, or call
/// ``runUntilTerminated()`` which does exactly that.
///
/// ```swift
/// var configuration = DaemonConfiguration()
/// configuration.socketPath = "/run/kvmd/pst.sock"
/// try await PersistentStorageDaemon(configuration: configuration).runUntilTerminated()
/// ```
public struct PersistentStorageDaemon: Service {
    public let configuration: DaemonConfiguration
    private let logger: Logger
    private let remounterOverride: (any StorageRemounter)?

    public init(configuration: DaemonConfiguration, logger: Logger = Logger(label: "kvmd-pst")) {
        self.configuration = configuration
        self.logger = logger
        self.remounterOverride = nil
    }

    /// For tests and embedders: remount through `remounter` instead of the
    /// one the configuration names.
    public init(configuration: DaemonConfiguration, remounter: any StorageRemounter, logger: Logger = Logger(label: "kvmd-pst")) {
        self.configuration = configuration
        self.logger = logger
        self.remounterOverride = remounter
    }

    /// The signals that shut the daemon down gracefully: SIGTERM and SIGINT,
    /// and the others whose default action would kill it on the spot and
    /// leave the storage writable (an administrator's `kill -HUP`, say).
    public static let shutdownSignals: [UnixSignal] = [.sigterm, .sigint, .sighup, .sigusr1, .sigusr2, .sigalrm]

    /// Runs until one of ``shutdownSignals``, then shuts down in order and returns.
    public func runUntilTerminated() async throws {
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: self)],
            gracefulShutdownSignals: Self.shutdownSignals,
            logger: logger))
        try await group.run()
    }

    /// Starts, serves until graceful shutdown (or cancellation), then shuts down.
    public func run() async throws {
        do {
            try configuration.validate()
        } catch {
            throw DaemonError.configuration(error)
        }
        // Writes to a peer that has gone must fail with EPIPE, not kill the
        // daemon; nor may the other signals whose default is to end the
        // process and that nobody has a reason to send it (the ones that
        // someone might send shut it down gracefully: `shutdownSignals`).
        // Children start with every signal at its default (CSystemShims).
        for number in [SIGPIPE, SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT, SIGXCPU, SIGXFSZ] {
            signal(number, SIG_IGN)
        }
        // glibc gives each thread that allocates its own arena (up to 8 per
        // core), and heap freed in one is not reused by the others. The
        // daemon has a handful of threads and needs no allocation
        // parallelism; two arenas keep its RSS down. MALLOC_ARENA_MAX in the
        // environment still wins.
        if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = pst_limit_malloc_arenas(2) }
        let descriptorLimit = DescriptorLimit.raiseToHardLimit()
        logger.debug("open file limit: \(descriptorLimit)")
        let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)

        // Before anything touches the mount: one daemon per socket path.
        let instanceLock: DaemonInstanceLock
        do {
            instanceLock = try DaemonInstanceLock(socketPath: configuration.socketPath)
        } catch {
            throw DaemonError.instance(error)
        }
        defer { instanceLock.release() }

        let discovery: StorageDiscovery
        do {
            discovery = try FstabReader(path: configuration.fstabPath).findStorage()
        } catch {
            throw DaemonError.discovery(error)
        }
        for issue in discovery.skippedLines {
            logger.warning("ignored \(issue)")
        }
        let location = discovery.location
        // A second daemon on another socket must not remount the storage
        // under this one's sessions either.
        do {
            try instanceLock.claimStorage(mountPath: location.mountPath)
        } catch {
            throw DaemonError.instance(error)
        }
        let dataPath = location.dataPath(for: configuration.dataLayout)
        logger.info("persistent storage: \(location.mountPath) (from \(configuration.fstabPath):\(discovery.line)), data: \(dataPath)")

        let remounter = remounterOverride ?? makeRemounter(for: location)
        // One event loop serves every connection, and the controller runs on it too.
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let storage = MountedStorage(mountPath: location.mountPath, fstabPath: configuration.fstabPath)
        let controller = RemountController(
            settings: .init(
                mountPath: location.mountPath, dataPath: dataPath,
                readOnlyRetryDelay: configuration.readOnlyRetryDelay, maxSessions: configuration.maxSessions),
            remounter: remounter,
            mountState: { _ in storage.state() },
            mountTableMayHaveChanged: { [probe = MountTableChangeProbe()] in probe?.changedSinceLastAsked() ?? true },
            mountStateAfterRemount: { storage.state(afterRemountTo: $0) },
            busyScan: { [mountPath = location.mountPath] in
                var info = stat()
                guard stat(mountPath, &info) == 0 else { return [] }
                return BusyHolders().scan(device: info.st_dev)
            },
            storageBeneathIsWritable: { storage.storageIsWritable() },
            statusObserver: { status in
                notifier.status(
                    "\(status.clients) session(s), storage \(status.data.writeAllowed ? "read-write" : "read-only")")
            },
            eventLoop: eventLoops.next(),
            logger: logger)

        // Every failure from here on ends the same way: the storage is made
        // read-only again (on the controller, whose executor is the event
        // loop, so before that loop shuts down), then the loop is shut down.
        func abandonStart(_ error: DaemonError) async -> DaemonError {
            if let reason = await controller.remountReadOnlyForExit(until: .now + configuration.stopTimeout) {
                logger.critical("\(DaemonError.storageLeftWritable(mountPath: location.mountPath, reason: reason))")
            }
            try? await eventLoops.shutdownGracefully()
            return error
        }

        do {
            try await controller.prepareStorage()
        } catch {
            throw await abandonStart(.storage(error.description))
        }

        let watcher: MountTableWatcher
        do {
            watcher = try MountTableWatcher(recheckInterval: configuration.mountRecheckInterval)
        } catch {
            throw await abandonStart(.mountWatch(error.description))
        }
        defer { watcher.stop() }

        let server: DaemonServer
        do {
            server = try await DaemonServer.start(
                settings: serverSettings, controller: controller, group: eventLoops, logger: logger)
        } catch {
            throw await abandonStart(.socket(String(describing: error)))
        }
        logger.info("listening on \(configuration.socketPath)")
        notifier.ready(status: "Listening on \(configuration.socketPath)")

        let leftWritable = await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await wake in watcher.changes {
                    await controller.mountTableDidChange(isPeriodicRecheck: wake == .periodicRecheck)
                }
            }
            // Either SIGTERM/SIGINT (graceful shutdown) or cancellation ends the wait.
            try? await gracefulShutdown()
            let leftWritable = await shutDown(server: server, controller: controller, notifier: notifier)
            watcher.stop()
            await tasks.waitForAll()
            return leftWritable
        }
        try? await eventLoops.shutdownGracefully()
        if let reason = leftWritable {
            throw DaemonError.storageLeftWritable(mountPath: location.mountPath, reason: reason)
        }
        logger.info("stopped")
    }

    /// The shutdown sequence, in the protocol's order. Returns nil once the
    /// storage is read-only, or why it is left writable.
    private func shutDown(server: DaemonServer, controller: RemountController, notifier: SystemdNotifier) async -> String? {
        logger.info("shutting down")
        notifier.stopping()
        // No new sessions from here on.
        await server.stopAccepting()
        server.stopHeartbeat()
        // Every session hears `write_allowed: false`, then is closed.
        let sessionCount = await controller.endAllSessions()
        // Clients get time to stop their scripts before the storage goes read-only.
        if sessionCount > 0 {
            logger.info("closed \(sessionCount) session(s); waiting \(configuration.readOnlyCleanupDelay) before going read-only")
            try? await Task.sleep(for: configuration.readOnlyCleanupDelay)
        }
        let leftWritable = await controller.remountReadOnlyForExit(until: .now + configuration.stopTimeout)
        server.removeSocketFile()
        return leftWritable
    }

    private func makeRemounter(for location: StorageLocation) -> any StorageRemounter {
        if let command = configuration.remountCommand {
            return CommandRemounter(arguments: command)
        }
        // kvmd's unit runs the daemon as kvmd-pst, with no remount_cmd in
        // kvmd's files: kvmd's own default (sudo and its helper) is what
        // works there, and what kvmd's sudoers allows.
        if !KernelRemounter.hasRemountPrivilege() {
            logger.notice("no remount command is configured and this process may not remount (it is not root and lacks CAP_SYS_ADMIN): using kvmd's default, \(DaemonConfiguration.kvmdDefaultRemountCommand.joined(separator: " "))")
            return CommandRemounter(arguments: DaemonConfiguration.kvmdDefaultRemountCommand)
        }
        return InProcessRemounter(
            location: location, layout: configuration.dataLayout, fstabPath: configuration.fstabPath, logger: logger)
    }

    private var serverSettings: DaemonServer.Settings {
        DaemonServer.Settings(
            socketPath: configuration.socketPath,
            socketMode: configuration.socketMode,
            socketGroupID: configuration.socketGroupID,
            heartbeat: configuration.heartbeat,
            maxFrameSize: configuration.maxFrameSize,
            maxRequestHeaderSize: configuration.maxRequestHeaderSize,
            httpIdleTimeout: configuration.httpIdleTimeout,
            maxConnections: configuration.maxConnections, maxSessions: configuration.maxSessions)
    }
}

extension PersistentStorageDaemon: CustomStringConvertible {
    public var description: String { "kvmd-pst on \(configuration.socketPath)" }
}
