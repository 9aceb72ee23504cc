import PersistentStorageProtocol
import Foundation
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@Suite("The session limit", .enabled(if: RealMounts.enabled))
struct SessionLimitTests {
    @Test("Past --max-sessions an upgrade gets 503 in the JSON envelope, and the open session is unharmed")
    func fullDaemonRefusesWithServiceUnavailable() async throws {
        try await withDaemonTestBed(arguments: ["--max-sessions", "1"]) { bed in
            let first = try bed.openSession()
            #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: first)) == true)

            let second = try RawUnixSocketClient(path: bed.socketPath)
            let refused = try second.upgradeToWebSocket()
            #expect(refused.statusCode == 503)
            let body = try #require(refused.jsonObject)
            #expect(body["ok"] as? Bool == false)
            #expect((body["result"] as? [String: Any])?["error"] as? String == "HTTPServiceUnavailable")
            #expect(try bed.clients() == 1)

            // The first session still answers.
            try first.sendText(#"{"event_type": "ping", "event": {}}"#)
            var answered = false
            while !answered, let message = try first.readJSONMessage() {
                answered = message["event_type"] as? String == "pong"
            }
            #expect(answered)

            // Once it closes, there is room again.
            first.close()
            #expect(await eventually { (try? bed.clients()) == 0 })
            let third = try bed.openSession()
            #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: third)) == true)
            third.close()
        }
    }
}
