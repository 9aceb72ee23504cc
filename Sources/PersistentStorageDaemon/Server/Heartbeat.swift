import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// The daemon's heartbeat, one timer for every session: each interval it
/// pings every session, and half an interval later it drops those that have
/// not answered, so a frozen client cannot keep the storage writable.
///
/// A timer pair per session (a repeated ping and a pong deadline) cost 0.7 KiB
/// of memory per session, a tenth of the daemon's memory at 10,000 sessions
/// (Documentation/Benchmarks.md). One shared pair costs a dictionary entry.
/// A new session is first pinged at the second round after it opened, so
/// after one to two intervals (never at once, while it may still be busy
/// with its handshake); its deadline is half an interval after the ping.
///
/// All state lives on `eventLoop`; calls from other threads hop there.
final class Heartbeat: @unchecked Sendable {
    private struct Member {
        let channel: any Channel
        let peer: PeerCredentials
        var awaitingPong = false
        /// Joined since the last round: skipped once, so that no session is
        /// pinged before it has been open for a whole interval.
        var isNew = true
    }

    private let eventLoop: any EventLoop
    private let interval: TimeAmount
    private let pongTimeout: TimeAmount
    private let logger: Logger
    private let metrics: DaemonMetrics?
    /// Only touched on `eventLoop`.
    private var members: [ObjectIdentifier: Member] = [:]
    private var rounds: RepeatedTask?
    private let stopped = NIOLockedValueBox(false)

    /// Starts the rounds; `interval` must be positive.
    init(interval: Duration, eventLoop: any EventLoop, metrics: DaemonMetrics? = nil, logger: Logger) {
        precondition(interval > .zero, "a heartbeat needs a positive interval")
        self.eventLoop = eventLoop
        self.interval = TimeAmount(interval)
        self.pongTimeout = TimeAmount(interval / 2)
        self.logger = logger
        self.metrics = metrics
        let timeout = interval / 2
        rounds = eventLoop.scheduleRepeatedTask(initialDelay: self.interval, delay: self.interval) { [weak self] _ in
            self?.pingRound(timeout: timeout)
        }
    }

    /// Stops the rounds (the daemon's shutdown); members are left alone.
    func stop() {
        stopped.withLockedValue { $0 = true }
        rounds?.cancel()
    }

    func add(_ channel: any Channel, peer: PeerCredentials) {
        onLoop { $0.members[ObjectIdentifier(channel)] = Member(channel: channel, peer: peer) }
    }

    func remove(_ channel: any Channel) {
        onLoop { $0.members[ObjectIdentifier(channel)] = nil }
    }

    func pongReceived(on channel: any Channel) {
        onLoop { $0.members[ObjectIdentifier(channel)]?.awaitingPong = false }
    }

    private func onLoop(_ work: @escaping @Sendable (Heartbeat) -> Void) {
        if eventLoop.inEventLoop {
            work(self)
        } else {
            eventLoop.execute { work(self) }
        }
    }

    private func pingRound(timeout: Duration) {
        guard !stopped.withLockedValue({ $0 }) else { return }
        for (id, member) in members {
            if member.isNew {
                members[id]?.isNew = false
                continue
            }
            members[id]?.awaitingPong = true
            member.channel.writeAndFlush(
                WebSocketFrame(fin: true, opcode: .ping, data: member.channel.allocator.buffer(capacity: 0)), promise: nil)
        }
        eventLoop.scheduleTask(in: pongTimeout) { [weak self] in
            self?.dropSilentMembers(timeout: timeout)
        }
    }

    private func dropSilentMembers(timeout: Duration) {
        for (id, member) in members where member.awaitingPong {
            // Like the reference: no close frame, the peer is not listening anyway.
            logger.warning("no pong within \(timeout); dropping the session of \(member.peer)")
            members[id] = nil
            metrics?.peerDropped(.heartbeat)
            member.channel.close(promise: nil)
        }
    }
}
