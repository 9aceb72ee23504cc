/// One text frame on the `/ws` WebSocket: `{"event_type": TYPE, "event": OBJECT}`.
package enum StorageEvent: Sendable, Equatable {
    /// Sent by the daemon right after the upgrade.
    case loop
    /// The session set or the mount state changed (daemon to client).
    ///
    /// Read from `storage` and from `storage_state`, the same event's name in
    /// kvmd 4.8 to 4.35 (kvmd 4.36 renamed it), so that a client works with
    /// either daemon; always written as `storage`.
    case storage(StorageStatus)
    /// Client to daemon; answered with ``pong``.
    case ping
    /// The daemon's answer to ``ping``.
    case pong
    /// An event type this side does not know; the protocol says to log and ignore it.
    case unknown(type: String)

    package var eventType: String {
        switch self {
        case .loop: "loop"
        case .storage: "storage"
        case .ping: "ping"
        case .pong: "pong"
        case .unknown(let type): type
        }
    }
}

extension StorageEvent {
    /// The names a daemon gives the ``storage(_:)`` event: `storage` since
    /// kvmd 4.36, `storage_state` in kvmd 4.8 to 4.35.
    package static let storageEventTypes: Set<String> = ["storage", "storage_state"]
}

/// A frame whose text is not a valid event.
package struct StorageEventDecodingError: Error, CustomStringConvertible, Equatable {
    package var reason: String
    package init(reason: String) { self.reason = reason }
    package var description: String { "invalid event: \(reason)" }
}
