import PersistentStorageMount
import Prometheus

/// The daemon's figures for `GET /metrics`, in Prometheus' text format
/// (Documentation/Protocol.md lists them).
///
/// One registry per daemon rather than swift-metrics' process-wide
/// `MetricsSystem.bootstrap`: a process may run more than one daemon (the
/// tests do), and the registry's own API carries the `# HELP` lines. Every
/// figure is an atomic or a short lock, cheap enough for the path of every
/// session.
final class DaemonMetrics: Sendable {
    /// Why a session was not given: the `reason` label.
    enum RefusalReason: String, CaseIterable, Sendable {
        /// Not root and not in the socket's group.
        case forbidden
        /// `--max-sessions` reached, or the daemon is shutting down.
        case unavailable
        /// A request on `/ws` that was no valid WebSocket upgrade.
        case badRequest = "bad_request"
        /// Opened, but its first event said `write_allowed: false` (the
        /// remount to read-write failed, or the filesystem had errors).
        case notWritable = "not_writable"
    }

    /// Why the daemon closed a connection itself: the `reason` label.
    enum DropReason: String, CaseIterable, Sendable {
        /// A session that did not answer a ping in time.
        case heartbeat
        /// A peer that left the daemon's answers unread (``WriteBackpressure``).
        case unread
        /// No complete request within `--http-timeout`.
        case requestTimeout = "request_timeout"
        /// Over `--max-connections`, or closed to free a descriptor.
        case overLimit = "over_limit"
        /// A malformed request or frame.
        case protocolError = "protocol_error"
    }

    private let registry = PrometheusCollectorRegistry()

    let sessionsOpen: Gauge
    let sessionsOpened: Counter
    private let sessionsRefused: [RefusalReason: Counter]
    private let remounts: [RemountMode: (succeeded: Counter, failed: Counter)]
    let busyRetries: Counter
    let storageWritable: Gauge
    let filesystemErrors: Gauge
    let readWriteSeconds: Counter
    let sessionDuration: DurationHistogram
    let connectionsAccepted: Counter
    let connectionsOpen: Gauge
    private let peersDropped: [DropReason: Counter]

    init() {
        func name(_ metric: String, _ unit: String = "", _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(namespace: "kvmd_pst", metricName: metric, unitName: unit, helpText: help)
        }
        let registry = registry
        sessionsOpen = registry.makeGauge(descriptor: name("sessions", "", "Sessions open now."))
        sessionsOpened = registry.makeCounter(descriptor: name("sessions_opened", "total", "Sessions opened."))
        let refused = name("sessions_refused", "total", "Sessions not given, by reason.")
        sessionsRefused = Dictionary(uniqueKeysWithValues: RefusalReason.allCases.map {
            ($0, registry.makeCounter(descriptor: refused, labels: [("reason", $0.rawValue)]))
        })
        let remount = name("remounts", "total", "Remounts of the storage, by mode and result.")
        remounts = Dictionary(uniqueKeysWithValues: [RemountMode.readWrite, .readOnly].map { mode in
            let label = mode == .readWrite ? "rw" : "ro"
            return (mode, (
                registry.makeCounter(descriptor: remount, labels: [("mode", label), ("result", "ok")]),
                registry.makeCounter(descriptor: remount, labels: [("mode", label), ("result", "failed")])))
        })
        busyRetries = registry.makeCounter(descriptor: name(
            "busy_refusals", "total", "Read-only remounts the kernel refused as busy (each is retried)."))
        storageWritable = registry.makeGauge(descriptor: name(
            "storage_writable", "", "1 while the storage is mounted read-write, else 0."))
        filesystemErrors = registry.makeGauge(descriptor: name(
            "filesystem_errors", "", "1 while the kernel keeps the storage read-only after filesystem errors (needs e2fsck), else 0."))
        readWriteSeconds = registry.makeCounter(descriptor: name(
            "read_write_seconds", "total", "Time the storage has spent read-write since the daemon started."))
        sessionDuration = registry.makeDurationHistogram(
            descriptor: name("session_duration", "seconds", "How long sessions were held, from open to close."),
            buckets: [.milliseconds(1), .milliseconds(10), .milliseconds(100), .seconds(1), .seconds(10),
                      .seconds(60), .seconds(600), .seconds(3600)])
        connectionsAccepted = registry.makeCounter(descriptor: name("connections_accepted", "total", "Connections accepted."))
        connectionsOpen = registry.makeGauge(descriptor: name("connections", "", "Connections open now, sessions included."))
        let dropped = name("peers_dropped", "total", "Connections the daemon closed itself, by reason.")
        peersDropped = Dictionary(uniqueKeysWithValues: DropReason.allCases.map {
            ($0, registry.makeCounter(descriptor: dropped, labels: [("reason", $0.rawValue)]))
        })
    }

    func sessionRefused(_ reason: RefusalReason) {
        sessionsRefused[reason]!.increment()
    }

    func remount(to mode: RemountMode, succeeded: Bool) {
        let counters = remounts[mode]!
        (succeeded ? counters.succeeded : counters.failed).increment()
    }

    func peerDropped(_ reason: DropReason, count: Int = 1) {
        peersDropped[reason]!.increment(by: Int64(count))
    }

    /// Every figure in Prometheus' text exposition format (version 0.0.4).
    func exposition() -> [UInt8] {
        registry.emitToBuffer()
    }

    /// `Content-Type` of ``exposition()``.
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"
}
