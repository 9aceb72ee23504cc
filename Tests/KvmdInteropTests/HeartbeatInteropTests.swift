import Foundation
import PersistentStorage
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    /// Both daemons run with a heartbeat of ``KvmdAnchor/heartbeatSeconds``
    /// here (kvmd's through `pst.server.heartbeat` in the harness's override).
    @Suite("Heartbeat")
    struct Heartbeat {
        private static let sessionSeconds = KvmdAnchor.heartbeatSeconds * 3.5

        @Test("A session outlasting several heartbeats keeps write access to the end", arguments: Pairing.crossed)
        func pstrunOutlastsHeartbeats(pairing: Pairing) async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(pairing.daemon) { _ in
                let name = "heartbeat-" + pairing.tag
                let started = ContinuousClock.now
                let finished = try await anchor.pstrun(pairing.client, command: [
                    "sh", "-c", #"sleep "$1"; printf '%s' "$0" > "$KVMD_PST_DATA/$0""#, name, String(Self.sessionSeconds),
                ])
                #expect(ContinuousClock.now - started >= .seconds(Self.sessionSeconds))
                #expect(finished.status == 0, "\(finished.standardError)")
                #expect(finished.logLines.last == "Process finished: returncode=0", "\(finished.standardError)")
                #expect(try await anchor.contents(of: anchor.mount + "/" + name) == name)
            }
        }

        @Test("Our library's session outlasts several heartbeats of kvmd's daemon")
        func libraryOutlastsHeartbeats() async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(.kvmd) { _ in
                let storage = PersistentStorageClient(socketPath: anchor.socket)
                let clients = try await storage.withWritableStorage { _ in
                    try await Task.sleep(for: .seconds(Self.sessionSeconds))
                    return try await storage.state().clients
                }
                #expect(clients == 1)
            }
        }

        // What makes the two tests above mean something: the heartbeat is on,
        // and a client that does not answer it is dropped. kvmd's daemon
        // shows what to expect; ours must do the same. The client is the
        // harness's aiohttp probe with its automatic pong switched off.
        @Test("A client that does not answer the pings is dropped after heartbeat and a half", arguments: [KvmdAnchor.Daemon.kvmd, .ours])
        func silentClientDropped(daemon: KvmdAnchor.Daemon) async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(daemon) { _ in
                let result = try await execute([
                    anchor.venv + "/bin/python", anchor.harness + "/wsprobe.py", "frames", anchor.socket,
                    "--duration", String(KvmdAnchor.heartbeatSeconds * 4), "--no-autoping",
                ])
                let frames = result.standardOutput.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
                let kinds = frames.compactMap { $0["kind"] as? String }
                #expect(kinds.contains("PING"), "\(result.standardOutput)")
                let end = frames.first { ["CLOSED", "CLOSE", "ERROR"].contains($0["kind"] as? String) }
                let endTime = try #require(end?["t"] as? Double, "the connection was not dropped: \(result.standardOutput)")
                #expect(endTime < KvmdAnchor.heartbeatSeconds * 3, "\(result.standardOutput)")
                #expect(!kinds.contains("timeout"), "\(result.standardOutput)")
            }
        }
    }
}
