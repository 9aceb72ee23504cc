import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// What a peer controls reaches the daemon's log: its process name and
    /// the text it sends. None of it may start a line of its own.
    @Suite("Peer text in the daemon's log", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
    struct LogInjectionTests {
        /// Runs `body` while this process is called `name` in `/proc/PID/comm`,
        /// which is what the daemon reads for its peer (`SO_PEERCRED` names
        /// the process, whose comm is its main thread's). Restored however
        /// `body` ends.
        static func whileNamed<T>(_ name: String, _ body: () throws -> T) throws -> T {
            let path = "/proc/self/comm"
            let original = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .newlines)
            try name.write(toFile: path, atomically: false, encoding: .utf8)
            defer { try? original.write(toFile: path, atomically: false, encoding: .utf8) }
            return try body()
        }

        @Test("a process name and an event type with a newline and an escape stay on their line, escaped")
        func peerTextIsEscaped() async throws {
            try await withReliabilityBed { bed in
                // 14 bytes: comm holds at most 15.
                let session = try Self.whileNamed("p\n-- ERROR --\u{1B}") { try bed.openWritableSession() }
                try session.sendText(#"{"event_type": "x\n-- ERROR -- forged\r\u001b[2K", "event": {}}"#)
                try session.sendText(#"{"event_type": "ping", "event": {}}"#)
                var sawPong = false
                while !sawPong, let message = try session.readJSONMessage() { sawPong = message["event_type"] as? String == "pong" }
                #expect(sawPong)
                session.close()
                // The session's last line ("closed") is written once it is gone.
                #expect(await bed.settlesReadOnlyWithNoSession())
                #expect(await eventually { bed.daemonLogLines.contains { $0.contains("closed") && $0.contains("comm=p\\n") } })

                let lines = bed.daemonLogLines
                let forged = lines.filter { $0.hasPrefix("-- ERROR --") || $0.contains("\u{1B}") || $0.contains("\r") }
                #expect(forged.isEmpty, "lines a peer wrote: \(forged)")
                #expect(lines.contains { $0.contains(#"comm=p\n-- ERROR --\x1b"#) }, "the process name, escaped")
                #expect(lines.contains { $0.contains(#"'x\n-- ERROR -- forged\r\x1b[2K'"#) }, "the event type, escaped")
                try bed.expectWellBehavedClientServed("after a peer with a forged name")
            }
        }
    }
}
