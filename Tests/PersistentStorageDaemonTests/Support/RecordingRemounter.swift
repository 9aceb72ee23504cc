import PersistentStorageMount
import Synchronization
@testable import PersistentStorageDaemon

/// A remounter that only pretends: it flips a "kernel" flag, records every
/// call, and fails or blocks when a test asks it to.
final class RecordingRemounter: StorageRemounter {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    private struct State {
        var isWritable = false
        var calls: [RemountMode] = []
        var failures: [RemountMode: [String]] = [:]
        var gate: CheckedContinuation<Void, Never>?
        var gateArmed = false
    }

    private let state = Mutex(State())
    /// How long each pretend remount takes, so that sessions overlap with it.
    let latency: Duration

    init(startWritable: Bool = false, latency: Duration = .milliseconds(20)) {
        self.latency = latency
        state.withLock { $0.isWritable = startWritable }
    }

    /// What the controller reads as `statvfs`.
    var isWritable: Bool {
        get { state.withLock { $0.isWritable } }
        set { state.withLock { $0.isWritable = newValue } }
    }

    var calls: [RemountMode] { state.withLock { $0.calls } }

    func count(_ mode: RemountMode) -> Int { calls.filter { $0 == mode }.count }

    /// The next `times` remounts to `mode` fail with `reason`.
    func fail(_ mode: RemountMode, times: Int = 1, reason: String) {
        state.withLock { $0.failures[mode, default: []] += Array(repeating: reason, count: times) }
    }

    /// The next remount waits until ``releaseGate()``.
    func holdNextRemount() {
        state.withLock { $0.gateArmed = true }
    }

    func releaseGate() {
        let gate = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.gateArmed = false
            defer { state.gate = nil }
            return state.gate
        }
        gate?.resume()
    }

    /// Whether a remount is waiting at the gate now.
    var isHeldAtGate: Bool { state.withLock { $0.gate != nil } }

    func remount(to mode: RemountMode) async throws {
        let mustWait = state.withLock { $0.gateArmed }
        if mustWait {
            await withCheckedContinuation { continuation in
                state.withLock { $0.gate = continuation }
            }
        }
        try await Task.sleep(for: latency)
        try state.withLock { state throws(Failure) in
            state.calls.append(mode)
            if var pending = state.failures[mode], !pending.isEmpty {
                let reason = pending.removeFirst()
                state.failures[mode] = pending
                throw Failure(description: reason)
            }
            state.isWritable = mode == .readWrite
        }
    }
}
