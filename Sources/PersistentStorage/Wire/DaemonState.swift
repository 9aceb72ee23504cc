/// What `GET /state` reports: the reference's keys (`clients`, `data`), and
/// what swift-pst's daemon adds beside them (remount counts, the last
/// failure, the sessions, who holds the storage busy). Against kvmd's own
/// daemon the additions are nil.
///
/// ```swift
/// let state = try await PersistentStorage().state()
/// for session in state.sessions ?? [] { print(session.pid, session.command, session.since) }
/// if let busy = state.busy { print("read-only refused:", busy.map(\.path)) }
/// ```
public struct DaemonState: Sendable, Equatable, Codable {
    /// Open sessions.
    public var clients: Int
    /// The data directory and whether it may be written now.
    public var data: StorageStatus.DataStatus
    /// Successful remounts each way, and failed ones, since the daemon started.
    public var remounts: Remounts?
    /// The last remount failure, while it is current.
    public var error: String?
    /// Who holds a session now, in the order they opened.
    public var sessions: [Session]?
    /// Who held the storage busy at the last refused read-only remount,
    /// until a remount succeeds.
    public var busy: [BusyHolder]?

    /// `clients` and `data`, as a `storage` event carries them.
    public var status: StorageStatus { StorageStatus(clients: clients, data: data) }

    public struct Remounts: Sendable, Equatable, Codable {
        public var rw: Int
        public var ro: Int
        public var failed: Int
    }

    public struct Session: Sendable, Equatable, Codable {
        public var id: UInt64
        public var pid: Int32
        public var uid: UInt32
        public var user: String?
        /// The peer's command name when it connected.
        public var command: String
        /// When it opened, RFC 3339 in UTC.
        public var since: String
    }

    public struct BusyHolder: Sendable, Equatable, Codable {
        public var pid: Int32
        public var command: String
        public var path: String
        /// `open for writing`, `deleted, still open` or `mapped writable`.
        public var why: String
    }

    public init(clients: Int, data: StorageStatus.DataStatus) {
        self.clients = clients
        self.data = data
    }

    private enum CodingKeys: String, CodingKey {
        case clients, data, remounts, error, sessions, busy
    }

    /// The reference's keys must be there; an addition that does not decode
    /// is left nil rather than failing the whole answer.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        clients = try container.decode(Int.self, forKey: .clients)
        data = try container.decode(StorageStatus.DataStatus.self, forKey: .data)
        remounts = try? container.decodeIfPresent(Remounts.self, forKey: .remounts)
        error = try? container.decodeIfPresent(String.self, forKey: .error)
        sessions = try? container.decodeIfPresent([Session].self, forKey: .sessions)
        busy = try? container.decodeIfPresent([BusyHolder].self, forKey: .busy)
    }
}
