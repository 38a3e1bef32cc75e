import NIOCore
import SSE

/// The origin side of a stream, as the core sees it: something that delivers parsed events and
/// reconnects by itself. The `Upstream` module implements it over HTTP/1.1.
public protocol UpstreamFeed: AnyObject {
    /// Stops for good: closes any connection and cancels any reconnect. No callbacks after it.
    func stop()
}

/// What a stream hears from its upstream; every call comes on the stream's event loop.
public protocol UpstreamFeedDelegate: AnyObject {
    /// A connection answered `200` with an event stream. `isReconnect` is false for the first.
    func upstreamConnected(isReconnect: Bool)
    /// What one read from the origin parsed to, in order: one batch.
    func upstreamReceived(_ outputs: [SSEParser.Output])
    /// The headers of a connection's event-stream response that every subscriber's response
    /// repeats (CORS and the like), already without what must not be shared. Comes before
    /// `upstreamConnected`.
    func upstreamResponseHeaders(_ headers: [(String, String)])
    /// The connection ended; the feed reconnects by itself. `reason` is for people, `kind` for
    /// counting.
    func upstreamDisconnected(reason: String, kind: UpstreamDisconnect)
    /// An attempt to (re)connect failed (unreachable, refused answer, no head in time); the feed
    /// tries again by itself.
    func upstreamAttemptFailed(reason: String)
    /// The feed stopped for good.
    func upstreamEnded(_ reason: StreamEndReason)
}

extension UpstreamFeedDelegate {
    public func upstreamResponseHeaders(_ headers: [(String, String)]) {}
    public func upstreamAttemptFailed(reason: String) {}
}
