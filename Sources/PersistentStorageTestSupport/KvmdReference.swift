import Foundation

/// kvmd's release archive that some tests read (its PiKVM configuration
/// files, sysusers and tmpfiles): in `PST_KVMD_REFERENCE` if set, as
/// `make test-kvmd` takes it, else in `../shared/reference` beside the
/// repository. Never copied into the repository (kvmd is GPL).
public enum KvmdReference {
    public static let directory: String = ProcessInfo.processInfo.environment["PST_KVMD_REFERENCE"]
        ?? URL(filePath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appending(path: "../shared/reference").standardizedFileURL.path(percentEncoded: false)

    /// kvmd 4.197's archive.
    public static var archive: String { directory + "/kvmd-4.197.tar.gz" }

    public static var hasArchive: Bool { FileManager.default.fileExists(atPath: archive) }
}
