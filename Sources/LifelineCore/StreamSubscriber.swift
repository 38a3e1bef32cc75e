import NIOCore

/// A client of a stream, as the core sees it: something on an event loop that accepts bytes and
/// can be ended. HTTP/1.1 and HTTP/2 front ends implement it; the core knows nothing else of them.
///
/// Every method is called on the subscriber's own `eventLoop`. A subscriber is also its loop's
/// heartbeat target (its `StreamMembership` is its `HeartbeatEntry`).
public protocol StreamSubscriber: HeartbeatTarget {
    var eventLoop: EventLoop { get }
    /// The subscriber is in the stream: write the response head, the opening bytes and
    /// `attachment.replay`, in that order; live chunks follow through `streamDeliver`.
    func streamAttached(_ attachment: StreamAttachment)
    /// One batch of live events, to be written and flushed. `now` is the loop's time, read once
    /// per batch rather than once per subscriber.
    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline)
    /// The stream is over; end the response cleanly so the client reconnects.
    func streamEnded(_ reason: StreamEndReason)
    /// The stream could not take the subscriber (see `StreamRefusal`); nothing was written.
    func streamRefused(_ refusal: StreamRefusal)
}

public enum StreamRefusal: Sendable, Equatable {
    /// The stream ended before the subscriber got in: look it up again.
    case ended
    /// The buffer cannot serve the client's `Last-Event-ID` and the policy is to give the client
    /// a stream of its own, opened upstream with that id.
    case needsPrivateStream(lastEventID: String)
}

/// What a subscriber learns when it joins a stream.
public struct StreamAttachment {
    public enum Replay: Sendable, Equatable {
        /// The client sent no `Last-Event-ID`.
        case none
        /// The buffer knew the client's id; `events` are what it missed.
        case hit
        /// The buffer could not serve the client's id; it joins live (or a private stream).
        case miss
    }
    public let membership: StreamMembership
    public let replayStatus: Replay
    /// Events the client missed, oldest first.
    public let replay: [EncodedEvent]
    /// The `retry:` value the origin last sent (ms), to pass on to a client that joins late.
    public let originRetry: Int?
    /// The in-band gap event for a miss, when `--gap-event` is set.
    public let gapEvent: ByteBuffer?
}

public enum StreamEndReason: Sendable, Equatable {
    /// The origin answered `204 No Content` on reconnect: the spec's "stop reconnecting".
    case originNoContent
    /// The origin stayed unreachable for `--upstream-give-up`.
    case originGaveUp
    /// The gateway is shutting down.
    case shutdown
}
