import PersistentStorage

/// How many remounts were done and how many failed since the daemon started,
/// start-up and shutdown included.
public struct RemountCounters: Codable, Sendable, Equatable {
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

/// The `result` of `GET /state`: the reference's keys (`clients`, `data`) and
/// two of ours beside them, which the reference's clients ignore: `remounts`
/// always, and `error` (the last remount failure) while it is current.
struct StateReport: Codable, Sendable, Equatable {
    var clients: Int
    var data: StorageStatus.DataStatus
    var remounts: RemountCounters
    var error: String?
}
