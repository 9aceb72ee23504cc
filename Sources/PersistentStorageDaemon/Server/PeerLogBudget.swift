import Glibc
import Synchronization

/// How many log lines each peer process may cause: a burst, then a steady
/// trickle (a token bucket per peer pid, shared by all its connections).
///
/// Why: every line a peer causes costs the daemon a write(2) and the disk
/// behind the journal, and a peer can cause them as fast as it can send
/// (a flood of invalid frames wrote 200,000 lines in half a second). The
/// lines a peer loses are counted, and the next line it is allowed says
/// how many there were, so nothing is silently missing.
final class PeerLogBudget: Sendable {
    /// Lines a quiet peer may log at once.
    let burst: Int
    /// Lines per second a peer earns back.
    let linesPerSecond: Int

    private struct Bucket {
        var tokens: Double
        var refilled: ContinuousClock.Instant
        var suppressed = 0
    }

    private let buckets = Mutex<[pid_t: Bucket]>([:])
    /// Past this many peers, those with a full bucket and nothing to report
    /// are forgotten, so the table cannot grow with every pid ever seen.
    private static let peersRemembered = 1024

    init(burst: Int = 20, linesPerSecond: Int = 2) {
        self.burst = burst
        self.linesPerSecond = linesPerSecond
    }

    enum Verdict: Equatable {
        /// Log the line; `suppressedBefore` lines of this peer were dropped since its last one.
        case log(suppressedBefore: Int)
        case suppress
    }

    func admit(_ pid: pid_t, now: ContinuousClock.Instant = .now) -> Verdict {
        buckets.withLock { buckets in
            var bucket = buckets[pid] ?? Bucket(tokens: Double(burst), refilled: now)
            let earned = Double((now - bucket.refilled) / .seconds(1)) * Double(linesPerSecond)
            bucket.tokens = min(Double(burst), bucket.tokens + earned)
            bucket.refilled = now
            let verdict: Verdict
            if bucket.tokens >= 1 {
                bucket.tokens -= 1
                verdict = .log(suppressedBefore: bucket.suppressed)
                bucket.suppressed = 0
            } else {
                bucket.suppressed += 1
                verdict = .suppress
            }
            buckets[pid] = bucket
            if buckets.count > Self.peersRemembered { forgetQuietPeers(in: &buckets, now: now) }
            return verdict
        }
    }

    private func forgetQuietPeers(in buckets: inout [pid_t: Bucket], now: ContinuousClock.Instant) {
        let refillTime = Duration.seconds(Double(burst) / Double(max(1, linesPerSecond)))
        buckets = buckets.filter { _, bucket in bucket.suppressed > 0 || now - bucket.refilled < refillTime }
    }
}
