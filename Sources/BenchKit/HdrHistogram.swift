/// A High Dynamic Range histogram of non-negative integer values (Gil Tene's HdrHistogram layout), used for request
/// latencies in microseconds.
///
/// Values from 1 to `highestTrackableValue` are kept with `significantDigits` decimal digits of precision: the value
/// reported for a percentile is the highest value equivalent to the recorded one, never lower than it and at most
/// `1 / 10^significantDigits` above it. Values above the range are clamped to it and counted in `clampedCount`.
/// `min`, `max` and `mean` are exact (kept beside the buckets).
///
/// Layout: bucket 0 holds `subBucketCount` sub-buckets of unit width; each further bucket doubles the width and holds
/// the upper half of its sub-buckets (the lower half is already covered by the previous bucket).
public struct HdrHistogram: Sendable, Equatable {
    public let highestTrackableValue: Int
    public let significantDigits: Int
    public private(set) var totalCount: Int = 0
    public private(set) var clampedCount: Int = 0
    public private(set) var min: Int = .max
    public private(set) var max: Int = 0
    private var sum: Int = 0
    private var counts: [Int]

    private let subBucketHalfCountMagnitude: Int
    private let subBucketHalfCount: Int
    private let subBucketMask: Int
    private let leadingZeroCountBase: Int

    /// - Parameters:
    ///   - highestTrackableValue: the largest value kept exactly (default 60 s in microseconds).
    ///   - significantDigits: 1...5 (default 3: 0.1 % precision).
    public init(highestTrackableValue: Int = 60_000_000, significantDigits: Int = 3) {
        precondition(highestTrackableValue >= 2, "highestTrackableValue must be at least 2")
        precondition((1...5).contains(significantDigits), "significantDigits must be 1...5")
        self.highestTrackableValue = highestTrackableValue
        self.significantDigits = significantDigits
        var largestSingleUnitResolution = 2
        for _ in 0..<significantDigits { largestSingleUnitResolution *= 10 }
        // Smallest power of two >= 2 * 10^digits: the number of unit-width sub-buckets in bucket 0.
        var subBucketCountMagnitude = 0
        while (1 << subBucketCountMagnitude) < largestSingleUnitResolution { subBucketCountMagnitude += 1 }
        let subBucketCount = 1 << subBucketCountMagnitude
        subBucketHalfCountMagnitude = subBucketCountMagnitude - 1
        subBucketHalfCount = subBucketCount / 2
        subBucketMask = subBucketCount - 1
        leadingZeroCountBase = 64 - subBucketHalfCountMagnitude - 1
        var smallestUntrackable = subBucketCount
        var bucketCount = 1
        while smallestUntrackable <= highestTrackableValue {
            smallestUntrackable <<= 1
            bucketCount += 1
        }
        counts = Array(repeating: 0, count: (bucketCount + 1) * subBucketHalfCount)
    }

    /// Records `value` (negative values count as 0, values above the range as `highestTrackableValue`).
    public mutating func record(_ value: Int, count: Int = 1) {
        var value = Swift.max(0, value)
        if value > highestTrackableValue {
            value = highestTrackableValue
            clampedCount += count
        }
        counts[countsIndex(of: value)] += count
        totalCount += count
        sum += value * count
        if value < min { min = value }
        if value > max { max = value }
    }

    /// Adds every value recorded in `other` (which must have the same range and precision).
    public mutating func merge(_ other: HdrHistogram) {
        precondition(
            other.highestTrackableValue == highestTrackableValue && other.significantDigits == significantDigits,
            "merging histograms of different layouts")
        for index in other.counts.indices where other.counts[index] != 0 {
            counts[index] += other.counts[index]
        }
        totalCount += other.totalCount
        clampedCount += other.clampedCount
        sum += other.sum
        if other.totalCount > 0 {
            min = Swift.min(min, other.min)
            max = Swift.max(max, other.max)
        }
    }

    /// The exact arithmetic mean of the recorded values (0 when empty).
    public var mean: Double {
        totalCount == 0 ? 0 : Double(sum) / Double(totalCount)
    }

    /// The smallest recorded value `v` such that at least `percentile` % of the values are `<= v`, reported as the
    /// highest value equivalent to it (0 when empty). `percentile` 100 gives the exact maximum.
    public func value(atPercentile percentile: Double) -> Int {
        guard totalCount > 0 else { return 0 }
        let clamped = Swift.min(Swift.max(percentile, 0), 100)
        if clamped >= 100 { return max }
        // The rank of the value, 1-based, as in "nearest rank": ceil(p * n), at least 1.
        let rank = Swift.max(1, Int((clamped / 100 * Double(totalCount)).rounded(.up)))
        var seen = 0
        for index in counts.indices where counts[index] != 0 {
            seen += counts[index]
            if seen >= rank {
                return Swift.min(highestEquivalentValue(value(atIndex: index)), max)
            }
        }
        return max
    }

    /// A fixed summary: count, mean, p50, p90, p99, p99.9, max.
    public var summary: LatencySummary {
        LatencySummary(
            count: totalCount, mean: mean, p50: value(atPercentile: 50), p90: value(atPercentile: 90),
            p99: value(atPercentile: 99), p999: value(atPercentile: 99.9), max: totalCount == 0 ? 0 : max)
    }

    // MARK: - Index arithmetic

    private func bucketIndex(of value: Int) -> Int {
        leadingZeroCountBase - (value | subBucketMask).leadingZeroBitCount
    }

    private func countsIndex(of value: Int) -> Int {
        let bucket = bucketIndex(of: value)
        let subBucket = value >> bucket
        return ((bucket + 1) << subBucketHalfCountMagnitude) + (subBucket - subBucketHalfCount)
    }

    private func value(atIndex index: Int) -> Int {
        var bucket = (index >> subBucketHalfCountMagnitude) - 1
        var subBucket = (index & (subBucketHalfCount - 1)) + subBucketHalfCount
        if bucket < 0 {
            subBucket -= subBucketHalfCount
            bucket = 0
        }
        return subBucket << bucket
    }

    /// The width of the range of values that share `value`'s counter.
    func sizeOfEquivalentRange(_ value: Int) -> Int {
        let bucket = bucketIndex(of: value)
        let subBucket = value >> bucket
        let adjustedBucket = subBucket >= 2 * subBucketHalfCount ? bucket + 1 : bucket
        return 1 << adjustedBucket
    }

    /// The largest value that shares `value`'s counter.
    func highestEquivalentValue(_ value: Int) -> Int {
        let bucket = bucketIndex(of: value)
        let lowest = (value >> bucket) << bucket
        return lowest + sizeOfEquivalentRange(value) - 1
    }
}

/// Latency percentiles of one run, in the histogram's unit (microseconds for the load generator).
public struct LatencySummary: Sendable, Equatable {
    public var count: Int
    public var mean: Double
    public var p50: Int
    public var p90: Int
    public var p99: Int
    public var p999: Int
    public var max: Int

    public init(count: Int, mean: Double, p50: Int, p90: Int, p99: Int, p999: Int, max: Int) {
        self.count = count
        self.mean = mean
        self.p50 = p50
        self.p90 = p90
        self.p99 = p99
        self.p999 = p999
        self.max = max
    }
}
