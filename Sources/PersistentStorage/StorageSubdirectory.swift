#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Glibc

/// A validated relative path below the data directory, such as `my-service`
/// or `my-service/cache`.
///
/// It must stay inside the data directory, so it may not be absolute, empty,
/// or contain `..`; `.` components and repeated slashes are dropped.
struct StorageSubdirectory: Sendable, Equatable {
    /// The normalized components, never empty.
    let components: [String]

    init(validating text: String) throws(PersistentStorageError) {
        func invalid(_ reason: String) -> PersistentStorageError {
            .invalidSubdirectory(text, reason: reason)
        }
        if text.isEmpty { throw invalid("it is empty; pass nil to use the data directory itself") }
        if text.hasPrefix("/") { throw invalid("it is absolute; give a path relative to the data directory") }
        if text.contains("\0") { throw invalid("it contains a NUL byte") }
        let parts = text.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        if parts.contains("..") { throw invalid("\"..\" would leave the data directory") }
        let kept = parts.filter { $0 != "." }
        if kept.isEmpty { throw invalid("it names the data directory itself; pass nil for that") }
        components = kept
    }

    /// The first path below `root` on the way to this subdirectory that is a
    /// symbolic link, if any. Anyone who may write the data directory could
    /// plant one there to send another service's writes elsewhere.
    func firstSymbolicLink(below root: String) -> String? {
        var path = root
        for component in components {
            path += "/" + component
            var info = stat()
            if lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK { return path }
        }
        return nil
    }

    /// `root` with this subdirectory appended.
    func appended(to root: URL) -> URL {
        components.reduce(root) { $0.appending(path: $1, directoryHint: .isDirectory) }
    }

    /// The data root, or the subdirectory inside it when one was asked for.
    static func resolve(_ subdirectory: StorageSubdirectory?, in root: String) -> URL {
        let rootURL = URL(filePath: root, directoryHint: .isDirectory)
        return subdirectory?.appended(to: rootURL) ?? rootURL
    }
}
