import Foundation
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

@Suite("Reading the mount state from the kernel", .enabled(if: RealMounts.enabled))
struct MountStateTests {
    @Test("A fresh PiKVM-style mount reads as read-only")
    func readOnly() async throws {
        try await withStorageFixture { fixture in
            #expect(fixture.state == .readOnly)
            #expect(MountTable.isWritable(fixture.mountPath) == false)
        }
    }

    @Test("After a remount to rw the state is read-write")
    func readWrite() async throws {
        try await withStorageFixture { fixture in
            try fixture.remountExternally(.readWrite)
            #expect(fixture.state == .readWrite)
            #expect(MountTable.isWritable(fixture.mountPath))
        }
    }

    @Test("An unmounted path is 'not mounted', never read-only or read-write")
    func notMounted() async throws {
        try await withStorageFixture { fixture in
            try fixture.unmount()
            #expect(fixture.state == .notMounted)
            // The directory beneath lives on the (writable) parent filesystem:
            // statvfs alone would have called it writable.
            #expect(MountTable.state(ofMountPoint: fixture.mountPath) == .notMounted)
        }
    }

    @Test("The kernel's options for the mount are read back")
    func options() async throws {
        try await withStorageFixture { fixture in
            let mounted = try #require(MountTable.filesystem(mountedAt: fixture.mountPath))
            #expect(mounted.filesystemType == "ext4")
            #expect(mounted.source == fixture.device)
            for option in ["ro", "nodev", "nosuid", "noexec", "data=journal", "errors=remount-ro"] {
                #expect(mounted.allOptions.contains(option), "missing \(option)")
            }
        }
    }
}

/// The options alone, as the kernel can combine them.
@Suite("Mount state from mount options")
struct MountOptionStateTests {
    @Test("Read-only in the mount or only in the superblock is read-only; only emergency_ro means errors", arguments: [
        ("rw,nosuid", "rw,errors=remount-ro", MountState.readWrite),
        ("ro,nosuid", "ro,errors=remount-ro", MountState.readOnly),
        // A remount through the new mount API may set only the superblock's flag.
        ("rw,nosuid", "ro,errors=remount-ro", MountState.readOnly),
        // Read-only here, but writable through a bind mount remounted read-write.
        ("ro,nosuid", "rw,errors=remount-ro", MountState.writableElsewhere),
        ("rw,nosuid", "rw,emergency_ro,errors=remount-ro", MountState.readOnlyAfterErrors),
    ])
    func optionsToState(vfs: String, filesystem: String, expected: MountState) {
        let mounted = MountedFilesystem(
            source: "/dev/loop0", target: "/pst", filesystemType: "ext4", vfsOptions: vfs, filesystemOptions: filesystem)
        #expect(mounted.state == expected)
    }
}
