import NIOCore

/// How the gateway's own reconnects to an origin are paced beyond the backoff, as a browser's
/// EventSource paces them: the reconnection time after a clean end, the clamp on `retry:`, and
/// how long a connection must stay up before the backoff starts over.
public struct UpstreamPacing: Sendable, Hashable {
    /// The wait after the origin ends a response cleanly when it set no `retry:` (browsers
    /// use about 3 s).
    public var defaultReconnectionTime: TimeAmount
    /// The origin's `retry:` is clamped to at least this for the wait after a clean end, so that
    /// `retry: 0` cannot turn the gateway into a busy loop against its origin.
    public var minimumReconnectionTime: TimeAmount
    /// A connection that stayed up this long resets the backoff; shorter ones make it grow.
    public var stableAfter: TimeAmount

    public init(
        defaultReconnectionTime: TimeAmount = .seconds(3),
        minimumReconnectionTime: TimeAmount = .seconds(1),
        stableAfter: TimeAmount = .seconds(10)
    ) {
        self.defaultReconnectionTime = defaultReconnectionTime
        self.minimumReconnectionTime = minimumReconnectionTime
        self.stableAfter = stableAfter
    }
}
