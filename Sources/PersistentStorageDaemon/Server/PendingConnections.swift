import NIOCore
import Synchronization

/// The connections that are not sessions (a request in progress, or
/// nothing sent yet), oldest first, capped: a new one over the cap closes
/// the oldest.
///
/// Why: each connection holds a descriptor, and 20,000 idle ones reached the
/// daemon's limit, after which nobody was served. Sessions have their own
/// cap (`--max-sessions`); this one keeps the rest below what the
/// descriptor limit leaves (see ``DaemonServer``). Closing the oldest rather
/// than refusing the newest is what keeps the daemon serving: a well-behaved
/// client sends its request at once and is done long before it is the
/// oldest, while a connection that waits is exactly what a flood is made of.
final class PendingConnections: Sendable {
    let limit: Int

    private struct State {
        /// Every pending connection by id, with its place in `order`.
        var members: [ObjectIdentifier: UInt64] = [:]
        /// Arrival order; entries of connections that left are skipped when met.
        var order = CircularBuffer<(number: UInt64, channel: any Channel)>()
        var nextNumber: UInt64 = 0
        var closedOverLimit = 0
    }

    private let state = Mutex(State())
    private let metrics: DaemonMetrics?

    init(limit: Int, metrics: DaemonMetrics? = nil) {
        precondition(limit > 0, "the cap on pending connections must be positive")
        self.limit = limit
        self.metrics = metrics
    }

    var count: Int { state.withLock { $0.members.count } }

    /// Counts `channel` until it becomes a session or closes; closes the
    /// oldest pending connection if that makes one too many. Returns how
    /// many were closed over the limit so far, when this call closed one.
    @discardableResult
    func add(_ channel: any Channel) -> Int? {
        let (evicted, total): ([any Channel], Int?) = state.withLock { state in
            let id = ObjectIdentifier(channel)
            state.members[id] = state.nextNumber
            state.order.append((state.nextNumber, channel))
            state.nextNumber += 1
            let evicted = Self.takeOldest(state.members.count - limit, from: &state)
            state.closedOverLimit += evicted.count
            return (evicted, evicted.isEmpty ? nil : state.closedOverLimit)
        }
        channel.closeFuture.whenComplete { [weak self] _ in self?.remove(channel) }
        close(evicted)
        return total
    }

    /// `channel` is a session now: it no longer counts here.
    func remove(_ channel: any Channel) {
        remove(ObjectIdentifier(channel))
    }

    /// The same, by the channel's identity (see `DaemonServer.configureConnection`).
    func remove(_ channelID: ObjectIdentifier) {
        state.withLock { state in
            state.members[channelID] = nil
            // Drop what leads the queue and has left, so the queue stays
            // about as long as the set.
            while let first = state.order.first, state.members[ObjectIdentifier(first.channel)] != first.number {
                state.order.removeFirst()
            }
            // One connection that stays while thousands come and go would
            // leave their entries behind it: compact now and then.
            if state.order.count > 2 * state.members.count + 64 {
                let members = state.members
                state.order = CircularBuffer(state.order.filter { members[ObjectIdentifier($0.channel)] == $0.number })
            }
        }
    }

    /// Closes up to `count` of the oldest pending connections (when accept
    /// finds no descriptor left); returns how many.
    func closeOldest(_ count: Int) -> Int {
        let evicted = state.withLock { Self.takeOldest(count, from: &$0) }
        close(evicted)
        return evicted.count
    }

    private func close(_ evicted: [any Channel]) {
        guard !evicted.isEmpty else { return }
        metrics?.peerDropped(.overLimit, count: evicted.count)
        for channel in evicted { channel.close(promise: nil) }
    }

    private static func takeOldest(_ count: Int, from state: inout State) -> [any Channel] {
        var taken: [any Channel] = []
        while taken.count < count, let entry = state.order.popFirst() {
            let id = ObjectIdentifier(entry.channel)
            guard state.members[id] == entry.number else { continue }  // left already
            state.members[id] = nil
            taken.append(entry.channel)
        }
        return taken
    }
}
