import NIOCore

/// A token bucket: at most `perSecond` events in a burst, refilled at `perSecond` per second.
/// Used to spot floods of client frames (RST_STREAM, PING, SETTINGS). Pure: time comes in.
struct FrameRateLimiter {
    let perSecond: Int
    private var tokens: Double
    private var last: NIODeadline?

    init(perSecond: Int) {
        self.perSecond = perSecond
        self.tokens = Double(perSecond)
    }

    /// Counts one event at `now`. False when the bucket is empty: the peer is over the rate.
    /// A limit of 0 means no limit.
    mutating func admit(now: NIODeadline) -> Bool {
        guard self.perSecond > 0 else { return true }
        let capacity = Double(self.perSecond)
        if let last = self.last, now > last {
            let elapsed = Double((now - last).nanoseconds) / 1_000_000_000
            self.tokens = min(capacity, self.tokens + elapsed * capacity)
        }
        if self.last == nil || now > self.last! {
            self.last = now
        }
        guard self.tokens >= 1 else { return false }
        self.tokens -= 1
        return true
    }
}
