import NIOCore

/// How the demo origin paces and disrupts its event stream.
///
/// The defaults make a stream that a person can watch in a browser (one tick a second) and that
/// regularly exercises a gateway's reconnect path (each connection is dropped after about 20 s).
public struct DemoOriginConfiguration: Sendable {
    /// The interval between events. Event ids count ticks since the Unix epoch, so they are the
    /// same in every process that uses the same tick. Values under 1 ms are treated as 1 ms.
    public var tick: TimeAmount

    /// Each SSE connection is closed after about this long (±25 % random jitter, so that many
    /// connections don't drop in step), forcing a gateway to reconnect with `Last-Event-ID`.
    /// `nil`, zero or a negative value means never.
    public var dropEvery: TimeAmount?

    /// The most events replayed to one request with `Last-Event-ID`; older ones are lost, as they
    /// would be with a real origin's bounded history. Zero turns replay off.
    public var maxReplay: Int

    /// How `POST /demo/chat` paces its answer (tests shorten it).
    var chatPacing = DemoChat.Pacing.standard

    public init(
        tick: TimeAmount = .seconds(1),
        dropEvery: TimeAmount? = .seconds(20),
        maxReplay: Int = 1000
    ) {
        self.tick = tick
        self.dropEvery = dropEvery
        self.maxReplay = maxReplay
    }

    /// The tick in whole milliseconds, at least 1: tick numbers and timers work in milliseconds.
    var tickMillis: Int64 {
        max(1, self.tick.nanoseconds / 1_000_000)
    }

    /// `dropEvery` with the "never" spellings folded into `nil`.
    var effectiveDropEvery: TimeAmount? {
        guard let dropEvery = self.dropEvery, dropEvery.nanoseconds > 0 else { return nil }
        return dropEvery
    }

    /// `maxReplay` with negative values folded into zero.
    var effectiveMaxReplay: Int64 {
        Int64(max(0, self.maxReplay))
    }
}
