import Foundation

/// Polling waits for process-level tests: a condition is checked every `interval` (default 25 ms) until it holds
/// or the deadline passes. Never a bare sleep standing in for a condition.

/// An error that ends a `waitFor` at once instead of counting as "not yet" (e.g. the node being waited for exited).
protocol StopsWaiting: Error {}

/// Thrown when a `waitFor` deadline passes; carries the last error the condition threw, if any.
struct WaitTimeout: Error, CustomStringConvertible {
    var what: String
    var timeout: Duration
    var attempts: Int
    var lastError: (any Error)?
    var lastValue: String?

    var description: String {
        var text = "timed out after \(timeout) (\(attempts) polls) waiting for \(what)"
        if let lastValue { text += "; last seen: \(lastValue)" }
        if let lastError { text += "; last error: \(lastError)" }
        return text
    }
}

/// Polls `condition` until it returns a non-`nil` value and returns that value.
///
/// Errors thrown by `condition` count as "not yet" (a node that is down refuses connections) and the last one is
/// reported in the `WaitTimeout`, except `StopsWaiting` errors and cancellation, which end the wait at once. The condition is always tried at least once, and once more at the deadline.
@discardableResult
func waitFor<T>(
    _ what: @autoclosure () -> String, timeout: Duration, interval: Duration = .milliseconds(25),
    _ condition: () async throws -> T?
) async throws -> T {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    var attempts = 0
    var lastError: (any Error)?
    while true {
        attempts += 1
        do {
            // A condition whose result type was inferred as an optional (`T` = `X?`) answers "not yet" with
            // `.some(nil)`: that is not an answer either.
            if let value = try await condition(), !isNilOptional(value) { return value }
            lastError = nil
        } catch is CancellationError {
            throw CancellationError()
        } catch let error as any StopsWaiting {
            throw error
        } catch {
            lastError = error
        }
        let now = clock.now
        if now >= deadline {
            throw WaitTimeout(what: what(), timeout: timeout, attempts: attempts, lastError: lastError)
        }
        try await Task.sleep(for: min(interval, now.duration(to: deadline)))
    }
}

/// Polls a Boolean condition until it is `true`.
func waitFor(
    _ what: @autoclosure () -> String, timeout: Duration, interval: Duration = .milliseconds(25),
    until condition: () async throws -> Bool
) async throws {
    try await waitFor(what(), timeout: timeout, interval: interval) { () async throws -> Bool? in
        try await condition() ? true : nil
    }
}

/// Runs `body` repeatedly for `duration`, asserting nothing itself; for "this must hold the whole time" checks the
/// body throws on the first violation.
func repeatFor(_ duration: Duration, interval: Duration = .milliseconds(25), _ body: () async throws -> Void)
    async throws
{
    let clock = ContinuousClock()
    let deadline = clock.now + duration
    repeat {
        try await body()
        try await Task.sleep(for: interval)
    } while clock.now < deadline
}

/// How long something took.
func measure<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
    let clock = ContinuousClock()
    let start = clock.now
    let value = try await body()
    return (value, start.duration(to: clock.now))
}

extension Duration {
    /// Milliseconds, for messages and arithmetic with config values.
    var milliseconds: Double {
        Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15
    }
}

/// `true` for a value that is an `Optional` holding nothing (see `waitFor`).
private func isNilOptional<T>(_ value: T) -> Bool {
    (value as? any OptionalMarker)?.isNone ?? false
}

private protocol OptionalMarker {
    var isNone: Bool { get }
}

extension Optional: OptionalMarker {
    var isNone: Bool { self == nil }
}
