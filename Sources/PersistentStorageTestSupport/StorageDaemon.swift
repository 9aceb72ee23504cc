import Foundation

/// A fixture with a running `kvmd-pst` on it: what every real client test
/// starts from. The daemon and the fixture are torn down however `body` ends.
public func withStorageDaemon<T>(
    extraArguments: [String] = [],
    _ body: (StorageFixture, DaemonProcess) async throws -> T
) async throws -> T {
    try await withStorageFixture { fixture in
        let socketPath = fixture.directory + "/pst.sock"
        return try await withDaemonProcess(
            arguments: ["--run", "--fstab", fixture.fstabPath, "--socket", socketPath, "--ro-cleanup-delay", "0", "--socket-group", ""]
                + extraArguments,
            socketPath: socketPath
        ) { daemon in
            try await body(fixture, daemon)
        }
    }
}
