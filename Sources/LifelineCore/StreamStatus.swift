/// One stream as the status page and `/status.json` show it: a copy taken on the stream's loop.
public struct StreamStatus: Sendable, Equatable {
    public var id: String
    /// The path the opening client asked for, its query's values masked.
    public var path: String
    /// The origin's URL for it (scheme, host, port, path; query values masked).
    public var origin: String
    public var sharing: StreamSharing
    public var subscribers: Int
    /// `connecting`, `connected`, `reconnecting` or `ended`.
    public var upstreamState: String
    /// How long the upstream has been in that state.
    public var upstreamStateSeconds: Double
    public var reconnects: Int
    public var lastError: String?
    public var eventsReceived: Int
    public var eventsSent: Int
    public var replayEvents: Int
    public var replayBytes: Int
    /// Age of the oldest buffered event (0 when the buffer is empty).
    public var replayAgeSeconds: Double
    public var replayEventLimit: Int
    public var replayByteLimit: Int
    public var replayAgeLimitSeconds: Double
    public var ageSeconds: Double
    /// With a shared store: this instance's part in the stream.
    public var role: SharedRole
    /// With a shared store: the instance that holds the origin connection ("self" for this one).
    public var owner: String?

    public init(
        id: String, path: String, origin: String, sharing: StreamSharing, subscribers: Int, upstreamState: String,
        upstreamStateSeconds: Double, reconnects: Int, lastError: String?, eventsReceived: Int, eventsSent: Int,
        replayEvents: Int, replayBytes: Int, replayAgeSeconds: Double, replayEventLimit: Int, replayByteLimit: Int,
        replayAgeLimitSeconds: Double, ageSeconds: Double, role: SharedRole = .standalone, owner: String? = nil
    ) {
        self.role = role
        self.owner = owner
        self.id = id
        self.path = path
        self.origin = origin
        self.sharing = sharing
        self.subscribers = subscribers
        self.upstreamState = upstreamState
        self.upstreamStateSeconds = upstreamStateSeconds
        self.reconnects = reconnects
        self.lastError = lastError
        self.eventsReceived = eventsReceived
        self.eventsSent = eventsSent
        self.replayEvents = replayEvents
        self.replayBytes = replayBytes
        self.replayAgeSeconds = replayAgeSeconds
        self.replayEventLimit = replayEventLimit
        self.replayByteLimit = replayByteLimit
        self.replayAgeLimitSeconds = replayAgeLimitSeconds
        self.ageSeconds = ageSeconds
    }
}
