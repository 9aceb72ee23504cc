import CSystemShims
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Dispatch
import Glibc
import Glibc
import Logging
import NIOCore
import NIOPosix
import PersistentStorageMount
import ServiceLifecycle

/// Why the daemon could not start.
public enum DaemonStartError: Error, CustomStringConvertible {
    case configuration(DaemonConfigurationError)
    case discovery(StorageDiscoveryError)
    case mountWatch(String)
    case socket(String)

    public var description: String {
        switch self {
        case .configuration(let error): error.description
        case .discovery(let error): error.description
        case .mountWatch(let text): text
        case .socket(let text): text
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

    /// Runs until SIGTERM or SIGINT, then shuts down in order and returns.
    public func runUntilTerminated() async throws {
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: self)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }

    /// Starts, serves until graceful shutdown (or cancellation), then shuts down.
    public func run() async throws {
        do {
            try configuration.validate()
        } catch {
            throw DaemonStartError.configuration(error)
        }
        // Writes to a peer that has gone must fail with EPIPE, not kill the daemon.
        signal(SIGPIPE, SIG_IGN)
        // glibc gives each thread that allocates its own arena (up to 8 per
        // core), and heap freed in one is not reused by the others. The
        // daemon has a handful of threads and needs no allocation
        // parallelism; two arenas keep its RSS down. MALLOC_ARENA_MAX in the
        // environment still wins.
        if ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil { _ = pst_limit_malloc_arenas(2) }
        let descriptorLimit = DescriptorLimit.raiseToHardLimit()
        logger.debug("open file limit: \(descriptorLimit)")
        let notifier = SystemdNotifier(environment: ProcessInfo.processInfo.environment)

        let discovery: StorageDiscovery
        do {
            discovery = try FstabReader(path: configuration.fstabPath).findStorage()
        } catch {
            throw DaemonStartError.discovery(error)
        }
        for issue in discovery.skippedLines {
            logger.warning("ignored \(issue)")
        }
        let location = discovery.location
        let dataPath = location.dataPath(for: configuration.dataLayout)
        logger.info("persistent storage: \(location.mountPath) (from \(configuration.fstabPath):\(discovery.line)), data: \(dataPath)")

        let remounter = remounterOverride ?? makeRemounter(for: location)
        // One event loop serves every connection, and the controller runs on it too.
        let eventLoops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let controller = RemountController(
            settings: .init(
                mountPath: location.mountPath, dataPath: dataPath,
                readOnlyRetryDelay: configuration.readOnlyRetryDelay, maxSessions: configuration.maxSessions),
            remounter: remounter,
            statusObserver: { status in
                notifier.status(
                    "\(status.clients) session(s), storage \(status.data.writeAllowed ? "read-write" : "read-only")")
            },
            eventLoop: eventLoops.next(),
            logger: logger)

        await controller.prepareStorage()

        let watcher: MountTableWatcher
        do {
            watcher = try MountTableWatcher(recheckInterval: configuration.mountRecheckInterval)
        } catch {
            try? await eventLoops.shutdownGracefully()
            throw DaemonStartError.mountWatch(error.description)
        }
        defer { watcher.stop() }

        let server: DaemonServer
        do {
            server = try await DaemonServer.start(
                settings: serverSettings, controller: controller, group: eventLoops, logger: logger)
        } catch {
            try? await eventLoops.shutdownGracefully()
            await controller.remountReadOnlyForExit()
            throw DaemonStartError.socket(String(describing: error))
        }
        logger.info("listening on \(configuration.socketPath)")
        notifier.ready(status: "Listening on \(configuration.socketPath)")

        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask {
                for await _ in watcher.changes {
                    await controller.mountTableDidChange()
                }
            }
            // Either SIGTERM/SIGINT (graceful shutdown) or cancellation ends the wait.
            try? await gracefulShutdown()
            await shutDown(server: server, controller: controller, notifier: notifier)
            watcher.stop()
            await tasks.waitForAll()
        }
        try? await eventLoops.shutdownGracefully()
        logger.info("stopped")
    }

    /// The shutdown sequence, in the protocol's order.
    private func shutDown(server: DaemonServer, controller: RemountController, notifier: SystemdNotifier) async {
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
        await controller.remountReadOnlyForExit()
        server.removeSocketFile()
    }

    private func makeRemounter(for location: StorageLocation) -> any StorageRemounter {
        if let command = configuration.remountCommand {
            return CommandRemounter(arguments: command)
        }
        return InProcessRemounter(location: location, layout: configuration.dataLayout, fstabPath: configuration.fstabPath)
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
