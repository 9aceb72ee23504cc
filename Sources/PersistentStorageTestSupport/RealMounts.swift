import Foundation
import Glibc

/// Whether tests that need a real loop device and real mounts can run here.
///
/// They need root, `/dev/loop-control`, `mkfs.ext4`, `losetup` and `mount`.
/// When `PST_REQUIRE_REAL_MOUNTS=1` is set (CI sets it), such tests are never
/// skipped: on a machine that cannot run them they fail, so a green run always
/// means they ran.
public enum RealMounts {
    public static let required = ProcessInfo.processInfo.environment["PST_REQUIRE_REAL_MOUNTS"] == "1"

    public static let available: Bool =
        getuid() == 0
        && FileManager.default.fileExists(atPath: "/dev/loop-control")
        && ["mkfs.ext4", "losetup", "mount", "umount"].allSatisfy(SystemCommand.exists)

    /// Use as `@Test(.enabled(if: RealMounts.enabled))`.
    public static var enabled: Bool { available || required }
}
