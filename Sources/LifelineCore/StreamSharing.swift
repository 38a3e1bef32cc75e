/// How a stream is shared, and why it is not when it is not. One value per stream, set when it is
/// made: the hub finds only `.shared` streams by key; the others serve the one client whose
/// request made them and end with it.
public enum StreamSharing: Sendable, Equatable {
    /// Every client with the stream's key joins it (the default).
    case shared
    /// The shared stream's buffer could not serve the client's `Last-Event-ID`
    /// (`--replay-miss=upstream`): the client catches up from the origin on a stream of its own,
    /// then continues on the shared stream from the first event both hold, and its own ends.
    case catchUp
    /// The origin's head for the shared stream does not fit this client's request (`Vary`).
    case varyMismatch
    /// The event-stream answer to a request that is not a shared GET (a POST to a chat or LLM
    /// API, a GET on an `--unshared-route`): one generation for the client whose request it
    /// answers, never requested again.
    case privateGeneration

    /// Found by key and joined by every client with that key.
    public var isShared: Bool { self == .shared }

    /// A name for the status page and logs.
    public var name: String {
        switch self {
        case .shared: return "shared"
        case .catchUp: return "catching up"
        case .varyMismatch: return "vary mismatch"
        case .privateGeneration: return "private generation"
        }
    }
}
