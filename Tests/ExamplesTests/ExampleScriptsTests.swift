import Foundation
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

/// Every example in Examples/, run as a user would, against a real `kvmd-pst`
/// on a real loop-mounted image.
@Suite("The examples against a real daemon", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(2)))
struct ExampleScriptsTests {
    @Test("the PST document's test.sh, through kvmd-pstrun, writes foo and leaves the storage read-only")
    func documentExample() async throws {
        try await withStorageDaemon { fixture, daemon in
            let runner = ExampleRunner(socketPath: daemon.socketPath)
            let result = try runner.run([
                BuiltProducts.path(of: "kvmd-pstrun"), "--socket", daemon.socketPath, "--",
                Repository.path("Examples/test.sh"), "--some", "--script", "--args",
            ])
            #expect(result.standardOutput.hasSuffix(" + --some --script --args\n"))
            #expect(try String(contentsOfFile: fixture.dataPath + "/foo", encoding: .utf8) == result.standardOutput)
            #expect(result.standardError.contains("PST write is allowed: \(fixture.dataPath)"))
            #expect(result.standardError.contains("Process finished: returncode=0"))
            let state = try await DaemonState.settled(daemon.socketPath)
            #expect(state.remountsToReadWrite == 2)  // start-up, then the session
        }
    }

    @Test("renew-certificate.sh opens a session only for a changed certificate, and swaps it in atomically")
    func certificateRenewal() async throws {
        try await withStorageDaemon { fixture, daemon in
            try await withTemporaryDirectory { scratch in
                let runner = ExampleRunner(socketPath: daemon.socketPath)
                let new = scratch + "/letsencrypt"
                try FileManager.default.createDirectory(atPath: new, withIntermediateDirectories: true)
                try "certificate 1\n".write(toFile: new + "/cert.pem", atomically: true, encoding: .utf8)
                try "key 1\n".write(toFile: new + "/key.pem", atomically: true, encoding: .utf8)
                let certs = fixture.dataPath + "/certs"
                let start = try DaemonState.fetch(from: daemon.socketPath).remountsToReadWrite

                // A new certificate: one session, and `current` points at a complete generation.
                let first = try runner.script("renew-certificate.sh", [new])
                #expect(first.standardOutput.contains("certificate installed as gen-"))
                var state = try await DaemonState.settled(daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 1)
                let firstGeneration = try FileManager.default.destinationOfSymbolicLink(atPath: certs + "/current")
                #expect(firstGeneration.hasPrefix("gen-"))
                #expect(try String(contentsOfFile: certs + "/current/cert.pem", encoding: .utf8) == "certificate 1\n")

                // The same certificate again: compared without a session, nothing remounted.
                let unchanged = try runner.script("renew-certificate.sh", [new])
                #expect(unchanged.standardOutput.contains("certificate unchanged: no session opened"))
                state = try DaemonState.fetch(from: daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 1)
                #expect(!state.writeAllowed)

                // What a run cut off by a power failure leaves behind, written
                // behind the daemon's back (stopped, or it would make the
                // storage read-only again at once): it must not stop the next run.
                daemon.terminate(signal: SIGSTOP)
                try await fixture.remountExternally(.readWrite)
                try FileManager.default.createSymbolicLink(atPath: certs + "/current.new", withDestinationPath: "gen-stale")
                try FileManager.default.createDirectory(atPath: certs + "/gen-stale.partial", withIntermediateDirectories: false)
                try await fixture.remountExternally(.readOnly)
                daemon.terminate(signal: SIGCONT)

                // A renewed certificate: one more session; old and partial generations are gone.
                try "certificate 2\n".write(toFile: new + "/cert.pem", atomically: true, encoding: .utf8)
                try runner.script("renew-certificate.sh", [new])
                state = try await DaemonState.settled(daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 2)
                let secondGeneration = try FileManager.default.destinationOfSymbolicLink(atPath: certs + "/current")
                #expect(secondGeneration != firstGeneration)
                #expect(try String(contentsOfFile: certs + "/current/cert.pem", encoding: .utf8) == "certificate 2\n")
                let entries = try FileManager.default.contentsOfDirectory(atPath: certs).sorted()
                #expect(entries == ["current", secondGeneration].sorted(), "no partial or old generation is left")
            }
        }
    }

