import Foundation
import Testing

@testable import BenchKit

@Suite struct HdrHistogramTests {
    /// Nearest-rank percentile of a sorted array: the smallest value with at least p % of the values <= it.
    private func oracle(_ sorted: [Int], _ percentile: Double) -> Int {
        let rank = max(1, Int((percentile / 100 * Double(sorted.count)).rounded(.up)))
        return sorted[rank - 1]
    }

    @Test(arguments: [1, 7, 1000, 25_000])
    func percentilesMatchSortedArrayWithinPrecision(count: Int) {
        var rng = SplitMix64(seed: UInt64(count))
        var histogram = HdrHistogram()
        var values: [Int] = []
        for _ in 0..<count {
            // Log-uniform over 1 us ... 10 s, like latencies.
            let exponent = Double(rng.next() % 10_000) / 10_000 * 7
            let value = max(1, Int(pow(10, exponent)))
            values.append(value)
            histogram.record(value)
        }
        let sorted = values.sorted()
        for percentile in [0.0, 1, 25, 50, 90, 99, 99.9, 99.99, 100] {
            let expected = oracle(sorted, percentile)
            let got = histogram.value(atPercentile: percentile)
            // Never below the true value, at most 0.1 % (3 significant digits) above it.
            #expect(got >= expected, "p\(percentile): \(got) < \(expected)")
            #expect(Double(got) <= Double(expected) * 1.001 + 1, "p\(percentile): \(got) >> \(expected)")
        }
        #expect(histogram.totalCount == count)
        #expect(histogram.min == sorted.first)
        #expect(histogram.max == sorted.last)
        #expect(histogram.value(atPercentile: 100) == sorted.last)
        let exactMean = Double(values.reduce(0, +)) / Double(count)
        #expect(abs(histogram.mean - exactMean) < 1e-6 * exactMean)
    }

    @Test func smallValuesAreExact() {
        var histogram = HdrHistogram()
        for value in 0..<2048 { histogram.record(value) }
        // Below 2048 every value has its own counter.
        #expect(histogram.value(atPercentile: 50) == 1023)
        #expect(histogram.value(atPercentile: 0) == 0)
        #expect(histogram.summary.p90 == 1843)
    }

    @Test func mergeEqualsRecordingEverything() {
        var a = HdrHistogram()
        var b = HdrHistogram()
        var both = HdrHistogram()
        for value in stride(from: 1, to: 5_000_000, by: 4999) {
            if value % 2 == 0 { a.record(value) } else { b.record(value) }
            both.record(value)
        }
        a.merge(b)
        #expect(a == both)
    }

    @Test func valuesAboveTheRangeAreClampedAndCounted() {
        var histogram = HdrHistogram(highestTrackableValue: 1000)
        histogram.record(5)
        histogram.record(1_000_000)
        #expect(histogram.clampedCount == 1)
        #expect(histogram.max == 1000)
        #expect(histogram.value(atPercentile: 100) == 1000)
    }

    @Test func emptyHistogramReportsZeros() {
        let summary = HdrHistogram().summary
        #expect(summary == LatencySummary(count: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0))
    }
}
