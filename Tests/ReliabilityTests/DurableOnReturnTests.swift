import Foundation
import Glibc
import PersistentStorage
import PersistentStorageTestSupport
import Testing

/// What `kvmd-pstrun` and `withWritableStorage` wrote is on the disk when
/// they return: a copy of the loop device's backing file taken at that
/// instant (what the disk holds if the power goes then) has it, once
/// e2fsck has replayed the journal.
///
/// Another session holds the storage read-write meanwhile, so that no
/// read-only remount flushes it for them: only the client's own sync can.
@Suite("Durable on return: a copy of the disk taken the instant the call returns holds what was written", .serialized, .enabled(if: RealMounts.enabled))
struct DurableOnReturnTests {
    static let runs = 12

    /// Copies the image now, replays its journal, and reads `file` from it.
    private static func contentOnDisk(_ fixture: StorageFixture, file: String) async throws -> String? {
        let copy = fixture.directory + "/power-cut.img"
        defer { unlink(copy) }
        try await SystemCommand.run(["cp", "--sparse=always", fixture.imagePath, copy])
        // Exit 1: errors corrected (the journal replayed), which is expected here.
        let check = try await SystemCommand.execute(["e2fsck", "-fy", copy])
        #expect(check.status == 0 || check.status == 1, "\(check.standardOutput)\(check.standardError)")
        let read = try await SystemCommand.execute(["debugfs", "-R", "cat \(file)", copy])
        return read.status == 0 && !read.standardOutput.isEmpty ? read.standardOutput : nil
    }

    @Test("kvmd-pstrun: the script's file is on the disk when kvmd-pstrun exits, in every run")
    func pstrunReturns() async throws {
        try await withStorageDaemon { fixture, daemon in
            let holder = try await PersistentStorageClient(socketPath: daemon.socketPath).openSession()
            var lost: [Int] = []
            for run in 0..<Self.runs {
                let result = try await SystemCommand.execute([
                    BuiltProducts.path(of: "kvmd-pstrun"), "--socket", daemon.socketPath, "--",
                    "/bin/sh", "-c", "echo payload-\(run) > \"$KVMD_PST_DATA/file-\(run)\"",
                ])
                #expect(result.status == 0, "\(result.standardError)")
                if try await Self.contentOnDisk(fixture, file: "/file-\(run)") != "payload-\(run)\n" { lost.append(run) }
            }
            #expect(lost.isEmpty, "lost in runs \(lost) of \(Self.runs)")
            await holder.close()
        }
    }

    @Test("withWritableStorage: the body's file is on the disk when it returns, and when it throws")
    func libraryReturns() async throws {
        struct BodyFailed: Error {}
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let holder = try await storage.openSession()
            var lost: [Int] = []
            for run in 0..<Self.runs {
                do {
                    try await storage.withWritableStorage(subdirectory: "svc") { url in
                        try writeFile("payload-\(run)\n", to: url.appending(path: "file-\(run)").path(percentEncoded: false))
                        if run % 2 == 1 { throw BodyFailed() }
                    }
                } catch is BodyFailed {}
                if try await Self.contentOnDisk(fixture, file: "/svc/file-\(run)") != "payload-\(run)\n" { lost.append(run) }
            }
            #expect(lost.isEmpty, "lost in runs \(lost) of \(Self.runs)")
            await holder.close()
        }
    }

    @Test("withWritableStorage: a body cancelled after writing still has its file on the disk when the call returns")
    func cancelledBody() async throws {
        try await withStorageDaemon { fixture, daemon in
            let storage = PersistentStorageClient(socketPath: daemon.socketPath)
            let holder = try await storage.openSession()
            let (written, writtenSink) = AsyncStream<Void>.makeStream()
            let task = Task {
                try await storage.withWritableStorage { url in
                    try writeFile("before the cancel\n", to: url.appending(path: "cancelled").path(percentEncoded: false))
                    writtenSink.yield()
                    try await Task.sleep(for: .seconds(60))
                }
            }
            for await _ in written { break }
            task.cancel()
            await #expect(throws: CancellationError.self) { try await task.value }
            #expect(try await Self.contentOnDisk(fixture, file: "/cancelled") == "before the cancel\n")
            await holder.close()
        }
    }

    @Test("DurableFile.write: the new content is on the disk when it returns, while the session stays open")
    func durableFileInOpenSession() async throws {
        try await withStorageDaemon { fixture, daemon in
            let session = try await PersistentStorageClient(socketPath: daemon.socketPath).openSession()
            for run in 0..<4 {
                try DurableFile.write(Data("version \(run)\n".utf8), to: session.url.appending(path: "settings.json"))
                #expect(try await Self.contentOnDisk(fixture, file: "/settings.json") == "version \(run)\n")
            }
            await session.close()
        }
    }
}
