import Foundation
import Glibc
import PersistentStorage
import PersistentStorageMount
import PersistentStorageTestBed
import PersistentStorageTestSupport
import Testing

extension Reliability {
    /// Many clients at once, for a bounded time: most write a file and close,
    /// some are killed half way, some send garbage. Nothing a completed session
    /// wrote may be lost, and the daemon must end where it started.
    ///
    /// The CI run is small (`PST_SOAK_CLIENTS=600`, 200 at a time, well under two
    /// minutes); the long run is the same test with bigger numbers, see
    /// Documentation/Reliability.md.
    @Suite("Soak: hundreds of concurrent clients", .serialized, .enabled(if: RealMounts.enabled), .timeLimit(.minutes(30)))
    struct SoakTests {
        static let clients = TestParameter.integer("PST_SOAK_CLIENTS", default: 600)
        static let concurrency = TestParameter.integer("PST_SOAK_CONCURRENCY", default: 200)
        static let seed = TestParameter.seed("PST_SOAK_SEED", default: 0x50A4_0007)
        static let imageMiB = TestParameter.integer("PST_SOAK_IMAGE_MIB", default: 64)

        enum Role: CaseIterable {
            case completes, killedMidSession, garbage
        }

        /// What a client that completed wrote.
        struct Written: Sendable {
            var name: String
            var size: Int
            var checksum: UInt64
        }

        /// The file a completing client writes: deterministic from the seed and its index.
        static func content(for index: Int) -> [UInt8] {
            var random = SeededRandom(seed: seed &+ UInt64(index) &* 0x1_0000_0001)
            return random.bytes(Int.random(in: 1...65536, using: &random))
        }

        /// Runs blocking socket work on a thread of its own, off the cooperative pool.
        static func onThread<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
            await withCheckedContinuation { continuation in
                Thread.detachNewThread { continuation.resume(returning: work()) }
            }
        }

