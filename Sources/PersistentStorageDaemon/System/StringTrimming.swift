extension String {
    /// Without leading and trailing ASCII whitespace and newlines.
    ///
    /// By bytes: the `Character`-wise version was a tenth of the daemon's
    /// work per connection (it trims every peer's `/proc/PID/comm`).
    func trimmingWhitespace() -> String {
        let isBlank: (UInt8) -> Bool = { $0 == 0x20 || ($0 >= 0x09 && $0 <= 0x0D) }
        guard let first = utf8.firstIndex(where: { !isBlank($0) }), let last = utf8.lastIndex(where: { !isBlank($0) }) else {
            return ""
        }
        return String(Substring(utf8[first...last]))
    }
}
