import NIOCore

/// When each streaming client is let go during a drain, and what `retry:` it is told: a pure
/// function of the window and a random draw, so that tests can check the spread.
///
/// Each client is closed at its own uniformly random moment within what is left of the window,
/// so reconnects arrive spread over the window instead of in one herd; and its last bytes say
/// `retry: R` with R uniform in `retryRange`, so that even clients closed at the same moment come
/// back at different times.
public struct DrainSchedule: Sendable, Equatable {
    /// When the drain window ends: every client is closed before it.
    public var deadline: NIODeadline
    /// The `retry:` values given to closed clients, in milliseconds.
    public var retryRange: ClosedRange<Int64>

    public static let defaultRetryRange: ClosedRange<Int64> = 500...1500

    public init(deadline: NIODeadline, retryRange: ClosedRange<Int64> = Self.defaultRetryRange) {
        self.deadline = deadline
        self.retryRange = retryRange
    }

    /// The moment to close a client that is streaming at `now`, from a draw `unit` in [0, 1).
    public func closeTime(now: NIODeadline, unit: Double) -> NIODeadline {
        guard self.deadline > now else { return now }
        let left = Double((self.deadline - now).nanoseconds)
        return now + .nanoseconds(Int64(left * min(max(unit, 0), 0.999_999)))
    }

    /// The `retry:` for a closed client, from a draw `unit` in [0, 1).
    public func retryMilliseconds(unit: Double) -> Int64 {
        let span = Double(self.retryRange.upperBound - self.retryRange.lowerBound)
        return self.retryRange.lowerBound + Int64(span * min(max(unit, 0), 0.999_999))
    }
}
