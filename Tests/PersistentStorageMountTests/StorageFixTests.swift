import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

@Suite("The fix step after a read-write remount", .enabled(if: RealMounts.enabled))
struct StorageFixTests {
    private func attributes(_ path: String) -> (uid: uid_t, gid: gid_t, mode: mode_t)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (info.st_uid, info.st_gid, info.st_mode & 0o7777)
    }

    @Test("Creates ROOT/data, gives root and data to user and group, and makes the root sticky 1775")
    func ownerGroupModeAndDataDirectory() async throws {
        try await withStorageFixture { fixture in
            try StorageRemount(fstabPath: fixture.fstabPath, layout: .dataSubdirectory).perform(.readWrite)
            let root = try #require(attributes(fixture.mountPath))
            let data = try #require(attributes(fixture.dataSubdirectoryPath))
            let nobody = getpwnam("nobody")!.pointee.pw_uid
            let nogroup = getgrnam("nogroup")!.pointee.gr_gid
            #expect(root.uid == nobody && root.gid == nogroup)
            #expect(data.uid == nobody && data.gid == nogroup)
            #expect(root.mode == 0o1775)
        }
    }

    @Test("Running it twice changes nothing and does not fail")
    func idempotent() async throws {
        try await withStorageFixture { fixture in
            let remount = StorageRemount(fstabPath: fixture.fstabPath, layout: .dataSubdirectory)
            try remount.perform(.readWrite)
            try writeFile("kept", to: fixture.dataSubdirectoryPath + "/file")
            let before = try #require(attributes(fixture.dataSubdirectoryPath))
            try remount.perform(.readWrite)
            let after = try #require(attributes(fixture.dataSubdirectoryPath))
            #expect(before.uid == after.uid && before.gid == after.gid && before.mode == after.mode)
            #expect(try String(contentsOfFile: fixture.dataSubdirectoryPath + "/file", encoding: .utf8) == "kept")
        }
    }

    @Test("A fix with nothing to change writes nothing: no inode's change time moves")
    func nothingToChangeWritesNothing() async throws {
        try await withStorageFixture { fixture in
            let remount = StorageRemount(fstabPath: fixture.fstabPath, layout: .dataSubdirectory)
            try remount.perform(.readWrite)
            let changeTime = { (path: String) -> timespec? in
                var info = stat()
                return stat(path, &info) == 0 ? info.st_ctim : nil
            }
            let before = try [fixture.mountPath, fixture.dataSubdirectoryPath].map { try #require(changeTime($0)) }
            // Far enough apart for the kernel's clock granularity to show a change.
            try await Task.sleep(for: .milliseconds(20))
            try StorageFix(location: FstabReader(path: fixture.fstabPath).findStorage().location, layout: .dataSubdirectory).apply()
            let after = try [fixture.mountPath, fixture.dataSubdirectoryPath].map { try #require(changeTime($0)) }
            #expect(zip(before, after).allSatisfy { $0.tv_sec == $1.tv_sec && $0.tv_nsec == $1.tv_nsec })

            // A wrong mode or owner is still put right, and only then does the time move.
            #expect(chmod(fixture.mountPath, 0o755) == 0)
            #expect(chown(fixture.dataSubdirectoryPath, 0, 0) == 0)
            try StorageFix(location: FstabReader(path: fixture.fstabPath).findStorage().location, layout: .dataSubdirectory).apply()
            #expect(attributes(fixture.mountPath)?.mode == 0o1775)
            #expect(attributes(fixture.dataSubdirectoryPath)?.uid == getpwnam("nobody")!.pointee.pw_uid)
        }
    }

    @Test("With only a user, the owner changes but the mode does not")
    func userOnly() async throws {
        try await withStorageFixture(.init(pstOptions: "X-kvmd.pst-user=nobody")) { fixture in
            try StorageRemount(fstabPath: fixture.fstabPath, layout: .dataSubdirectory).perform(.readWrite)
            let root = try #require(attributes(fixture.mountPath))
            #expect(root.uid == getpwnam("nobody")!.pointee.pw_uid)
            #expect(root.gid == 0)
            #expect(root.mode == 0o755)
        }
    }

    @Test("The root layout, the default as in kvmd since 4.8, creates no data subdirectory")
    func rootLayout() async throws {
        try await withStorageFixture { fixture in
            try StorageRemount(fstabPath: fixture.fstabPath).perform(.readWrite)
            #expect(!FileManager.default.fileExists(atPath: fixture.dataSubdirectoryPath))
            #expect(attributes(fixture.mountPath)?.mode == 0o1775)
        }
    }

    @Test("An unknown user is a clear error naming it")
    func unknownUser() async throws {
        try await withStorageFixture(.init(pstOptions: "X-kvmd.pst-user=no-such-user-pst")) { fixture in
            #expect(throws: StorageRemountError.fix(StorageFixError("unknown user 'no-such-user-pst' in X-kvmd.pst-user"))) {
                try StorageRemount(fstabPath: fixture.fstabPath, layout: .dataSubdirectory).perform(.readWrite)
            }
        }
    }
}
