import PersistentStorageProtocol
import Foundation
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

@Suite("GET /state and the other HTTP routes, on the wire", .serialized)
struct StateEndpointTests {
    @Test("GET /state answers the reference's JSON shape, with keys sorted", .enabled(if: RealMounts.enabled))
    func stateShape() async throws {
        try await withDaemonTestBed { bed in
            let response = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/state")
            #expect(response.statusCode == 200)
            #expect(response.header("Content-Type")?.hasPrefix("application/json") == true)
            let body = try #require(response.jsonObject)
            #expect(body["ok"] as? Bool == true)
            let result = try #require(body["result"] as? [String: Any])
            #expect(result["clients"] as? Int == 0)
            let data = try #require(result["data"] as? [String: Any])
            #expect(data["path"] as? String == bed.fixture.dataPath)
            #expect(data["write_allowed"] as? Bool == false)
            // Start-up: RW (with the fix step), then RO.
            #expect(result["remounts"] as? [String: Int] == ["rw": 1, "ro": 1, "failed": 0])
            #expect(result["error"] == nil)
            let text = response.bodyText
            let order = ["\"clients\"", "\"data\"", "\"remounts\""].compactMap { text.range(of: $0)?.lowerBound }
            #expect(order.count == 3 && order == order.sorted(), "keys not sorted: \(text)")
            #expect(text.contains(bed.fixture.dataPath), "the path should not be escaped: \(text)")
        }
    }

    @Test("GET /state lists each session: id, the peer's pid, uid, user and command, and when it opened (issue 16)", .enabled(if: RealMounts.enabled))
    func sessionsAreListed() async throws {
        try await withDaemonTestBed { bed in
            let before = time(nil)
            let first = try bed.openSession()
            let second = try bed.openSession()
            _ = try DaemonTestBed.nextStorageEvent(on: first)
            _ = try DaemonTestBed.nextStorageEvent(on: second)
            let result = try #require(try RawUnixSocketClient(path: bed.socketPath).request("GET", "/state").jsonObject?["result"] as? [String: Any])
            let sessions = try #require(result["sessions"] as? [[String: Any]])
            #expect(sessions.count == 2)
            #expect(sessions.compactMap { $0["id"] as? Int } == [1, 2])
            let command = try String(contentsOfFile: "/proc/self/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            for session in sessions {
                #expect(session["pid"] as? Int == Int(getpid()))
                #expect(session["uid"] as? Int == Int(getuid()))
                #expect(session["user"] as? String == "root")
                #expect(session["command"] as? String == command)
                let since = try #require(session["since"] as? String)
                #expect(since.wholeMatch(of: /\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z/) != nil, "\(since)")
                let opened = Int(try #require(ISO8601DateFormatter().date(from: since)).timeIntervalSince1970)
                #expect(opened >= before - 1 && opened <= time(nil) + 1, "\(since)")
            }
            first.close()
            #expect(try await eventually {
                let now = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/state").jsonObject?["result"] as? [String: Any]
                return (now?["sessions"] as? [[String: Any]])?.compactMap { $0["id"] as? Int } == [2]
            })
            second.close()
        }
    }

    @Test("start-up leaves the storage read-only with the data directory made by the fix step", .enabled(if: RealMounts.enabled))
    func startUpRunsTheFix() async throws {
        try await withDaemonTestBed { bed in
            #expect(bed.fixture.state == .readOnly)
            var info = stat()
            #expect(stat(bed.fixture.dataPath, &info) == 0)
            #expect(info.st_uid == 65534, "X-kvmd.pst-user=nobody owns the data directory")
        }
    }

    @Test("the reference's other routes answer 308, 405, 404 and 400 in the JSON envelope", .enabled(if: RealMounts.enabled))
    func otherRoutes() async throws {
        try await withDaemonTestBed { bed in
            let redirect = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/state/")
            #expect(redirect.statusCode == 308)
            #expect(redirect.header("Location") == "/state")

            let post = try RawUnixSocketClient(path: bed.socketPath).request("POST", "/state", body: Array("{}".utf8))
            #expect(post.statusCode == 405)
            #expect(post.header("Allow") == "GET")
            #expect(post.jsonObject?["ok"] as? Bool == false)

            let missing = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/nothing/here")
            #expect(missing.statusCode == 404)
            let error = try #require(missing.jsonObject?["result"] as? [String: Any])
            #expect(error["error"] as? String == "HTTPNotFound")
            #expect(error["error_msg"] is String)

            let plainWS = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/ws")
            #expect(plainWS.statusCode == 400)
            #expect(plainWS.jsonObject?["ok"] as? Bool == false)
        }
    }

    @Test("malformed HTTP and oversized headers get an error answer and the daemon carries on", .enabled(if: RealMounts.enabled))
    func malformedHTTP() async throws {
        try await withDaemonTestBed { bed in
            let garbage = try RawUnixSocketClient(path: bed.socketPath)
            try garbage.send([0x16, 0x03, 0x01, 0x00, 0xFF] + Array("\u{0}\u{1}not http at all\r\n\r\n".utf8))
            let answer = try garbage.readHTTPResponse()
            #expect(answer.statusCode == 400)
            #expect(answer.jsonObject?["ok"] as? Bool == false)

            let huge = try RawUnixSocketClient(path: bed.socketPath)
            let oversized = try huge.request("GET", "/state", headers: [("X-Filler", String(repeating: "a", count: 64 * 1024))])
            #expect(oversized.statusCode == 431 || oversized.statusCode == 400)

            #expect(try bed.clients() == 0)
        }
    }
}
