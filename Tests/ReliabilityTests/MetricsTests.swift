import PersistentStorageProtocol
import Foundation
import Glibc
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

/// `GET /metrics` against a real daemon on a real mount (issue 16): each
/// figure after the event it counts, as a scraper reads it.
@Suite("GET /metrics", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(1)))
struct MetricsTests {
    /// The samples of one scrape, by series (`name{label="value",...}` as
    /// the daemon writes it), and the answer's content type.
    struct Scrape {
        var samples: [String: Double] = [:]
        var contentType: String?
        var text: String

        subscript(_ series: String) -> Double? { samples[series] }
    }

    static func scrape(_ bed: DaemonTestBed) throws -> Scrape {
        let response = try RawUnixSocketClient(path: bed.socketPath).request("GET", "/metrics")
        #expect(response.statusCode == 200, "\(response.bodyText)")
        var scrape = Scrape(contentType: response.header("content-type"), text: response.bodyText)
        for line in response.bodyText.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                Issue.record("not a sample line: \(line)")
                continue
            }
            scrape.samples[String(line[..<space])] = value
        }
        return scrape
    }

    @Test("sessions, refusals by reason, remounts, read-write time, durations, connections; 403 for an outsider")
    func countsWhatHappened() async throws {
        try await withReliabilityBed(arguments: ["--max-sessions", "2", "--socket-mode", "0666"]) { bed in
            let start = try Self.scrape(bed)
            #expect(start.contentType == "text/plain; version=0.0.4; charset=utf-8")
            #expect(start.text.contains("# HELP kvmd_pst_sessions_opened_total Sessions opened.\n# TYPE kvmd_pst_sessions_opened_total counter"), "\(start.text)")
            #expect(start["kvmd_pst_sessions"] == 0)
            #expect(start["kvmd_pst_storage_writable"] == 0)
            #expect(start["kvmd_pst_filesystem_errors"] == 0)
            // The start-up fix step: read-write, then read-only.
            #expect(start[#"kvmd_pst_remounts_total{mode="rw",result="ok"}"#] == 1, "\(start.text)")
            #expect(start[#"kvmd_pst_remounts_total{mode="ro",result="ok"}"#] == 1)

            let first = try bed.openWritableSession()
            let second = try bed.openWritableSession()
            // A third is over --max-sessions 2; a plain GET /ws is no upgrade.
            let third = try RawUnixSocketClient(path: bed.socketPath).upgradeToWebSocket()
            #expect(third.statusCode == 503)
            #expect(try RawUnixSocketClient(path: bed.socketPath).request("GET", "/ws").statusCode == 400)
            let during = try Self.scrape(bed)
            #expect(during["kvmd_pst_sessions"] == 2)
            #expect(during["kvmd_pst_sessions_opened_total"] == 2)
            #expect(during["kvmd_pst_storage_writable"] == 1)
            #expect(during[#"kvmd_pst_sessions_refused_total{reason="unavailable"}"#] == 1, "\(during.text)")
            #expect(during[#"kvmd_pst_sessions_refused_total{reason="bad_request"}"#] == 1)
            #expect(during[#"kvmd_pst_remounts_total{mode="rw",result="ok"}"#] == 2)
            #expect(during["kvmd_pst_connections"] ?? 0 >= 3, "the two sessions and this scrape")

            if Reliability.AuthorizationTests.canSwitchUsers {
                let outsider = { (target: String) throws -> String in
                    try Reliability.AuthorizationTests.asNobody([
                        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3", "--unix-socket", bed.socketPath,
                        "-H", "Upgrade: websocket", "-H", "Connection: Upgrade",
                        "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "-H", "Sec-WebSocket-Version: 13",
                        "http://localhost:0\(target)",
                    ]).standardOutput
                }
                #expect(try outsider("/metrics") == "403", "the same peer rule as GET /state")
                #expect(try outsider("/ws") == "403")
            }

            try await Task.sleep(for: .milliseconds(300))
            first.close()
            second.close()
            #expect(await bed.settlesReadOnlyWithNoSession())
            let after = try Self.scrape(bed)
            #expect(after["kvmd_pst_sessions"] == 0)
            #expect(after["kvmd_pst_storage_writable"] == 0)
            #expect(after[#"kvmd_pst_sessions_refused_total{reason="forbidden"}"#] == (Reliability.AuthorizationTests.canSwitchUsers ? 1 : 0))
            #expect(after[#"kvmd_pst_remounts_total{mode="ro",result="ok"}"#] == 2)
            #expect(after["kvmd_pst_session_duration_seconds_count"] == 2, "\(after.text)")
            #expect(after[#"kvmd_pst_session_duration_seconds_bucket{le="0.1"}"#] == 0, "both were held for 0.3 s or more")
            let readWrite = try #require(after["kvmd_pst_read_write_seconds_total"])
            #expect(readWrite >= 0.3 && readWrite < 10, "\(readWrite)")
            #expect(after["kvmd_pst_connections_accepted_total"] ?? 0 >= 8, "\(after.text)")
        }
    }

    @Test("a busy read-only remount: one refusal per attempt, a failed remount each, until the holder lets go")
    func busyRefusals() async throws {
        try await withReliabilityBed { bed in
            let session = try bed.openWritableSession()
            let holder = try await ChildProcess.holdingOpenForWriting(bed.fixture.dataPath + "/held-open")
            defer { kill(holder.pid, SIGKILL) }
            session.close()
            #expect(try await eventually(within: .seconds(5)) { try Self.scrape(bed)["kvmd_pst_busy_refusals_total"] ?? 0 >= 2 })
            let busy = try Self.scrape(bed)
            #expect(busy["kvmd_pst_storage_writable"] == 1)
            let failed = try #require(busy[#"kvmd_pst_remounts_total{mode="ro",result="failed"}"#])
            #expect(failed >= busy["kvmd_pst_busy_refusals_total"]!, "\(busy.text)")
            kill(holder.pid, SIGKILL)
            _ = await holder.finish()
            #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
            #expect(try Self.scrape(bed)[#"kvmd_pst_remounts_total{mode="ro",result="ok"}"#] == 2)
        }
    }

    @Test("a remount command that fails: the session is told write_allowed false, counted as refused (not_writable)")
    func refusedNotWritable() async throws {
        try await withReliabilityBed(arguments: ["--remount-command", "/bin/false"]) { bed in
            let session = try bed.openSession()
            defer { session.close() }
            #expect(DaemonTestBed.writeAllowed(in: try DaemonTestBed.nextStorageEvent(on: session)) == false)
            let scrape = try Self.scrape(bed)
            #expect(scrape[#"kvmd_pst_sessions_refused_total{reason="not_writable"}"#] == 1, "\(scrape.text)")
            #expect(scrape[#"kvmd_pst_remounts_total{mode="rw",result="failed"}"#] ?? 0 >= 2, "at start and for the session")
            #expect(scrape["kvmd_pst_sessions_opened_total"] == 1)
            #expect(scrape["kvmd_pst_storage_writable"] == 0)
        }
    }

    @Test("dropped peers by reason: a silent session (heartbeat), a binary frame, a request never sent")
    func droppedPeers() async throws {
        try await withReliabilityBed(arguments: ["--heartbeat", "0.4", "--http-timeout", "0.5"]) { bed in
            let silent = try bed.openWritableSession()
            defer { silent.close() }
            let binary = try bed.openWritableSession()
            try binary.sendFrame(RawWebSocketFrame(opcode: 0x2, payload: [1, 2, 3]))
            let idle = try RawUnixSocketClient(path: bed.socketPath)
            defer { idle.close() }
            let drops = try await eventually(within: .seconds(5)) { () -> Scrape? in
                let scrape = try Self.scrape(bed)
                return scrape[#"kvmd_pst_peers_dropped_total{reason="heartbeat"}"#] == 1
                    && scrape[#"kvmd_pst_peers_dropped_total{reason="request_timeout"}"#] ?? 0 >= 1 ? scrape : nil
            }
            let scrape = try #require(drops, "never all three drops; daemon log:\n\(bed.daemon.log)")
            #expect(scrape[#"kvmd_pst_peers_dropped_total{reason="protocol_error"}"#] == 1)
            #expect(scrape[#"kvmd_pst_peers_dropped_total{reason="unread"}"#] == 0)
            #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(3)))
            #expect(try Self.scrape(bed)["kvmd_pst_session_duration_seconds_count"] == 2)
        }
    }
}
