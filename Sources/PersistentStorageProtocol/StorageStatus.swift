/// What the daemon reports about the storage: the number of open sessions and
/// the data directory with whether it is writable right now.
///
/// This is the `result` of `GET /state` and the `event` of a `storage` event,
/// with the reference daemon's key names (`clients`, `data.path`,
/// `data.write_allowed`).
public struct StorageStatus: Sendable, Equatable, Codable {
    /// The number of open sessions (WebSockets on `/ws`).
    public var clients: Int
    /// The data directory and whether it may be written now.
    public var data: DataStatus

    public init(clients: Int, data: DataStatus) {
        self.clients = clients
        self.data = data
    }

    /// The data directory handed to clients, and whether the filesystem that
    /// holds it is mounted read-write right now.
    public struct DataStatus: Sendable, Equatable, Codable {
        public var path: String
        public var writeAllowed: Bool

        public init(path: String, writeAllowed: Bool) {
            self.path = path
            self.writeAllowed = writeAllowed
        }

        enum CodingKeys: String, CodingKey {
            case path
            case writeAllowed = "write_allowed"
        }
    }
}
