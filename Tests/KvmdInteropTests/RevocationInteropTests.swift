import Foundation
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    @Suite("Revocation")
    struct Revocation {
        /// A script that creates `$0` when it runs and then waits; with
        /// `trapsTerm` it exits 7 on SIGTERM instead of dying of it.
        private static func waitingScript(marker: String, trapsTerm: Bool) -> [String] {
            let trap = trapsTerm ? "trap 'exit 7' TERM; " : ""
            return ["sh", "-c", trap + #"touch "$0"; while :; do sleep 0.1; done"#, marker]
        }

        /// How each kvmd-pstrun reports a script that SIGTERM ended: kvmd's
        /// as the negative status wrapped (241), ours as a shell does (143).
        private static func terminatedStatus(_ client: KvmdAnchor.Client) -> Int32 { client == .kvmd ? 241 : 143 }

        /// What each kvmd-pstrun logs when write access goes away.
        private static func revocationLine(_ client: KvmdAnchor.Client) -> String {
            client == .kvmd ? "PST write is not allowed" : "PST write access was revoked"
        }

        @Test("The daemon's shutdown stops the script; kvmd-pstrun exits with the script's status; the storage is read-only after",
              arguments: Pairing.crossed, [false, true])
        func daemonShutdown(pairing: Pairing, trapsTerm: Bool) async throws {
            let anchor = try KvmdAnchor.load()
            let markers = try Markers()
            try await anchor.withDaemon(pairing.daemon) { daemon in
                let run = try anchor.startPstrun(
                    pairing.client, command: Self.waitingScript(marker: markers.path("started"), trapsTerm: trapsTerm))
                #expect(await markers.wait(for: "started"))
                try await daemon.stop()
                #expect(await run.exits(within: .seconds(20)))
                let finished = try run.finish()
                #expect(finished.status == (trapsTerm ? 7 : Self.terminatedStatus(pairing.client)), "\(finished.standardError)")
                #expect(finished.logLines.contains { $0.hasPrefix(Self.revocationLine(pairing.client)) }, "\(finished.standardError)")
                #expect(try await anchor.mountMode() == "ro")
            }
        }

        @Test("Our daemon tells kvmd's kvmd-pstrun about an administrator's remount,ro, and kvmd-pstrun stops the script")
        func administratorRemountUnderOurDaemon() async throws {
            let anchor = try KvmdAnchor.load()
            let markers = try Markers()
            try await anchor.withDaemon(.ours) { _ in
                let run = try anchor.startPstrun(.kvmd, command: Self.waitingScript(marker: markers.path("started"), trapsTerm: false))
                #expect(await markers.wait(for: "started"))
                try await anchor.run(["mount", "-o", "remount,ro", anchor.mount])
                #expect(await run.exits(within: .seconds(20)))
                let finished = try run.finish()
                #expect(finished.status == Self.terminatedStatus(.kvmd), "\(finished.standardError)")
                #expect(finished.logLines.contains("PST write is not allowed"), "\(finished.standardError)")
                #expect(try await anchor.mountMode() == "ro")
            }
        }

        // kvmd's daemon does not watch the mount table: an administrator's
        // remount reaches no client, and the script's next write fails. Our
        // kvmd-pstrun must then do what kvmd's does: pass the failure through.
        @Test("Under kvmd's daemon an administrator's remount,ro reaches no client: the script's write fails and its status comes through",
              arguments: [KvmdAnchor.Client.kvmd, .ours])
        func administratorRemountUnderKvmdDaemon(client: KvmdAnchor.Client) async throws {
            let anchor = try KvmdAnchor.load()
            let markers = try Markers()
            try await anchor.withDaemon(.kvmd) { _ in
                let script = #"touch "$0"; while [ ! -e "$1" ]; do sleep 0.1; done; echo late > "$KVMD_PST_DATA/late-$2" || exit 5"#
                let run = try anchor.startPstrun(client, command: ["sh", "-c", script, markers.path("started"), markers.path("go"), client.rawValue])
                #expect(await markers.wait(for: "started"))
                try await anchor.run(["mount", "-o", "remount,ro", anchor.mount])
                markers.create("go")
                #expect(await run.exits(within: .seconds(20)))
                let finished = try run.finish()
                #expect(finished.status == 5, "\(finished.standardError)")
                #expect(finished.standardError.contains("Read-only file system"))
                #expect(finished.logLines.last == "Process finished: returncode=5")
                #expect(try await anchor.mountMode() == "ro")
            }
        }
    }
}
