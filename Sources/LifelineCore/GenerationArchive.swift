import NIOCore

/// Where private generations are kept beyond the process that runs them (Redis, with `--redis`),
/// so that a resume on another instance, or on this one after a restart, gets the same
/// generation. The instance that holds the origin response records; any instance reads.
public protocol GenerationArchive: AnyObject, Sendable {
    /// Starts keeping the generation `token` names; the recording is used on `eventLoop` only
    /// (the stream's).
    func record(_ token: ResumeToken, _ facts: ArchivedGenerationFacts, on eventLoop: EventLoop) -> GenerationRecording
    /// The generation `token` names, if it is kept and `caller` carries each credential its
    /// caller carried (the same answer for an unknown token and another caller's). The completion
    /// comes on `eventLoop`.
    func open(_ token: ResumeToken, caller: CallerHeaders, on eventLoop: EventLoop,
              completion: @escaping (ArchivedGenerationLookup) -> Void)
    /// Delivers the stored events after `sequence` as they are stored, then the generation's end;
    /// a generation whose recorder is gone without an end is reported as broken. On `eventLoop`.
    func follow(_ token: ResumeToken, after sequence: UInt64, on eventLoop: EventLoop,
                delegate: HistoryFollowerDelegate) -> HistoryFollowing
}

/// How one generation is recorded; every call on the stream's loop. Writes go out in order,
/// one at a time; a recording that cannot write gives up (resumes elsewhere then see the
/// generation break off where the recording stopped).
public protocol GenerationRecording: AnyObject {
    /// Events the stream ingested, consecutive; `keptFrom`: the oldest sequence the stream still
    /// keeps (older ones are dropped from the archive too).
    func append(_ events: [EncodedEvent], keptFrom: UInt64)
    /// The origin's response is over (`originFinished` or `originBroke`): kept for the resume
    /// window from now.
    func finish(_ reason: StreamEndReason)
}

/// The credentials a request carried, as they came: an archive keeps only keyed hashes of them.
public struct CallerHeaders: Sendable, Equatable {
    public var authorization: String?
    public var cookie: String?

    public init(authorization: String?, cookie: String?) {
        self.authorization = authorization
        self.cookie = cookie
    }
}

/// What an archive keeps of a generation besides its events.
public struct ArchivedGenerationFacts: Sendable {
    /// The starting request's credentials (kept as keyed hashes).
    public var caller: CallerHeaders
    /// The response headers every resume repeats (the origin's, and `Lifeline-Resume`).
    public var responseHeaders: [(String, String)]
    /// Where the generation came from, as the status page shows it (query values masked), and
    /// the prefix of the route it came through.
    public var displayPath: String
    public var routePrefix: String
    public var method: String

    public init(caller: CallerHeaders, responseHeaders: [(String, String)], displayPath: String, routePrefix: String, method: String) {
        self.caller = caller
        self.responseHeaders = responseHeaders
        self.displayPath = displayPath
        self.routePrefix = routePrefix
        self.method = method
    }
}

/// A generation read back from an archive.
public struct ArchivedGeneration: Sendable {
    public var facts: ArchivedGenerationFacts
    /// What is stored so far, consecutive.
    public var events: [EncodedEvent]
    /// How the origin's response ended; nil while it runs.
    public var end: StreamEndReason?
    /// How much longer the archive keeps it (for an ended one: the rest of its resume window).
    public var keptFor: TimeAmount

    public init(facts: ArchivedGenerationFacts, events: [EncodedEvent], end: StreamEndReason?, keptFor: TimeAmount) {
        self.facts = facts
        self.events = events
        self.end = end
        self.keptFor = keptFor
    }
}

public enum ArchivedGenerationLookup: Sendable {
    case found(ArchivedGeneration)
    /// Not kept (never, expired, or another caller's).
    case notFound
    case unavailable(String)
}
