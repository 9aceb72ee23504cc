import Foundation

/// A data directory for one test, which a scripted daemon names in its
/// statuses; removed when the test's suite instance goes, also when the
/// test fails.
final class TemporaryDataDirectory {
    let url: URL

    /// - Parameter prefix: names the suite in the directory's name.
    init(_ prefix: String) throws {
        url = FileManager.default.temporaryDirectory.appending(path: "\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    var path: String { url.path(percentEncoded: false) }
}