        @Test("hundreds of concurrent clients: every completed file intact, zero sessions, RO, daemon resources back to idle, fsck clean")
        func soak() async throws {
            try await withStorageFixture(.init(sizeMiB: Self.imageMiB)) { fixture in
                try await withReliabilityBed(on: fixture, arguments: ["--max-sessions", "1000", "--heartbeat", "5"]) { bed in
                    let storage = PersistentStorageClient(socketPath: bed.socketPath, timeout: .seconds(30))
                    // Warm up, so idle means "after the first sessions", not "before any allocation".
                    for _ in 0..<20 {
                        try await storage.withWritableStorage(subdirectory: "warmup") { _ in }
                    }
                    #expect(await bed.settlesReadOnlyWithNoSession())
                    let idleDescriptors = try bed.daemonOpenDescriptors()
                    let idleResident = try bed.daemonResidentKiB()

                    var random = SeededRandom(seed: Self.seed)
                    let roles: [Role] = (0..<Self.clients).map { _ in
                        switch random.next() % 100 {
                        case 0..<70: .completes
                        case 70..<85: .killedMidSession
                        default: .garbage
                        }
                    }
                    let socketPath = bed.socketPath
                    let started = ContinuousClock.now
                    let written = Recorder<Written>()
                    let failures = Recorder<String>()
                    for waveStart in stride(from: 0, to: Self.clients, by: Self.concurrency) {
                        let wave = waveStart..<min(waveStart + Self.concurrency, Self.clients)
                        // A real client process killed with SIGKILL in every wave, too.
                        let pstrun = try ChildProcess(pstrunOn: socketPath, command: [
                            "/bin/sh", "-c", #"printf 'partial' > "$KVMD_PST_DATA/pstrun-$0"; echo $$; exec sleep 60"#, "\(waveStart)",
                        ])
                        await withTaskGroup(of: Void.self) { group in
                            for index in wave {
                                let role = roles[index]
                                let garbageSeed = random.next()
                                group.addTask {
                                    switch role {
                                    case .completes:
                                        let bytes = Self.content(for: index)
                                        do {
                                            try await storage.withWritableStorage(subdirectory: "soak") { url in
                                                try writeFile(Data(bytes), to: url.appending(path: "client-\(index)").path)
                                            }
                                            written.append(Written(name: "client-\(index)", size: bytes.count, checksum: fnv1a64(bytes)))
                                        } catch {
                                            failures.append("client \(index): \(error)")
                                        }
                                    case .killedMidSession:
                                        let error = await Self.onThread { Self.dieMidSession(socketPath: socketPath, index: index) }
                                        if let error { failures.append("killed client \(index): \(error)") }
                                    case .garbage:
                                        await Self.onThread { Self.sendGarbage(socketPath: socketPath, seed: garbageSeed) }
                                    }
                                }
                            }
                        }
                        let script = await pstrun.nextOutputLine().flatMap { pid_t($0) }
                        kill(pstrun.pid, SIGKILL)
                        killIfAlive(script)
                        _ = await pstrun.finish()
                    }
                    let elapsed = ContinuousClock.now - started

                    #expect(failures.values.isEmpty, "\(failures.values.prefix(10))")
                    #expect(await bed.settlesReadOnlyWithNoSession(within: .seconds(10)))
                    #expect(try await eventually(within: .seconds(10)) { try bed.daemonOpenDescriptors() <= idleDescriptors },
                            "descriptors: idle \(idleDescriptors), now \((try? bed.daemonOpenDescriptors()) ?? -1)")
                    let resident = try bed.daemonResidentKiB()
                    // Freed memory is not always handed back to the kernel; growth
                    // beyond this bound across a few hundred sessions is a leak.
                    #expect(resident <= idleResident + 16 * 1024, "RSS idle \(idleResident) KiB, after \(resident) KiB")

                    let files = written.values
                    let completions = roles.filter { $0 == .completes }.count
                    #expect(files.count == completions)
                    var intact = 0
                    for file in files {
                        let data = try Data(contentsOf: URL(filePath: fixture.dataPath + "/soak/" + file.name))
                        if data.count == file.size && fnv1a64(data) == file.checksum { intact += 1 }
                    }
                    #expect(intact == files.count, "\(files.count - intact) files lost or damaged")
                    let counters = try bed.remounts()
                    print("""
                        soak, seed \(Self.seed): \(Self.clients) clients (\(completions) completed, \
                        \(roles.filter { $0 == .killedMidSession }.count) killed mid-session, \
                        \(roles.filter { $0 == .garbage }.count) garbage, \((Self.clients + Self.concurrency - 1) / Self.concurrency) pstrun SIGKILLed), \
                        \(Self.concurrency) at a time, in \(elapsed); \(intact) files intact; remounts \(counters); \
                        fds \(idleDescriptors) -> \(try bed.daemonOpenDescriptors()); RSS \(idleResident) -> \(resident) KiB
                        """)
                    bed.daemon.terminate()
                    #expect(try await bed.daemon.waitForExit() == 0)
                }
                try await fixture.unmount()
                let problems = try await fixture.fileSystemCheckProblems()
                #expect(problems == nil, "e2fsck -fn: \(problems ?? "")")
            }
        }

        /// A client that opens a session, starts writing, and vanishes the way a
        /// SIGKILLed process does: the socket closes with no close frame.
        static func dieMidSession(socketPath: String, index: Int) -> String? {
            do {
                let client = try RawUnixSocketClient(path: socketPath, timeout: .seconds(30))
                defer { client.close() }
                guard try client.upgradeToWebSocket().statusCode == 101 else { return "upgrade refused" }
                var dataPath: String?
                while dataPath == nil, let message = try client.readJSONMessage() {
                    guard message["event_type"] as? String == "storage", let event = message["event"] as? [String: Any],
                          let data = event["data"] as? [String: Any], data["write_allowed"] as? Bool == true else { continue }
                    dataPath = data["path"] as? String
                }
                guard let dataPath else { return "never served" }
                // Half a file, left open and unsynced when the "process" dies.
                let fd = open(dataPath + "/killed-\(index)", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd >= 0 {
                    _ = [UInt8](repeating: 0x6B, count: 4096).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                    close(fd)
                }
                return nil
            } catch {
                return "\(error)"
            }
        }

        /// Garbage: random bytes as a request, or after an upgrade.
        static func sendGarbage(socketPath: String, seed: UInt64) {
            var random = SeededRandom(seed: seed)
            guard let client = try? RawUnixSocketClient(path: socketPath, timeout: .seconds(2)) else { return }
            defer { client.close() }
            if random.next() % 2 == 0 {
                guard (try? client.upgradeToWebSocket().statusCode) == 101 else { return }
            }
            try? client.send(random.bytes(Int.random(in: 1...2048, using: &random)))
            _ = try? client.receiveSome()
        }
    }
}
