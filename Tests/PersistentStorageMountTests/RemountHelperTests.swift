import Foundation
import PersistentStorageMount
import PersistentStorageTestSupport
import Testing

@Suite("kvmd-helper-pst-remount", .enabled(if: RealMounts.enabled))
struct RemountHelperTests {
    let helper = BuiltProducts.path(of: "kvmd-helper-pst-remount")

    @Test("rw then ro: exit 0, a message each, the fix step done, the kernel agrees")
    func rwThenRo() async throws {
        try await withStorageFixture { fixture in
            let rw = try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "rw"])
            #expect(rw.status == 0)
            #expect(rw.standardError == "kvmd-helper-pst-remount: \(fixture.mountPath) is now read-write\n")
            #expect(fixture.state == .readWrite)
            #expect(FileManager.default.fileExists(atPath: fixture.dataPath))

            let ro = try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "ro"])
            #expect(ro.status == 0)
            #expect(fixture.state == .readOnly)
        }
    }

    @Test("A busy ro exits 1 with one line saying why")
    func busy() async throws {
        try await withStorageFixture { fixture in
            try fixture.remountExternally(.readWrite)
            #expect(FileManager.default.createFile(atPath: fixture.mountPath + "/held", contents: nil))
            let handle = try #require(FileHandle(forWritingAtPath: fixture.mountPath + "/held"))
            defer { try? handle.close() }
            let ro = try SystemCommand.execute([helper, "--fstab", fixture.fstabPath, "ro"])
            #expect(ro.status == 1)
            #expect(ro.standardError.hasPrefix("kvmd-helper-pst-remount: cannot remount \(fixture.mountPath) read-only: busy"))
            #expect(ro.standardError.split(separator: "\n").count == 1)
            #expect(fixture.state == .readWrite)
        }
    }

    @Test("No PST entry in the fstab exits 1 and names the file")
    func noEntry() throws {
        let fstab = NSTemporaryDirectory() + "fstab-empty-\(UUID().uuidString)"
        try "/dev/sda1 / ext4 ro 0 1\n".write(toFile: fstab, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: fstab) }
        let result = try SystemCommand.execute([helper, "--fstab", fstab, "rw"])
        #expect(result.status == 1)
        #expect(result.standardError == "kvmd-helper-pst-remount: no fstab entry with X-kvmd.pst-* options in \(fstab)\n")
    }

    @Test("Usage errors print usage and exit 2", arguments: [["bogus"], [], ["rw", "--no-such-flag"]])
    func usage(arguments: [String]) throws {
        let result = try SystemCommand.execute([helper] + arguments)
        #expect(result.status == 2)
        #expect(result.standardError.lowercased().contains("usage: kvmd-helper-pst-remount"))
    }

    @Test("--help exits 0 and describes both modes")
    func help() throws {
        let result = try SystemCommand.execute([helper, "--help"])
        #expect(result.status == 0)
        #expect(result.standardOutput.contains("rw (read-write"))
        #expect(result.standardOutput.contains("ro (read-only)"))
    }
}

@Suite("Remounting without root", .enabled(if: RealMounts.enabled))
struct UnprivilegedRemountTests {

    /// Runs the helper as `nobody`, with or without CAP_SYS_ADMIN as an ambient capability.
    private func runAsNobody(_ fixture: StorageFixture, _ mode: String, capability: Bool) throws -> SystemCommand.Result {
        var arguments = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        if capability { arguments += ["--inh-caps=+sys_admin", "--ambient-caps=+sys_admin"] }
        // A copy beside the image: the build folder may not be reachable for `nobody`.
        let helper = fixture.directory + "/kvmd-helper-pst-remount"
        if !FileManager.default.fileExists(atPath: helper) {
            try FileManager.default.copyItem(atPath: BuiltProducts.path(of: "kvmd-helper-pst-remount"), toPath: helper)
        }
        return try SystemCommand.execute(arguments + [helper, "--fstab", fixture.fstabPath, "--data-layout", "root", mode])
    }

    @Test("A non-root process with CAP_SYS_ADMIN remounts; without it, a clear 'not permitted'")
    func capabilityIsEnough() async throws {
        // No user or group in the entry: chown would need CAP_CHOWN as well.
        try await withStorageFixture(.init(pstOptions: "X-kvmd.pst-root=/")) { fixture in
            try "\(fixture.device) \(fixture.mountPath) ext4 \(StorageFixture.pikvmMountOptions),X-kvmd.pst-root=\(fixture.mountPath) 0 0\n"
                .write(toFile: fixture.fstabPath, atomically: true, encoding: .utf8)
            chmod(fixture.directory, 0o755)
            chmod(fixture.fstabPath, 0o644)

            let rw = try runAsNobody(fixture, "rw", capability: true)
            #expect(rw.status == 0, "\(rw.standardError)")
            #expect(fixture.state == .readWrite)

            let refused = try runAsNobody(fixture, "ro", capability: false)
            #expect(refused.status == 1)
            #expect(refused.standardError.contains("not permitted (needs root or CAP_SYS_ADMIN)"))
            #expect(fixture.state == .readWrite)

            let ro = try runAsNobody(fixture, "ro", capability: true)
            #expect(ro.status == 0, "\(ro.standardError)")
            #expect(fixture.state == .readOnly)
        }
    }
}
