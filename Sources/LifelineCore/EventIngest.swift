import NIOCore
import SSE

/// Turns parsed origin events into encoded stream events: numbering, ids of the gateway's own
/// (`--assign-ids`), and dropping what an origin replays after a reconnect that the stream
/// already has. Pure: no I/O, no clock.
struct EventIngest {
    private(set) var nextSequence: UInt64 = 1
    private let assignIDs: Bool
    /// Distinguishes this stream incarnation's assigned ids from an earlier one's.
    private var incarnation: String
    /// After a reconnect, events the buffer already has are dropped until the first new one.
    private var deduplicating = false
    /// The buffered event that the origin's replay has reached: an id-less event that follows
    /// a dropped duplicate is itself a duplicate only if the buffer has an id-less event next.
    private var replayCursor: UInt64?
    private(set) var duplicatesDropped = 0

    init(assignIDs: Bool, incarnation: String) {
        self.assignIDs = assignIDs
        self.incarnation = incarnation
    }

    /// Numbers the events that follow from `nextSequence`, with assigned ids made from
    /// `incarnation` (a shared history's epoch, so that every instance gives an event one id).
    mutating func renumber(from nextSequence: UInt64, incarnation: String) {
        self.nextSequence = nextSequence
        self.incarnation = incarnation
    }

    /// Events that come from elsewhere (a shared history) took these sequences.
    mutating func skip(through sequence: UInt64) {
        self.nextSequence = max(self.nextSequence, sequence + 1)
    }

    mutating func upstreamReconnected() {
        self.deduplicating = true
        self.replayCursor = nil
    }

    /// The encoded event, or nil when it is a duplicate of one already sent.
    mutating func ingest(
        _ event: SSEEvent,
        replay: ReplayBuffer,
        now: NIODeadline,
        allocator: ByteBufferAllocator
    ) -> EncodedEvent? {
        if self.deduplicating {
            if let id = event.id, !id.isEmpty, let sequence = replay.sequence(forID: id) {
                self.replayCursor = sequence
                self.duplicatesDropped += 1
                return nil
            }
            if event.id == nil, let cursor = self.replayCursor,
                let next = replay.event(sequence: cursor + 1), next.id == nil
            {
                self.replayCursor = cursor + 1
                self.duplicatesDropped += 1
                return nil
            }
            self.deduplicating = false
            self.replayCursor = nil
        }
        var event = event
        let sequence = self.nextSequence
        if self.assignIDs, event.id == nil, event.lastEventID.isEmpty, event.data != nil {
            event.id = "\(self.incarnation)-\(sequence)"
            event.lastEventID = event.id!
        }
        self.nextSequence += 1
        var bytes = allocator.buffer(capacity: (event.data?.utf8.count ?? 0) + 32)
        SSESerializer.write(event, into: &bytes)
        return EncodedEvent(sequence: sequence, id: event.id, bytes: bytes, receivedAt: now)
    }
}
