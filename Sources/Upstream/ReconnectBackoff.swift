import NIOCore

/// Delays between reconnect attempts: exponential with full jitter between a floor and a cap.
///
/// The base is `--reconnect-min` until the origin sends `retry:`, which sets it as it would for a
/// browser. Attempt n waits a uniformly random time in [min, min(max, max(base·2ⁿ, 2·min))], so a crowd of
/// streams that lost the same origin spread their reconnects instead of arriving together.
public struct ReconnectBackoff: Sendable, Hashable {
    public var minimum: TimeAmount
    public var maximum: TimeAmount
    /// The origin's `retry:` value, when it sent one.
    public var originRetry: TimeAmount?

    public init(minimum: TimeAmount, maximum: TimeAmount, originRetry: TimeAmount? = nil) {
        self.minimum = minimum
        self.maximum = max(minimum, maximum)
        self.originRetry = originRetry
    }

    /// The delay before attempt `attempt` (0 for the first reconnect), given a random fraction in [0, 1).
    public func delay(attempt: Int, random: Double) -> TimeAmount {
        let base = min(max(self.originRetry ?? self.minimum, self.minimum), self.maximum)
        let exponent = min(attempt, 32)
        let grown = Double(base.nanoseconds) * Double(1 << UInt64(exponent))
        // At least twice the floor, so that even first reconnects are spread out.
        let cap = min(Double(self.maximum.nanoseconds), max(grown, 2 * Double(self.minimum.nanoseconds)))
        let floor = Double(self.minimum.nanoseconds)
        let fraction = min(max(random, 0), 1)
        return .nanoseconds(Int64(floor + (max(cap, floor) - floor) * fraction))
    }
}
