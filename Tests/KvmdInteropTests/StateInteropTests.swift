import Foundation
import PersistentStorage
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    @Suite("GET /state")
    struct State {
        /// What a kvmd client reads from `GET /state`: the content type, `ok`,
        /// and `result`'s kvmd keys (ours adds `remounts`, and `error`).
        private struct Seen: Equatable, CustomStringConvertible {
            var contentType: String?
            var ok: Bool?
            var clients: Int?
            var path: String?
            var writeAllowed: Bool?
            var description: String { "\(contentType ?? "-") ok=\(ok.map(String.init) ?? "-") clients=\(clients.map(String.init) ?? "-") path=\(path ?? "-") write_allowed=\(writeAllowed.map(String.init) ?? "-")" }
        }

        private func seen(_ anchor: KvmdAnchor) async throws -> Seen {
            let (head, json) = try await anchor.rawState()
            let contentType = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-type:") }
                .map { String($0.dropFirst("content-type:".count)).trimmingCharacters(in: .whitespaces) }
            let result = json["result"] as? [String: Any]
            let data = result?["data"] as? [String: Any]
            return Seen(contentType: contentType, ok: json["ok"] as? Bool, clients: result?["clients"] as? Int,
                        path: data?["path"] as? String, writeAllowed: data?["write_allowed"] as? Bool)
        }

        /// `GET /state` idle, then while a session (kvmd's kvmd-pstrun) holds the storage.
        private func states(under daemon: KvmdAnchor.Daemon, _ anchor: KvmdAnchor) async throws -> [Seen] {
            let markers = try Markers()
            return try await anchor.withDaemon(daemon) { _ in
                let idle = try await seen(anchor)
                let run = try anchor.startPstrun(.kvmd, command: [
                    "sh", "-c", #"touch "$0"; while [ ! -e "$1" ]; do sleep 0.1; done"#, markers.path("started"), markers.path("go"),
                ])
                #expect(await markers.wait(for: "started"))
                let held = try await seen(anchor)
                markers.create("go")
                #expect(await run.exits(within: .seconds(30)))
                #expect(await anchor.becomesReadOnly())
                return [idle, held]
            }
        }

        @Test("Our daemon answers GET /state as kvmd's does, idle and during a session")
        func sameAsKvmd() async throws {
            let anchor = try KvmdAnchor.load()
            let kvmd = try await states(under: .kvmd, anchor)
            let ours = try await states(under: .ours, anchor)
            #expect(kvmd == [
                Seen(contentType: "application/json; charset=utf-8", ok: true, clients: 0, path: anchor.mount, writeAllowed: false),
                Seen(contentType: "application/json; charset=utf-8", ok: true, clients: 1, path: anchor.mount, writeAllowed: true),
            ])
            #expect(ours == kvmd)
        }

        @Test("Our library reads kvmd's GET /state")
        func libraryReadsKvmdState() async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(.kvmd) { _ in
                let storage = PersistentStorageClient(socketPath: anchor.socket)
                let state = try await storage.state()
                #expect(state.status == StorageStatus(clients: 0, data: .init(path: anchor.mount, writeAllowed: false)))
                // kvmd's answer has none of swift-pst's additions: absent, not an error (issue 16).
                #expect(state.remounts == nil && state.sessions == nil && state.busy == nil && state.error == nil)
                let directory = try await storage.dataDirectory(subdirectory: "some-service")
                #expect(directory.path == anchor.mount + "/some-service")
            }
        }
    }
}
