import Foundation
import Glibc
import PersistentStorageMount
import Synchronization

/// A real ext4 image on a real loop device, mounted read-only at a temporary
/// directory with the options a PiKVM uses, and an fstab naming it.
///
/// Cleanup is layered so nothing outlives the tests:
/// - ``withStorageFixture(_:_:)`` tears down when the body returns or throws;
/// - the loop device is detached right after mounting, so the kernel frees it
///   by itself when the filesystem is unmounted (autoclear);
/// - `make test` runs the suite in a private mount namespace, so even a
///   crashed test process leaves no mount behind: the namespace's mounts go
///   with its last process, and autoclear then frees the loop device.
///
/// A remount changes the mount only in the namespace it is done in: the
/// daemon, its clients and the test's checks all run inside the test's
/// namespace (children inherit it).
public final class StorageFixture: Sendable {
    public struct Options: Sendable {
        /// The image's size.
        public var sizeMiB: Int = 16
        /// Attach the loop device read-only, so that a read-write remount is refused.
        public var writeProtectedDevice: Bool = false
        /// The X-kvmd.pst-* options written into the fstab entry.
        public var pstOptions: String = "X-kvmd.pst-user=nobody,X-kvmd.pst-group=nogroup"

        public init(sizeMiB: Int = 16, writeProtectedDevice: Bool = false,
                    pstOptions: String = "X-kvmd.pst-user=nobody,X-kvmd.pst-group=nogroup") {
            self.sizeMiB = sizeMiB
            self.writeProtectedDevice = writeProtectedDevice
            self.pstOptions = pstOptions
        }
    }

    /// The options PiKVM mounts the PST partition with.
    public static let pikvmMountOptions = "nodev,nosuid,noexec,ro,errors=remount-ro,data=journal"

    public let options: Options
    /// A private temporary directory holding everything below.
    public let directory: String
    public let imagePath: String
    public let mountPath: String
    public let fstabPath: String
    private let attachedDevice: Mutex<String>

    /// The loop device the image is attached to now.
    public var device: String { attachedDevice.withLock { $0 } }
    /// The data path the daemon hands out by default: the root itself
    /// (``DataLayout/kvmdDefault``).
    public var dataPath: String { mountPath }
    /// `mountPath/data`, the data directory of the PST document's layout
    /// (`--data-layout data`).
    public var dataSubdirectoryPath: String { mountPath + "/data" }
    /// Not mounted, read-only or read-write, from the kernel.
    public var state: MountState { MountTable.state(ofMountPoint: mountPath) }
    /// The mount's options as the kernel shows them now.
    public var mountedOptions: [String] { MountTable.filesystem(mountedAt: mountPath)?.allOptions ?? [] }
    /// The location an fstab lookup finds.
    public var location: StorageLocation {
        get throws { try FstabReader(path: fstabPath).findStorage().location }
    }

