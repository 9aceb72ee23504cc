/// Durations of repeated runs of one operation, in microseconds.
struct Samples {
    private(set) var microseconds: [Double] = []

    init() {}

    init(reserving capacity: Int) {
        microseconds.reserveCapacity(capacity)
    }

    mutating func append(_ duration: Duration) {
        microseconds.append(duration.microseconds)
    }

    mutating func append(contentsOf other: Samples) {
        microseconds.append(contentsOf: other.microseconds)
    }

    var count: Int { microseconds.count }
    var median: Double { percentile(50) }
    var p99: Double { percentile(99) }

    /// Nearest-rank percentile: with fewer than 100 samples p99 is the maximum.
    func percentile(_ p: Double) -> Double {
        guard !microseconds.isEmpty else { return .nan }
        let sorted = microseconds.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

extension Duration {
    var microseconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) * 1e6 + Double(attoseconds) / 1e12
    }

    var seconds: Double { microseconds / 1e6 }
}

/// Times `body` `count` times after `warmUp` untimed runs.
func measure(count: Int, warmUp: Int = 0, _ body: () async throws -> Void) async rethrows -> Samples {
    for _ in 0..<warmUp { try await body() }
    var samples = Samples(reserving: count)
    let clock = ContinuousClock()
    for _ in 0..<count {
        let start = clock.now
        try await body()
        samples.append(clock.now - start)
    }
    return samples
}
