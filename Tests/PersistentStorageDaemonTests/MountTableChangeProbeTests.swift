import Foundation
import Glibc
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

@testable import PersistentStorageDaemon

@Suite("The mount-table change probe", .enabled(if: RealMounts.enabled))
struct MountTableChangeProbeTests {
    @Test("says true after each real remount of the storage")
    func remountsAreSeen() async throws {
        try await withStorageFixture { fixture in
            let probe = try #require(MountTableChangeProbe())
            // Tests in other suites mount and remount in this namespace too:
            // a `false` is only expected when nothing else can have happened,
            // so each remount is checked by the `true` that must follow it.
            for mode in [RemountMode.readWrite, .readOnly, .readWrite, .readOnly] {
                _ = probe.changedSinceLastAsked()
                try KernelRemounter(fstabPath: fixture.fstabPath).remount(fixture.mountPath, to: mode)
                #expect(probe.changedSinceLastAsked(), "no change seen after the remount to \(mode)")
            }
        }
    }

    @Test("says false while nothing changes, and true after a mount, in a namespace no other test touches")
    func quietTableIsUnchanged() async throws {
        let directory = try makeTemporaryDirectory()
        defer { rmdir(directory) }
        // A thread with a mount namespace of its own: /proc/thread-self is
        // its table, and no other test's mount reaches it.
        let seen = try await onOwnThread { () throws -> [Bool] in
            guard Self.unshareMountNamespace() == 0, mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EPERM)
            }
            guard let probe = MountTableChangeProbe(mountInfoPath: "/proc/thread-self/mountinfo") else {
                throw POSIXError(.ENOENT)
            }
            var seen = [probe.changedSinceLastAsked(), probe.changedSinceLastAsked()]
            guard mount("tmpfs", directory, "tmpfs", 0, nil) == 0 else { throw POSIXError(.EPERM) }
            seen.append(probe.changedSinceLastAsked())
            seen.append(probe.changedSinceLastAsked())
            guard mount("none", directory, nil, UInt(MS_REMOUNT | MS_RDONLY), nil) == 0 else { throw POSIXError(.EPERM) }
            seen.append(probe.changedSinceLastAsked())
            _ = umount(directory)
            return seen
        }
        #expect(seen == [false, false, true, false, true])
    }

    /// unshare(2) is not in Swift's Glibc module (it needs _GNU_SOURCE).
    private static func unshareMountNamespace() -> Int32 {
        typealias Unshare = @convention(c) (Int32) -> Int32
        guard let symbol = dlsym(nil, "unshare") else { return -1 }  // nil: RTLD_DEFAULT
        return unsafeBitCast(symbol, to: Unshare.self)(0x0002_0000)  // CLONE_NEWNS
    }

    private func makeTemporaryDirectory() throws -> String {
        var template = Array("/tmp/pst-probe.XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw POSIXError(.EIO) }
        return String(cString: made)
    }
}
