import KvmdLogging
import Testing

@testable import PersistentStorageDaemon

/// The per-peer log budget and the escaping of what a peer controls; the
/// reliability tests show both on a real daemon's log.
@Suite("Log lines a peer causes")
struct PeerLogBudgetTests {
    @Test("a burst, then nothing until the budget refills; the next line reports how many were left out")
    func burstThenTrickle() {
        let budget = PeerLogBudget(burst: 3, linesPerSecond: 2)
        let start = ContinuousClock.now
        #expect((0..<3).map { _ in budget.admit(7, now: start) } == Array(repeating: .log(suppressedBefore: 0), count: 3))
        #expect((0..<5).map { _ in budget.admit(7, now: start) } == Array(repeating: .suppress, count: 5))
        // Another peer has its own budget.
        #expect(budget.admit(8, now: start) == .log(suppressedBefore: 0))
        #expect(budget.admit(7, now: start + .milliseconds(250)) == .suppress)
        #expect(budget.admit(7, now: start + .milliseconds(600)) == .log(suppressedBefore: 6))
        #expect(budget.admit(7, now: start + .seconds(10)) == .log(suppressedBefore: 0))
    }

    @Test("control characters are escaped; other text, including non-ASCII, is left alone")
    func escaping() {
        #expect("p\n-- ERROR -- x".escapingControlCharacters == #"p\n-- ERROR -- x"#)
        #expect("a\r\tb\u{1B}[2K\u{7F}\u{85}".escapingControlCharacters == #"a\r\tb\x1b[2K\x7f\u{85}"#)
        #expect("pid=1 comm=kvmd-pstrun ünïcode ✓".escapingControlCharacters == "pid=1 comm=kvmd-pstrun ünïcode ✓")
        // Line and paragraph separators (second attack pass).
        #expect("a\u{2028}b\u{2029}c".escapingControlCharacters == #"a\u{2028}b\u{2029}c"#)
    }

    @Test("the cap on connections besides sessions stays below what the descriptor limit leaves")
    func pendingConnectionLimit() {
        #expect(DaemonServer.pendingConnectionLimit(configured: 1000, maxSessions: 100, descriptorLimit: 524_288) == 1000)
        #expect(DaemonServer.pendingConnectionLimit(configured: 1000, maxSessions: 100, descriptorLimit: 1024) == 860)
        #expect(DaemonServer.pendingConnectionLimit(configured: 1000, maxSessions: 1000, descriptorLimit: 1024) == 16)
    }
}