    /// Creates, formats, attaches and mounts a fresh image. Prefer
    /// ``withStorageFixture(_:_:)``, which also tears it down.
    public init(_ options: Options = Options()) throws {
        self.options = options
        let base = ProcessInfo.processInfo.environment["PST_FIXTURE_ROOT"] ?? NSTemporaryDirectory()
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        var template = Array((base + "/pst-fixture.XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw SystemCommandError(arguments: ["mkdtemp"], status: errno, output: String(cString: strerror(errno)))
        }
        directory = String(cString: made)
        imagePath = directory + "/pst.img"
        mountPath = directory + "/pst"
        fstabPath = directory + "/fstab"
        attachedDevice = Mutex("")
        do {
            try FileManager.default.createDirectory(atPath: mountPath, withIntermediateDirectories: false)
            guard FileManager.default.createFile(atPath: imagePath, contents: nil),
                  truncate(imagePath, off_t(options.sizeMiB) << 20) == 0 else {
                throw SystemCommandError(arguments: ["truncate", imagePath], status: errno, output: String(cString: strerror(errno)))
            }
            try SystemCommand.run(["mkfs.ext4", "-q", "-F", "-L", "PIPST", imagePath])
            try attachAndMount()
            try writeFstab()
            Self.recordUse()
        } catch {
            tearDown()
            throw error
        }
    }

    /// Unmounts and detaches; removes the temporary directory. Safe to call twice.
    public func tearDown() {
        if MountTable.filesystem(mountedAt: mountPath) != nil {
            if (try? SystemCommand.run(["umount", mountPath])) == nil {
                // A test left a file open: detach the mount anyway so the
                // directory can go; the kernel frees the device when the
                // last file is closed.
                _ = try? SystemCommand.run(["umount", "-l", mountPath])
            }
        }
        let device = self.device
        if !device.isEmpty, (try? SystemCommand.run(["losetup", device]))?.contains(imagePath) == true {
            _ = try? SystemCommand.run(["losetup", "-d", device])
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Remounts the way an administrator (or the kernel after an ext4 error)
    /// would, behind the back of any daemon.
    public func remountExternally(_ mode: RemountMode) throws {
        try SystemCommand.run(["mount", "-o", "remount,\(mode.rawValue)", mountPath])
    }

    /// Unmounts the filesystem; the loop device goes with it.
    public func unmount() throws {
        try SystemCommand.run(["umount", mountPath])
    }

    /// Attaches the image again and mounts it read-only with the PiKVM options
    /// (after ``unmount()``). The fstab is rewritten to name the new device.
    public func mountAgain() throws {
        try attachAndMount()
        try writeFstab()
    }

    /// `e2fsck -fn` on the image (which must be unmounted): nil when clean,
    /// else what it printed.
    public func fileSystemCheckProblems() throws -> String? {
        do {
            try SystemCommand.run(["e2fsck", "-fn", imagePath])
            return nil
        } catch let error as SystemCommandError {
            return error.output
        }
    }

    private func attachAndMount() throws {
        var losetup = ["losetup", "-f", "--show"]
        if options.writeProtectedDevice { losetup.append("-r") }
        let device = try SystemCommand.run(losetup + [imagePath]).trimmingCharacters(in: .whitespacesAndNewlines)
        attachedDevice.withLock { $0 = device }
        do {
            try SystemCommand.run(["mount", "-t", "ext4", "-o", Self.pikvmMountOptions, device, mountPath])
        } catch {
            _ = try? SystemCommand.run(["losetup", "-d", device])
            throw error
        }
        // Detaching a device in use only marks it autoclear: the kernel frees
        // it at unmount, even if this process dies first.
        try SystemCommand.run(["losetup", "-d", device])
    }

    private func writeFstab() throws {
        let text = """
            # written by swift-pst's test fixture
            \(device)  \(mountPath)  ext4  \(Self.pikvmMountOptions),\(options.pstOptions)  0 0

            """
        try text.write(toFile: fstabPath, atomically: true, encoding: .utf8)
    }

    // The same, for async tests: each waits for a child process, so off the
    // cooperative pool (see `onOwnThread`).

    public func remountExternally(_ mode: RemountMode) async throws {
        try await onOwnThread { try self.remountExternally(mode) }
    }

    public func unmount() async throws {
        try await onOwnThread { try self.unmount() }
    }

    public func mountAgain() async throws {
        try await onOwnThread { try self.mountAgain() }
    }

    public func fileSystemCheckProblems() async throws -> String? {
        try await onOwnThread { try self.fileSystemCheckProblems() }
    }

    /// Appends a line to `$PST_FIXTURE_LOG`, so CI can prove real-mount tests ran.
    private static func recordUse() {
        guard let log = ProcessInfo.processInfo.environment["PST_FIXTURE_LOG"] else { return }
        let fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let line = Array("fixture \(getpid())\n".utf8)
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

/// Runs `body` with a fresh ``StorageFixture`` and tears it down afterwards,
/// whether the body returns or throws.
@discardableResult
public func withStorageFixture<T>(
    _ options: StorageFixture.Options = .init(),
    _ body: (StorageFixture) async throws -> T
) async throws -> T {
    // Making and removing a fixture waits for mkfs, losetup and mount: off the pool.
    let fixture = try await onOwnThread { try StorageFixture(options) }
    do {
        let result = try await body(fixture)
        await onOwnThread { fixture.tearDown() }
        return result
    } catch {
        await onOwnThread { fixture.tearDown() }
        throw error
    }
}
