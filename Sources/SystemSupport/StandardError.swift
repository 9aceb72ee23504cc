import Glibc

/// Writes `text` to stderr with one write(2), so that lines from several
/// threads or processes never interleave within a line.
package func writeToStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}
