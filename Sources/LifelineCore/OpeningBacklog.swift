/// Every event since a stream began, kept until the clients that opened it have joined.
///
/// The client whose request opened a stream, and the clients that waited for the origin's
/// answer, are owed every event since the stream began. Their attaches run a loop hop after the
/// stream is made, and a burst that came with the origin's head is already in by then: more than
/// the replay buffer holds, if its bounds are small. So the stream also keeps what arrives while
/// such clients are owed it, and lets it go once the last of them has joined or gone.
///
/// Bounded in bytes like the replay buffer: past that, the owed clients get what the replay
/// buffer still has, as they would have without it.
struct OpeningBacklog {
    private let byteLimit: Int
    /// Clients owed the events since the start that have not settled their claim yet.
    private(set) var owed = 0
    private var events: [EncodedEvent] = []
    private var byteCount = 0
    private var overflowed = false

    init(byteLimit: Int) {
        self.byteLimit = byteLimit
    }

    /// `count` more clients will join from the start.
    mutating func expect(_ count: Int) {
        guard count > 0 else { return }
        self.owed += count
    }

    /// Keeps `event` while anyone is owed it.
    mutating func record(_ event: EncodedEvent) {
        guard self.owed > 0, !self.overflowed else { return }
        self.byteCount += event.bytes.readableBytes
        if self.byteCount > self.byteLimit {
            self.overflowed = true
            self.events = []
            self.byteCount = 0
            return
        }
        self.events.append(event)
    }

    /// Every event since the start, or nil when that is more than the backlog could keep (or
    /// no client is owed it).
    var eventsSinceStart: [EncodedEvent]? {
        self.owed > 0 && !self.overflowed ? self.events : nil
    }

    /// One owed client has joined, or will not: the last one frees the backlog.
    mutating func settle() {
        guard self.owed > 0 else { return }
        self.owed -= 1
        if self.owed == 0 {
            self.events = []
            self.byteCount = 0
            self.overflowed = false
        }
    }
}
