import PersistentStorageTestSupport
import PersistentStorage
import Synchronization
@testable import PersistentStorageDaemon

/// A session that collects what the controller sends it.
final class RecordingSession: SessionConnection {
    private struct State {
        var received: [StorageStatus] = []
        var isClosed = false
    }

    private let state = Mutex(State())

    var received: [StorageStatus] { state.withLock { $0.received } }
    var isClosed: Bool { state.withLock { $0.isClosed } }

    func send(_ status: StorageStatus) {
        state.withLock { $0.received.append(status) }
    }

    func close() {
        state.withLock { $0.isClosed = true }
    }

    /// The first status received, waiting for it up to `timeout`.
    func firstStatus(within timeout: Duration = .seconds(5)) async -> StorageStatus? {
        await eventually(within: timeout) { self.received.first }
    }
}
