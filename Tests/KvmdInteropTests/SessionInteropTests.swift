import Foundation
import PersistentStorageTestSupport
import Testing

extension KvmdInteropTests {
    @Suite("Sessions and exit statuses")
    struct Sessions {
        @Test("The script runs while the storage is read-write, writes into KVMD_PST_DATA (the mount point), and the storage is read-only after",
              arguments: Pairing.crossedAndReference)
        func session(pairing: Pairing) async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(pairing.daemon) { _ in
                #expect(try await anchor.mountMode() == "ro")
                let name = "session-" + pairing.tag
                let finished = try await anchor.pstrun(pairing.client, command: [
                    "sh", "-c",
                    #"findmnt -n -o OPTIONS --mountpoint "$KVMD_PST_DATA" | cut -d, -f1; printf '%s' "$0" > "$KVMD_PST_DATA/$0""#,
                    name,
                ])
                #expect(finished.status == 0, "\(finished.standardError)")
                #expect(finished.standardOutput == "rw\n")
                #expect(finished.logLines == [
                    "Opening PST session ...",
                    "PST write is allowed: \(anchor.mount)",
                    "Running the process ...",
                    "Process finished: returncode=0",
                ], "\(finished.standardError)")
                #expect(try await anchor.contents(of: anchor.mount + "/" + name) == name)
                #expect(await anchor.becomesReadOnly())
            }
        }

        struct ExitCase: CustomTestStringConvertible, Sendable {
            var command: [String]
            var kvmdStatus: Int32
            var ourStatus: Int32
            var testDescription: String { command.joined(separator: " ") }
            func status(of client: KvmdAnchor.Client) -> Int32 { client == .kvmd ? kvmdStatus : ourStatus }
        }

        // A missing command: kvmd's kvmd-pstrun exits 1 with a traceback, ours
        // 127 as a shell does (Protocol.md).
        static let exitCases = [
            ExitCase(command: ["sh", "-c", "exit 7"], kvmdStatus: 7, ourStatus: 7),
            ExitCase(command: ["false"], kvmdStatus: 1, ourStatus: 1),
            ExitCase(command: ["/nonexistent/command"], kvmdStatus: 1, ourStatus: 127),
        ]

        @Test("kvmd-pstrun passes the script's status through, and the storage is read-only after",
              arguments: Pairing.crossed, exitCases)
        func exitStatus(pairing: Pairing, exitCase: ExitCase) async throws {
            let anchor = try KvmdAnchor.load()
            try await anchor.withDaemon(pairing.daemon) { _ in
                let finished = try await anchor.pstrun(pairing.client, command: exitCase.command)
                #expect(finished.status == exitCase.status(of: pairing.client), "\(finished.standardError)")
                #expect(finished.logLines.contains("PST write is allowed: \(anchor.mount)"), "\(finished.standardError)")
                if exitCase.command != ["/nonexistent/command"] {
                    #expect(finished.logLines.last == "Process finished: returncode=\(exitCase.status(of: pairing.client))")
                }
                #expect(await anchor.becomesReadOnly())
            }
        }
    }
}
