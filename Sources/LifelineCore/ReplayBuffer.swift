import NIOCore

/// The ring of a stream's recent events, bounded by count, bytes and age, that serves clients
/// reconnecting with `Last-Event-ID`.
///
/// Lookups are by the `id` a client last saw. Sequences are consecutive, so the position of an
/// event is `sequence - firstSequence`, and an index from id to sequence makes a lookup O(1).
public struct ReplayBuffer: Sendable {
    public struct Limits: Sendable, Hashable {
        public var events: Int
        public var bytes: Int
        public var age: TimeAmount
        public init(events: Int = 1000, bytes: Int = 4 << 20, age: TimeAmount = .minutes(10)) {
            self.events = events
            self.bytes = bytes
            self.age = age
        }
    }

    public enum Lookup: Sendable {
        /// The client's id is known: these are the events after it (possibly none).
        case hit([EncodedEvent])
        /// The id is unknown or has been evicted: the buffer cannot say what the client missed.
        case miss
    }

    public let limits: Limits
    private var entries: CircularBuffer<EncodedEvent> = CircularBuffer(initialCapacity: 16)
    private var indexByID: [String: UInt64] = [:]
    public private(set) var byteCount = 0
    /// The id the stream's upstream was first opened with (its resume point). A client that
    /// resumes from exactly there is owed every event since the stream began, as long as none
    /// has been evicted yet.
    private var baseID: String?
    /// An event has left the buffer: an id it does not hold may be one that was evicted.
    public private(set) var evictedAny = false

    /// - Parameter startsMidStream: the ring begins in the middle of a history (a follower of a
    ///   shared one): an id it does not hold is an older one, never one still to come.
    public init(limits: Limits, baseID: String? = nil, startsMidStream: Bool = false) {
        self.limits = limits
        self.baseID = (baseID?.isEmpty ?? true) ? nil : baseID
        self.evictedAny = startsMidStream
    }

    public var count: Int { self.entries.count }
    public var isEmpty: Bool { self.entries.isEmpty }
    public var last: EncodedEvent? { self.entries.last }

    /// Whether an event with this `id` is buffered (used to drop what an origin replays twice).
    public func contains(id: String) -> Bool {
        self.indexByID[id] != nil
    }

    /// The sequence of the most recent buffered event with this `id`.
    public func sequence(forID id: String) -> UInt64? {
        self.indexByID[id]
    }

    /// The buffered event with this sequence, if it is still buffered.
    public func event(sequence: UInt64) -> EncodedEvent? {
        guard let first = self.entries.first, sequence >= first.sequence else { return nil }
        let offset = Int(sequence - first.sequence)
        guard offset < self.entries.count else { return nil }
        return self.entries[self.entries.index(self.entries.startIndex, offsetBy: offset)]
    }

    /// The buffered events after `sequence`, oldest first; nil when the ring no longer holds the
    /// one right after it (it was evicted).
    public func events(afterSequence sequence: UInt64) -> [EncodedEvent]? {
        guard let first = self.entries.first, let last = self.entries.last else { return [] }
        if sequence >= last.sequence { return [] }
        guard sequence + 1 >= first.sequence else { return nil }
        let start = Int(sequence + 1 - first.sequence)
        return Array(self.entries[self.entries.index(self.entries.startIndex, offsetBy: start)...])
    }

    /// The first sequence still held (nil when empty).
    public var firstSequence: UInt64? { self.entries.first?.sequence }

    public mutating func append(_ event: EncodedEvent, now: NIODeadline) {
        if let previous = self.entries.last {
            precondition(event.sequence == previous.sequence + 1, "replay sequences must be consecutive")
        }
        self.entries.append(event)
        self.byteCount += event.bytes.readableBytes
        if let id = event.id, !id.isEmpty {
            self.indexByID[id] = event.sequence
        }
        self.evict(now: now)
    }

    /// Drops what is over the count, byte or age bound. The newest event stays even when it
    /// alone is over the byte bound, so that a client's position can still be found.
    public mutating func evict(now: NIODeadline) {
        let oldestAllowed = now - self.limits.age
        while let first = self.entries.first {
            let overCount = self.entries.count > self.limits.events
            let overBytes = self.byteCount > self.limits.bytes && self.entries.count > 1
            let tooOld = first.receivedAt < oldestAllowed
            guard overCount || overBytes || tooOld else { break }
            self.removeFirst()
        }
    }

    /// Every buffered event, oldest first: what a client that joined as the stream began is owed.
    public var all: [EncodedEvent] { Array(self.entries) }

    /// When the oldest buffered event arrived (for the status page's buffer age).
    public var oldestReceivedAt: NIODeadline? { self.entries.first?.receivedAt }

    private mutating func removeFirst() {
        let first = self.entries.removeFirst()
        self.byteCount -= first.bytes.readableBytes
        self.evictedAny = true
        if let id = first.id, self.indexByID[id] == first.sequence {
            self.indexByID[id] = nil
        }
    }

    /// The events a client that last saw `lastEventID` has missed.
    public mutating func events(after lastEventID: String, now: NIODeadline) -> Lookup {
        self.evict(now: now)
        if let sequence = self.indexByID[lastEventID], let first = self.entries.first {
            let start = Int(sequence - first.sequence) + 1
            return .hit(Array(self.entries[self.entries.index(self.entries.startIndex, offsetBy: start)...]))
        }
        if lastEventID == self.baseID, !self.evictedAny {
            return .hit(Array(self.entries))
        }
        return .miss
    }
}
