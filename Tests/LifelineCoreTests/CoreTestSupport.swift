import NIOCore
import NIOEmbedded
import SSE
import XCTest

@testable import LifelineCore

// MARK: Events

/// A fixed point in time for the pure tests (far from zero, so that `now - age` does not clamp).
let t0 = NIODeadline.uptimeNanoseconds(1_000_000_000_000)

/// An encoded event as the stream would make it: `id: ID` + `data: DATA`.
func encoded(_ sequence: UInt64, id: String?, data: String = "x", at time: NIODeadline = t0) -> EncodedEvent {
    let event = SSEEvent(id: id, data: data, lastEventID: id ?? "")
    return EncodedEvent(
        sequence: sequence,
        id: id,
        bytes: SSESerializer.encode(event, allocator: ByteBufferAllocator()),
        receivedAt: time
    )
}

/// An event of exactly `size` serialized bytes (`data: ` + padding + LF LF, no id line).
func sized(_ sequence: UInt64, id: String?, size: Int, at time: NIODeadline = t0) -> EncodedEvent {
    var bytes = ByteBuffer()
    bytes.writeString(String(repeating: "x", count: size))
    return EncodedEvent(sequence: sequence, id: id, bytes: bytes, receivedAt: time)
}

func sequences(_ lookup: ReplayBuffer.Lookup) -> [UInt64]? {
    if case .hit(let events) = lookup { return events.map(\.sequence) }
    return nil
}

func isMiss(_ lookup: ReplayBuffer.Lookup) -> Bool {
    if case .miss = lookup { return true }
    return false
}

/// An origin event as the parser would output it, with the id in force after it.
func originEvent(id: String?, data: String?, lastEventID: String? = nil, type: String? = nil) -> SSEEvent {
    SSEEvent(id: id, type: type, data: data, lastEventID: lastEventID ?? id ?? "")
}

/// The parser's outputs for events `ids` (each `id: N` + `data: eN`).
func outputs(_ ids: [Int]) -> [SSEParser.Output] {
    ids.map { .event(SSEEvent(id: "\($0)", data: "e\($0)", lastEventID: "\($0)")) }
}

/// Parses event-stream bytes into (id-in-force, data) pairs of the events they hold.
func parseEvents(_ buffers: [ByteBuffer]) -> [SSEEvent] {
    var parser = SSEParser()
    var events: [SSEEvent] = []
    for buffer in buffers {
        let parsed = (try? parser.parse(buffer)) ?? []
        for case .event(let event) in parsed {
            events.append(event)
        }
    }
    return events
}

func string(_ buffer: ByteBuffer) -> String {
    String(buffer: buffer)
}

// MARK: Fakes

/// An upstream that records whether the stream stopped it.
final class FakeFeed: UpstreamFeed, @unchecked Sendable {
    private(set) var stopCount = 0
    func stop() { self.stopCount += 1 }
}

/// A subscriber that records what the stream tells it. Confined to its loop (`@unchecked`
/// so that the multi-loop tests can create it on one thread and use it on its loop).
final class FakeSubscriber: StreamSubscriber, @unchecked Sendable {
    let eventLoop: EventLoop
    let name: String
    private(set) var attachment: StreamAttachment?
    private(set) var chunks: [StreamChunk] = []
    private(set) var ended: [StreamEndReason] = []
    private(set) var refusals: [StreamRefusal] = []
    private(set) var heartbeats = 0
    /// Called after each delivered chunk (on the subscriber's loop).
    var onDeliver: ((FakeSubscriber) -> Void)?

    init(eventLoop: EventLoop, name: String = "subscriber") {
        self.eventLoop = eventLoop
        self.name = name
    }

    /// Everything written to the subscriber, in order: replays, live chunks, continuations.
    private(set) var received: [ByteBuffer] = []
    /// Attachments that moved this subscriber from a catching-up stream to a shared one.
    private(set) var continuations: [StreamAttachment] = []

    /// The client has gone (`leave()`): what attaches later is left at once, as a front end does.
    private(set) var hasLeft = false

    func streamAttached(_ attachment: StreamAttachment) {
        self.eventLoop.preconditionInEventLoop()
        if self.hasLeft {
            attachment.membership.leave()
            return
        }
        if attachment.kind == .continuation {
            // As the front end does: leave the stream it caught up on, go on with this one.
            XCTAssertNotNil(self.attachment, "\(self.name) got a continuation before it was attached")
            self.current?.leave()
            self.continuations.append(attachment)
            self.received += attachment.replay.map(\.bytes)
            return
        }
        XCTAssertNil(self.attachment, "\(self.name) attached twice")
        self.attachment = attachment
        self.received += attachment.replay.map(\.bytes)
    }

    /// The membership the subscriber streams from now.
    var current: StreamMembership? { self.continuations.last?.membership ?? self.attachment?.membership }

    /// Ids (in force) of every event received, in order, whichever stream sent it.
    var receivedIDs: [String] { parseEvents(self.received).map(\.lastEventID) }

    func heartbeatDue() {
        self.heartbeats += 1
    }

    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline) {
        self.eventLoop.preconditionInEventLoop()
        XCTAssertNotNil(self.attachment, "\(self.name) got a chunk before it was attached")
        self.chunks.append(chunk)
        self.received.append(chunk.bytes)
        self.onDeliver?(self)
    }

    func streamEnded(_ reason: StreamEndReason) {
        self.eventLoop.preconditionInEventLoop()
        self.ended.append(reason)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        self.eventLoop.preconditionInEventLoop()
        self.refusals.append(refusal)
    }

    var replayStatus: StreamAttachment.Replay? { self.attachment?.replayStatus }

    /// Ids (in force) of the replayed events, then of the live ones, in the order received.
    var replayedIDs: [String] { parseEvents(self.attachment?.replay.map(\.bytes) ?? []).map(\.lastEventID) }
    var liveIDs: [String] { parseEvents(self.chunks.map(\.bytes)).map(\.lastEventID) }
    var allIDs: [String] { self.replayedIDs + self.liveIDs }
    var liveText: String { self.chunks.map { string($0.bytes) }.joined() }

    func leave() {
        self.hasLeft = true
        self.current?.leave()
    }
}

func makeKey(_ path: String = "/events") -> StreamKey {
    StreamKey(method: "GET", origin: "http://origin:3000", path: path, query: "", headerValues: [nil, nil])
}
