import Foundation

/// The package's executables, as built alongside the running test binary.
public enum BuiltProducts {
    /// The build directory (`.build/debug` or a `--scratch-path`'s), found from
    /// the test binary's own path so that any scratch path works.
    public static let directory: String = {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: executable).deletingLastPathComponent()
        // On Linux the test binary is `<build>/swift-pstPackageTests.xctest`;
        // elsewhere it may sit inside a bundle.
        while url.path != "/" && !FileManager.default.fileExists(atPath: url.appendingPathComponent("kvmd-pst").path)
            && url.pathExtension == "xctest" {
            url.deleteLastPathComponent()
        }
        return url.path
    }()

    /// The absolute path of the executable `name` (`kvmd-pst`, `kvmd-pstrun`, ...).
    ///
    /// `PST_KVMD_PSTRUN`, if set, is the `kvmd-pstrun` to use instead: CI
    /// runs the `kvmd-pstrun` tests once more against the one
    /// Scripts/build-release.sh ships, which is linked differently.
    public static func path(of name: String) -> String {
        if name == "kvmd-pstrun", let shipped = ProcessInfo.processInfo.environment["PST_KVMD_PSTRUN"], !shipped.isEmpty {
            return shipped
        }
        return directory + "/" + name
    }
}
