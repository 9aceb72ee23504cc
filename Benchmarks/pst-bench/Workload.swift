import Foundation
import Glibc
import PersistentStorage
import Synchronization

/// How many runs each figure gets.
struct Workload: Sendable {
    var bareRemountCycles: Int
    var bareSpawns: Int
    var bareSocketExchanges: Int
    var warmAcquires: Int
    var warmSessions: Int
    var coldCycles: Int
    var pstrunColdRuns: Int
    var pstrunWarmRuns: Int
    var churnDuration: Duration
    var churnClients: [Int]
    var scaleSessions: [Int]
    var idleDuration: Duration
    var idleSessions: Int
    var soakWarmUpSessions: Int
    var soakSessions: Int

    static let full = Workload(
        bareRemountCycles: 200, bareSpawns: 1000, bareSocketExchanges: 3000, warmAcquires: 3000, warmSessions: 1000, coldCycles: 200,
        pstrunColdRuns: 100, pstrunWarmRuns: 300, churnDuration: .seconds(5), churnClients: [1, 16, 256],
        scaleSessions: [1000, 10_000], idleDuration: .seconds(60), idleSessions: 100,
        soakWarmUpSessions: 10_000, soakSessions: 100_000)

    /// Seconds, not minutes: enough to prove every figure still runs.
    static let smoke = Workload(
        bareRemountCycles: 5, bareSpawns: 20, bareSocketExchanges: 50, warmAcquires: 50, warmSessions: 20, coldCycles: 5,
        pstrunColdRuns: 3, pstrunWarmRuns: 5, churnDuration: .milliseconds(300), churnClients: [1, 16, 256],
        scaleSessions: [100, 500], idleDuration: .seconds(1), idleSessions: 20,
        soakWarmUpSessions: 200, soakSessions: 2000)

    var largestConcurrency: Int { (scaleSessions + churnClients + [idleSessions]).max() ?? 1 }
}

/// Hands out sessions to churning clients until time or a count runs out.
final class SessionBudget: Sendable {
    private let remaining: Atomic<Int>
    private let deadline: ContinuousClock.Instant?

    init(sessions: Int) {
        remaining = Atomic(sessions)
        deadline = nil
    }

    init(until deadline: ContinuousClock.Instant) {
        remaining = Atomic(.max)
        self.deadline = deadline
    }

    func take() -> Bool {
        if let deadline { return ContinuousClock.now < deadline }
        return remaining.subtract(1, ordering: .relaxed).newValue >= 0
    }
}

/// `clients` tasks that open and close sessions back to back.
func churn(_ storage: PersistentStorageClient, clients: Int, budget: SessionBudget) async throws -> (sessions: Int, elapsed: Duration, latency: Samples) {
    let clock = ContinuousClock()
    let start = clock.now
    var total = 0
    var latency = Samples()
    try await withThrowingTaskGroup(of: (Int, Samples).self) { group in
        for _ in 0..<clients {
            group.addTask {
                var count = 0
                var samples = Samples()
                while budget.take() {
                    let begin = clock.now
                    let session = try await storage.openSession()
                    await session.close()
                    samples.append(clock.now - begin)
                    count += 1
                }
                return (count, samples)
            }
        }
        for try await (count, samples) in group {
            total += count
            latency.append(contentsOf: samples)
        }
    }
    return (total, clock.now - start, latency)
}

/// Opens `count` sessions at once, or with at most `inFlight` opens
/// outstanding; every one that opened is returned, and closed again by the
/// caller, even when others failed.
func openConcurrently(_ storage: PersistentStorageClient, count: Int, inFlight: Int = .max) async -> (sessions: [StorageSession], failures: [String], latency: Samples) {
    let clock = ContinuousClock()
    return await withTaskGroup(of: (Result<StorageSession, any Error>, Duration).self) { group in
        var sessions: [StorageSession] = []
        var failures: [String] = []
        var latency = Samples(reserving: count)
        func collect(_ result: Result<StorageSession, any Error>, _ duration: Duration) {
            switch result {
            case .success(let session):
                sessions.append(session)
                latency.append(duration)
            case .failure(let error):
                failures.append("\(error)")
            }
        }
        for index in 0..<count {
            if index >= inFlight, let (result, duration) = await group.next() { collect(result, duration) }
            group.addTask {
                let begin = clock.now
                do {
                    let session = try await storage.openSession()
                    return (.success(session), clock.now - begin)
                } catch {
                    return (.failure(error), clock.now - begin)
                }
            }
        }
        for await (result, duration) in group { collect(result, duration) }
        return (sessions, failures, latency)
    }
}

func closeAll(_ sessions: [StorageSession]) async {
    await withTaskGroup(of: Void.self) { group in
        for session in sessions {
            group.addTask { await session.close() }
        }
    }
}

/// Writes 4 KiB and makes it durable: the smallest useful session body.
func writeAndSync(in directory: URL) throws {
    let path = directory.appendingPathComponent("pst-bench.bin").path
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SpawnError(command: ["open", path], errno: errno) }
    defer { close(fd) }
    let block = [UInt8](repeating: 0x5a, count: 4096)
    let written = block.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == block.count, fsync(fd) == 0 else { throw SpawnError(command: ["write+fsync", path], errno: errno) }
}
