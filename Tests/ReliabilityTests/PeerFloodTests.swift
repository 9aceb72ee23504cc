import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Peers that make the daemon work for every frame they send: what they
    /// cost it must stay bounded, in memory and in log lines.
    @Suite("Floods from one peer", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
    struct PeerFloodTests {
        typealias Frame = RawWebSocketFrame

        /// Sends `frame` up to `count` times on `session`, a thousand at a
        /// time, for as long as the daemon takes them within `stall` each.
        /// Returns how many went. Each thousand comes with an unasked-for
        /// pong, which keeps the session alive against the heartbeat for as
        /// long as the daemon reads: what an attacker who never reads would do.
        static func flood(_ session: RawUnixSocketClient, with frame: Frame, count: Int, stall: Duration = .seconds(2)) throws -> Int {
            let batch = Array((0..<1000).map { _ in RawUnixSocketClient.encoded(frame) }.joined())
                + RawUnixSocketClient.encoded(Frame(opcode: Frame.pong, payload: []))
            var sent = 0
            while sent < count {
                let taken: Int
                do {
                    taken = try session.send(batch, within: stall)
                } catch RawSocketError.system(_, let code) where code == EPIPE || code == ECONNRESET {
                    break  // The daemon dropped the peer: the end of its flood.
                }
                sent += taken * 1000 / batch.count
                if taken < batch.count { break }
            }
            return sent
        }

        @Test("sessions that send 400,000 pings (events, then WebSocket pings) and never read: memory stays bounded, the daemon stops reading them and drops them")
        func pingFloodsWithoutReading() async throws {
            // The heartbeat's interval is also how long a peer may leave its answers unread.
            try await withReliabilityBed(arguments: ["--heartbeat", "1"]) { bed in
                try bed.expectWellBehavedClientServed("before the flood")
                let idleKiB = try bed.daemonResidentKiB()
                let floods: [(name: String, frame: Frame)] = [
                    ("ping events", Frame(opcode: Frame.text, payload: Array(#"{"event_type": "ping", "event": {}}"#.utf8))),
                    ("WebSocket pings", Frame(opcode: Frame.ping, payload: Array("0123456789".utf8))),
                ]
                for (name, frame) in floods {
                    let session = try bed.openWritableSession()
                    defer { session.close() }
                    let sent = try Self.flood(session, with: frame, count: 400_000)
                    let grownKiB = try bed.daemonResidentKiB() - idleKiB
                    print("\(name): the daemon took \(sent) of 400,000 unanswered; RSS \(idleKiB) KiB + \(grownKiB) KiB")
                    // Before: 400,000 pings grew it by 170 MB.
                    #expect(grownKiB < 16 * 1024, "\(name): RSS grew by \(grownKiB) KiB")
                    #expect(sent < 400_000, "\(name): the daemon read every ping without their answers being read")
                    #expect(try await eventually(within: .seconds(5)) { try bed.clients() == 0 }, "\(name): the flooding session was not dropped")
                    try bed.expectWellBehavedClientServed("after \(name)")
                }
                #expect(await bed.settlesReadOnlyWithNoSession())
                #expect(bed.daemon.isRunning)
            }
        }

        @Test("20,000 invalid frames from one peer write a bounded number of log lines, and the count of those left out")
        func invalidFrameFloodIsLoggedBounded() async throws {
            try await withReliabilityBed { bed in
                let session = try bed.openWritableSession()
                defer { session.close() }
                let linesBefore = bed.daemonLogLines.count
                let invalid = Frame(opcode: Frame.text, payload: Array("{".utf8))
                #expect(try Self.flood(session, with: invalid, count: 20_000, stall: .seconds(5)) == 20_000)
                // A pong after them means the daemon has handled all of them.
                try session.sendText(#"{"event_type": "ping", "event": {}}"#)
                var sawPong = false
                while !sawPong, let message = try session.readJSONMessage() { sawPong = message["event_type"] as? String == "pong" }
                #expect(sawPong)
                let flooded = bed.daemonLogLines.count - linesBefore
                print("20,000 invalid frames: \(flooded) log lines")
                // Before: one line each, 20,000.
                #expect(flooded <= 50)
                // Once the peer may log again, its next line says how many were left out.
                let noted = try await eventually(within: .seconds(5)) { () -> Bool? in
                    try session.sendFrame(invalid)
                    return bed.daemonLogLines.contains { $0.contains("not logged: too many") } ? true : nil
                }
                #expect(noted == true)
                #expect(try bed.clients() == 1, "the session stays; invalid events are ignored")
                try bed.expectWellBehavedClientServed("after the invalid frames")
            }
        }
    }
}
