import NIOCore

/// A client of a stream, as the core sees it: something on an event loop that accepts bytes and
/// can be ended. HTTP/1.1 and HTTP/2 front ends implement it; the core knows nothing else of them.
///
/// Every method is called on the subscriber's own `eventLoop`. A subscriber is also its loop's
/// heartbeat target (its `StreamMembership` is its `HeartbeatEntry`).
public protocol StreamSubscriber: HeartbeatTarget {
    var eventLoop: EventLoop { get }
    /// The subscriber is in the stream: write the response head, the opening bytes and
    /// `attachment.replay`, in that order; live chunks follow through `streamDeliver`. A
    /// `.continuation` moves a subscriber that caught up on a stream of its own to this one:
    /// leave the old membership and write only `attachment.replay`.
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
    /// a stream of its own, opened upstream with that id, until it catches up with this one.
    case needsCatchUp(lastEventID: String)
    /// A catching-up subscriber asked to continue after an id this stream does not hold (yet).
    case notHeld
    /// A private generation has its most subscribers (its client and resumes in flight).
    case busy
}

/// What a subscriber learns when it joins a stream: everything it needs from the stream, by
/// value, taken on the stream's loop (nothing of the stream is read from the subscriber's loop).
public struct StreamAttachment {
    public enum Kind: Sendable, Equatable {
        /// The subscriber's response starts with this stream.
        case first
        /// The subscriber caught up on a stream of its own and continues on this one: its
        /// response is already open.
        case continuation
    }
    public enum Replay: Sendable, Equatable {
        /// The client sent no `Last-Event-ID`.
        case none
        /// The buffer knew the client's id; `events` are what it missed.
        case hit
        /// The buffer could not serve the client's id; it joins live (or a private stream).
        case miss
    }
    public let membership: StreamMembership
    public let kind: Kind
    public let replayStatus: Replay
    /// Events the client missed, oldest first.
    public let replay: [EncodedEvent]
    /// The `retry:` value the origin last sent (ms), to pass on to a client that joins late.
    public let originRetry: Int?
    /// The in-band gap event for a miss, when `--gap-event` is set.
    public let gapEvent: ByteBuffer?
    /// Headers of the origin's latest event-stream response that every subscriber's response
    /// repeats (CORS and the like), as they were when the subscriber got in.
    public let originHeaders: [(String, String)]
}

public enum StreamEndReason: Sendable, Equatable {
    /// The origin answered `204 No Content` on reconnect: the spec's "stop reconnecting".
    case originNoContent
    /// The origin stayed unreachable for `--upstream-give-up`.
    case originGaveUp
    /// The gateway is shutting down.
    case shutdown
    /// A client catching up on a stream of its own got further ahead of what it could be sent
    /// than the replay buffer's bounds while the splice onto the shared stream was decided: it
    /// reconnects with its last id.
    case catchUpOverflow
    /// A private generation's origin ended its response: so does each client's.
    case originFinished
    /// A private generation's origin response broke off: each client's breaks off too, so that
    /// it can tell an incomplete answer from a complete one.
    case originBroke
}
