/// What `GET /state` reports: the reference's keys (`clients`, `data`), and
/// what swift-pst's daemon adds beside them (remount counts, the last
/// failure, the sessions, who holds the storage busy). Against kvmd's own
/// daemon the additions are nil. The daemon encodes this same type, so the
/// two sides cannot drift apart; keys are as on the wire.
///
/// ```swift
/// let state = try await PersistentStorageClient().state()
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

    /// Since the daemon started, start-up and shutdown included.
    public struct Remounts: Sendable, Equatable, Codable {
        /// Successful remounts to read-write.
        public var rw: Int
        /// Successful remounts to read-only.
        public var ro: Int
        /// Remounts (either way) that failed.
        public var failed: Int

        public init(rw: Int = 0, ro: Int = 0, failed: Int = 0) {
            self.rw = rw
            self.ro = ro
            self.failed = failed
        }
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

        package init(id: UInt64, pid: Int32, uid: UInt32, user: String?, command: String, since: String) {
            self.id = id
            self.pid = pid
            self.uid = uid
            self.user = user
            self.command = command
            self.since = since
        }
    }

    public struct BusyHolder: Sendable, Equatable, Codable {
        public var pid: Int32
        public var command: String
        public var path: String
        /// `open for writing`, `deleted, still open` or `mapped writable`.
        public var why: String

        package init(pid: Int32, command: String, path: String, why: String) {
            self.pid = pid
            self.command = command
            self.path = path
            self.why = why
        }
    }

    public init(clients: Int, data: StorageStatus.DataStatus) {
        self.clients = clients
        self.data = data
    }

    /// The daemon's full answer.
    package init(
        clients: Int, data: StorageStatus.DataStatus, remounts: Remounts, error: String?, sessions: [Session], busy: [BusyHolder]?
    ) {
        self.init(clients: clients, data: data)
        self.remounts = remounts
        self.error = error
        self.sessions = sessions
        self.busy = busy
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
