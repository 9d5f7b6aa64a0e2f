/// Builds a Prometheus text exposition (format 0.0.4) without a metrics library.
///
/// Each family is written with its `# HELP` and `# TYPE` lines followed by its samples; a family appears once.
/// Names are sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*` (label names without `:`), HELP text escapes `\` and
/// newlines, and label values escape `\`, `"` and newlines.
///
/// ```swift
/// var text = PrometheusText()
/// text.counter("raft_proposals_total", help: "Proposals accepted by the leader.", value: 42)
/// text.gauge("raft_term", help: "Current term.", samples: [([("node", "1")], 7)])
/// let body = text.output
/// ```
public struct PrometheusText: Sendable {
    /// The content type to serve `output` with.
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A label list: `[("peer", "2"), ("state", "replicate")]`.
    public typealias Labels = [(name: String, value: String)]

    /// The exposition text so far.
    public private(set) var output = ""

    public init() {}

    // MARK: Counters and gauges

    /// A counter family with one unlabelled sample. The name should end in `_total`.
    public mutating func counter(_ name: String, help: String, value: Double) {
        counter(name, help: help, samples: [([], value)])
    }

    /// A counter family with one sample per label set.
    public mutating func counter(_ name: String, help: String, samples: [(labels: Labels, value: Double)]) {
        family(name, help: help, type: "counter")
        for sample in samples {
            line(name, sample.labels, sample.value)
        }
    }

    /// A gauge family with one unlabelled sample.
    public mutating func gauge(_ name: String, help: String, value: Double) {
        gauge(name, help: help, samples: [([], value)])
    }

    /// A gauge family with one sample per label set.
    public mutating func gauge(_ name: String, help: String, samples: [(labels: Labels, value: Double)]) {
        family(name, help: help, type: "gauge")
        for sample in samples {
            line(name, sample.labels, sample.value)
        }
    }

    // MARK: Summaries and histograms

    /// A summary: `name{quantile="0.99"}` lines, then `name_sum` and `name_count`.
    ///
    /// - Parameter quantiles: `(quantile, value)` pairs, e.g. `[(0.5, 1.2), (0.99, 8.0)]`.
    public mutating func summary(
        _ name: String, help: String, quantiles: [(quantile: Double, value: Double)], sum: Double, count: UInt64,
        labels: Labels = []
    ) {
        family(name, help: help, type: "summary")
        for entry in quantiles {
            line(name, labels + [("quantile", Self.format(entry.quantile))], entry.value)
        }
        line(name + "_sum", labels, sum)
        line(name + "_count", labels, Double(count))
    }

    /// A histogram: cumulative `name_bucket{le="..."}` lines ending with `le="+Inf"`, then `name_sum` and
    /// `name_count`.
    ///
    /// - Parameter buckets: `(upperBound, cumulativeCount)` in increasing bound order. A `+Inf` bucket with `count`
    ///   is appended when the last bound is finite.
    public mutating func histogram(
        _ name: String, help: String, buckets: [(upperBound: Double, cumulativeCount: UInt64)], sum: Double,
        count: UInt64, labels: Labels = []
    ) {
        family(name, help: help, type: "histogram")
        for bucket in buckets {
            line(name + "_bucket", labels + [("le", Self.format(bucket.upperBound))], Double(bucket.cumulativeCount))
        }
        if buckets.last.map({ $0.upperBound.isFinite }) ?? true {
            line(name + "_bucket", labels + [("le", "+Inf")], Double(count))
        }
        line(name + "_sum", labels, sum)
        line(name + "_count", labels, Double(count))
    }

    // MARK: Formatting

    private mutating func family(_ name: String, help: String, type: String) {
        let name = Self.sanitize(name, allowColon: true)
        output += "# HELP \(name) \(Self.escapeHelp(help))\n# TYPE \(name) \(type)\n"
    }

    private mutating func line(_ name: String, _ labels: Labels, _ value: Double) {
        output += Self.sanitize(name, allowColon: true)
        if !labels.isEmpty {
            output += "{"
            for (offset, label) in labels.enumerated() {
                if offset > 0 { output += "," }
                output += "\(Self.sanitize(label.name, allowColon: false))=\"\(Self.escapeLabelValue(label.value))\""
            }
            output += "}"
        }
        output += " \(Self.format(value))\n"
    }

    /// `+Inf`, `-Inf`, `NaN`, integers without a fraction, other values in Swift's shortest round-trip form.
    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return String(value)
    }

    /// Replaces characters outside the metric (or label) name alphabet with `_`.
    static func sanitize(_ name: String, allowColon: Bool) -> String {
        var result = ""
        result.reserveCapacity(name.utf8.count)
        for (offset, scalar) in name.unicodeScalars.enumerated() {
            let isLetter =
                (scalar >= "a" && scalar <= "z") || (scalar >= "A" && scalar <= "Z") || scalar == "_"
                || (allowColon && scalar == ":")
            let isDigit = scalar >= "0" && scalar <= "9"
            result.unicodeScalars.append(isLetter || (isDigit && offset > 0) ? scalar : "_")
        }
        return result.isEmpty ? "_" : result
    }

    static func escapeHelp(_ text: String) -> String {
        var result = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }

    static func escapeLabelValue(_ text: String) -> String {
        var result = ""
        for character in text.unicodeScalars {
            switch character {
            case "\\": result += "\\\\"
            case "\"": result += "\\\""
            case "\n": result += "\\n"
            default: result.unicodeScalars.append(character)
            }
        }
        return result
    }
}