    @Test("backup-config.sh then restore-config.sh gives back the same directory; an unchanged backup opens no session")
    func backupAndRestore() async throws {
        try await withStorageDaemon { fixture, daemon in
            try await withTemporaryDirectory { scratch in
                let runner = ExampleRunner(socketPath: daemon.socketPath)
                let config = scratch + "/config"
                try FileManager.default.createDirectory(atPath: config + "/override.d", withIntermediateDirectories: true)
                try "kvmd:\n    gpio: {}\n".write(toFile: config + "/override.yaml", atomically: true, encoding: .utf8)
                try "# extra\n".write(toFile: config + "/override.d/10-extra.yaml", atomically: true, encoding: .utf8)
                let start = try DaemonState.fetch(from: daemon.socketPath).remountsToReadWrite

                let saved = try runner.script("backup-config.sh", [config, "kvmd"])
                #expect(saved.standardOutput.contains("backup kvmd saved"))
                #expect(FileManager.default.fileExists(atPath: fixture.dataPath + "/backups/kvmd.tar.gz"))
                var state = try await DaemonState.settled(daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 1)

                let again = try runner.script("backup-config.sh", [config, "kvmd"])
                #expect(again.standardOutput.contains("backup kvmd unchanged: no session opened"))
                state = try DaemonState.fetch(from: daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 1)

                let restored = scratch + "/restored"
                let restore = try runner.script("restore-config.sh", ["kvmd", restored])
                #expect(restore.standardOutput.contains("restored kvmd into \(restored)"))
                try runner.run(["diff", "-r", config, restored])
                state = try DaemonState.fetch(from: daemon.socketPath)
                #expect(state.remountsToReadWrite == start + 1, "restoring reads without a session")

                let missing = try runner.script("restore-config.sh", ["nothing-here", restored], expecting: 1)
                #expect(missing.standardError.contains("no backup named nothing-here"))
            }
        }
    }

    @Test("the shell examples say clearly when the daemon is not there")
    func daemonNotRunning() async throws {
        try await withTemporaryDirectory { scratch in
            let runner = ExampleRunner(socketPath: scratch + "/missing.sock")
            let result = try runner.script("restore-config.sh", ["kvmd", scratch + "/out"], expecting: 1)
            #expect(result.standardError.contains("is kvmd-pst running"), "\(result.standardError)")
            #expect(!result.standardError.contains("Traceback"))
        }
    }

    @Test("SettingsService writes its JSON file in a session and reads it back without one")
    func settingsService() async throws {
        try await withStorageDaemon { fixture, daemon in
            let runner = ExampleRunner(socketPath: daemon.socketPath)
            let service = BuiltProducts.path(of: "SettingsService")
            let directory = fixture.dataPath + "/settings-service"
            let start = try DaemonState.fetch(from: daemon.socketPath).remountsToReadWrite

            #expect(try runner.run([service, "get"]).standardOutput == "{\n\n}\n")
            try runner.run([service, "get", "theme"], expecting: 1)

            #expect(try runner.run([service, "set", "theme", "dark"]).standardOutput == "saved theme\n")
            try runner.run([service, "set", "language", "de"])
            var state = try await DaemonState.settled(daemon.socketPath)
            #expect(state.remountsToReadWrite == start + 2)
            let file = try String(contentsOfFile: directory + "/settings.json", encoding: .utf8)
            #expect(file == "{\n  \"language\" : \"de\",\n  \"theme\" : \"dark\"\n}\n")
            #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["settings.json"],
                    "no temporary file is left behind")

            // Reading, and setting a value it already has, open no session.
            #expect(try runner.run([service, "get", "theme"]).standardOutput == "dark\n")
            let unchanged = try runner.run([service, "set", "theme", "dark"])
            #expect(unchanged.standardOutput.contains("no session opened"))
            state = try DaemonState.fetch(from: daemon.socketPath)
            #expect(state.remountsToReadWrite == start + 2)
            #expect(!state.writeAllowed)
        }
    }

    @Test("SettingsService: sets from several processes at once, with overlapping sessions, keep every key")
    func settingsServiceConcurrentSets() async throws {
        try await withStorageDaemon { fixture, daemon in
            let runner = ExampleRunner(socketPath: daemon.socketPath)
            let service = BuiltProducts.path(of: "SettingsService")
            var expected: [String: String] = [:]
            for round in 0..<4 {
                let keys = (0..<4).map { "key\(round)-\($0)" }
                let processes = try keys.map { key in
                    let process = Process()
                    process.executableURL = URL(filePath: service)
                    process.arguments = ["set", key, "value of \(key)"]
                    process.environment = runner.environment
                    process.standardOutput = FileHandle.nullDevice
                    try process.run()
                    return process
                }
                for process in processes {
                    process.waitUntilExit()
                    #expect(process.terminationStatus == 0)
                }
                for key in keys { expected[key] = "value of \(key)" }
            }
            let file = fixture.dataPath + "/settings-service/settings.json"
            let saved = try JSONDecoder().decode([String: String].self, from: Data(contentsOf: URL(filePath: file)))
            #expect(saved == expected, "lost: \(Set(expected.keys).subtracting(saved.keys).sorted())")
        }
    }

    @Test("SettingsService without a daemon fails with the library's message")
    func settingsServiceWithoutDaemon() throws {
        let runner = ExampleRunner(socketPath: "/nonexistent/pst.sock")
        let result = try runner.run([BuiltProducts.path(of: "SettingsService"), "set", "a", "b"], expecting: 1)
        #expect(result.standardError.contains("no PST daemon at /nonexistent/pst.sock"), "\(result.standardError)")
    }
}
