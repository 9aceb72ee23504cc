import PersistentStorageProtocol

/// What the controller needs from one open session (a WebSocket on `/ws`).
///
/// Both calls must return at once: the controller calls them while it owns the
/// session set, so a slow peer must never hold it up.
protocol SessionConnection: Sendable {
    /// Queues a `storage` event for the peer.
    func send(_ status: StorageStatus)
    /// Ends the session from the daemon's side (shutdown, too many sessions).
    func close()
}

/// Names one session for as long as the daemon runs.
struct SessionID: Hashable, Sendable, CustomStringConvertible {
    let rawValue: UInt64
    var description: String { "#\(rawValue)" }
}
