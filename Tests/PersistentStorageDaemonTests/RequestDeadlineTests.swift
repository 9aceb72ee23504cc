import Foundation
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@Suite("The time limit on a request (--http-timeout)", .enabled(if: RealMounts.enabled))
struct RequestDeadlineTests {
    @Test("A client that drips its request head a byte at a time is cut off at the limit; others are served meanwhile")
    func drippingClientIsCutOff() async throws {
        try await withDaemonTestBed(arguments: ["--http-timeout", "1"]) { bed in
            let dripping = try RawUnixSocketClient(path: bed.socketPath)
            let head = Array("GET /state HTTP/1.1\r\nHost: localhost\r\nX-Slow: ".utf8) + Array(repeating: UInt8(ascii: "a"), count: 200)
            let started = ContinuousClock.now
            var closedAfter: Duration?
            for byte in head {
                // A byte every 50 ms restarts any idle timer long before it fires.
                do {
                    try dripping.send([byte])
                } catch {
                    closedAfter = ContinuousClock.now - started
                    break
                }
                if !(try await isStillOpen(dripping)) {
                    closedAfter = ContinuousClock.now - started
                    break
                }
                #expect(try bed.clients() == 0, "GET /state is answered meanwhile")
            }
            let elapsed = try #require(closedAfter, "the dripping connection was never closed")
            #expect(elapsed >= .milliseconds(900))
            #expect(elapsed < .seconds(5))
            // The daemon is fine afterwards.
            let session = try bed.openWritableSession()
            session.close()
        }
    }

    /// Waits 50 ms; false when the daemon has closed the connection by then.
    private func isStillOpen(_ client: RawUnixSocketClient) async throws -> Bool {
        try await Task.sleep(for: .milliseconds(50))
        client.timeout = .milliseconds(1)
        do {
            // End of file (or a reset) reads as no bytes.
            return !(try client.receiveSome()).isEmpty
        } catch RawSocketError.timedOut {
            return true
        }
    }
}
