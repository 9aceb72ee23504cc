extension String {
    /// Without leading and trailing whitespace and newlines.
    func trimmingWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0.isWhitespace }
        return String(self.drop(while: isSpace).reversed().drop(while: isSpace).reversed())
    }
}
