import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

@Suite("Remounting in-process through libmount", .enabled(if: RealMounts.enabled))
struct RemountTests {
    static let keptOptions = ["nodev", "nosuid", "noexec", "data=journal", "errors=remount-ro"]

    private func remount(_ fixture: StorageFixture, _ mode: RemountMode) throws(RemountError) {
        try KernelRemounter(fstabPath: fixture.fstabPath).remount(fixture.mountPath, to: mode)
    }

    private func remountError(_ fixture: StorageFixture, _ mode: RemountMode) -> RemountError? {
        do {
            try remount(fixture, mode)
            return nil
        } catch {
            return error
        }
    }

    @Test("rw then ro keeps nodev,nosuid,noexec and data=journal")
    func roundTripKeepsOptions() async throws {
        try await withStorageFixture { fixture in
            try remount(fixture, .readWrite)
            #expect(fixture.state == .readWrite)
            #expect(fixture.mountedOptions.contains("rw"))
            for option in Self.keptOptions { #expect(fixture.mountedOptions.contains(option), "rw lost \(option)") }

            try remount(fixture, .readOnly)
            #expect(fixture.state == .readOnly)
            #expect(fixture.mountedOptions.contains("ro"))
            for option in Self.keptOptions { #expect(fixture.mountedOptions.contains(option), "ro lost \(option)") }
        }
    }

    @Test("Options are kept also when the fstab does not name the mount")
    func keepsOptionsWithoutFstabEntry() async throws {
        try await withStorageFixture { fixture in
            let remounter = KernelRemounter(fstabPath: "/nonexistent/fstab")
            try remounter.remount(fixture.mountPath, to: .readWrite)
            try remounter.remount(fixture.mountPath, to: .readOnly)
            #expect(fixture.state == .readOnly)
            for option in Self.keptOptions { #expect(fixture.mountedOptions.contains(option), "lost \(option)") }
        }
    }

    @Test("ro is refused as busy while a file is open for writing, and succeeds once it is closed")
    func busyWhileFileOpenForWriting() async throws {
        try await withStorageFixture { fixture in
            try remount(fixture, .readWrite)
            let fd = open(fixture.mountPath + "/open-file", O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            try #require(fd >= 0)
            let error = try #require(remountError(fixture, .readOnly))
            #expect(error.kind == .busy)
            #expect(error.errno == EBUSY)
            #expect(error.description.contains("busy (a file is open for writing"))
            #expect(fixture.state == .readWrite)
            close(fd)
            try remount(fixture, .readOnly)
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("ro is refused as busy while a deleted file is still held open")
    func busyWhileDeletedFileHeldOpen() async throws {
        try await withStorageFixture { fixture in
            try remount(fixture, .readWrite)
            let path = fixture.mountPath + "/deleted-file"
            let fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0o644)
            try #require(fd >= 0)
            unlink(path)
            #expect(remountError(fixture, .readOnly)?.kind == .busy)
            close(fd)
            try remount(fixture, .readOnly)
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("rw on a write-protected loop device is refused with a typed error")
    func writeProtectedDevice() async throws {
        try await withStorageFixture(.init(writeProtectedDevice: true)) { fixture in
            let error = try #require(remountError(fixture, .readWrite))
            #expect(error.kind == .writeProtected)
            #expect(error.description.contains("write-protected"))
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("Remounting a path where nothing is mounted says so, and remounts nothing else")
    func notMounted() async throws {
        try await withStorageFixture { fixture in
            try fixture.unmount()
            #expect(remountError(fixture, .readWrite)?.kind == .notMounted)
            #expect(remountError(fixture, .readOnly)?.kind == .notMounted)
            // The filesystem the empty mount point lives on is still writable.
            #expect(MountTable.isWritable(fixture.mountPath))
        }
    }

    @Test("What was written while rw survives ro, an unmount, a new mount, and e2fsck finds the filesystem clean")
    func dataSurvives() async throws {
        try await withStorageFixture { fixture in
            try remount(fixture, .readWrite)
            let payload = Data((0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) })
            // A plain write, no fsync: the ro remount itself must flush it.
            try writeFile(payload, to: fixture.mountPath + "/payload.bin")
            try remount(fixture, .readOnly)
            #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.mountPath + "/payload.bin")) == payload)

            try fixture.unmount()
            #expect(try fixture.fileSystemCheckProblems() == nil)
            try fixture.mountAgain()
            #expect(fixture.state == .readOnly)
            #expect(try Data(contentsOf: URL(fileURLWithPath: fixture.mountPath + "/payload.bin")) == payload)
        }
    }
}
