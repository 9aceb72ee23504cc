import Foundation

/// One line of the results: a latency distribution, or a single value.
struct Figure: Codable {
    var key: String
    var title: String
    /// "µs" for latencies; otherwise what `value` counts.
    var unit: String
    var count: Int?
    var median: Double?
    var p99: Double?
    var value: Double?
    /// How the table shows `value`, when a number alone would not say it.
    var display: String?
    /// The median (or value) over what the kernel costs for the same work.
    var ratio: Double?
    var ratioBasis: String?
    var target: String?
    var targetMet: Bool?

    static func latency(_ key: String, _ title: String, _ samples: Samples,
                        limit: Double? = nil, basis: String? = nil,
                        target: String? = nil, met: Bool? = nil) -> Figure {
        Figure(key: key, title: title, unit: "µs", count: samples.count, median: samples.median, p99: samples.p99,
               ratio: limit.map { samples.median / $0 }, ratioBasis: basis, target: target, targetMet: met)
    }

    static func value(_ key: String, _ title: String, _ value: Double, unit: String, display: String? = nil,
                      target: String? = nil, met: Bool? = nil) -> Figure {
        Figure(key: key, title: title, unit: unit, value: value, display: display, target: target, targetMet: met)
    }
}

struct Report: Codable {
    var machine: Machine
    var mode: String
    var command: String
    var startedAt: String
    var loadAtEnd: String
    var durationSeconds: Double
    var figures: [Figure]
    var notes: [String]

    /// A Markdown table, so the output pastes straight into Benchmarks.md.
    var table: String {
        var lines = [
            "| figure | n | median | p99 | × kernel | target |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for figure in figures {
            let n = figure.count.map(String.init) ?? ""
            let median: String, p99: String
            if figure.unit == "µs" {
                median = figure.median.map(Self.formatMicroseconds) ?? ""
                p99 = figure.p99.map(Self.formatMicroseconds) ?? ""
            } else {
                median = figure.display ?? figure.value.map { "\(Self.format($0)) \(figure.unit)" } ?? ""
                p99 = ""
            }
            let ratio = figure.ratio.map { String(format: "%.2f×", $0) + (figure.ratioBasis.map { " \($0)" } ?? "") } ?? ""
            var target = figure.target ?? ""
            if let met = figure.targetMet { target += met ? " ✅" : " ❌" }
            lines.append("| \(figure.title) | \(n) | \(median) | \(p99) | \(ratio) | \(target) |")
        }
        return lines.joined(separator: "\n")
    }

    static func formatMicroseconds(_ value: Double) -> String {
        if value.isNaN { return "–" }
        if value >= 10_000 { return String(format: "%.1f ms", value / 1000) }
        if value >= 1000 { return String(format: "%.2f ms", value / 1000) }
        return String(format: "%.0f µs", value)
    }

    static func format(_ value: Double) -> String {
        if value == value.rounded() && abs(value) < 1e12 { return String(Int(value)) }
        if abs(value) >= 100 { return String(format: "%.0f", value) }
        if abs(value) >= 10 { return String(format: "%.1f", value) }
        return String(format: "%.2f", value)
    }

    func write(json path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try encoder.encode(self).write(to: url)
    }
}
