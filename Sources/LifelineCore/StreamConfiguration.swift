import NIOCore

/// What a stream does with the events it receives: the replay and fan-out policies.
public struct StreamConfiguration: Sendable {
    public enum ReplayMissPolicy: String, Sendable, CaseIterable {
        /// The client gets a stream of its own, opened upstream with its `Last-Event-ID`.
        case upstream
        /// The client joins the live stream.
        case live
    }

    public var replayLimits: ReplayBuffer.Limits
    /// How long a stream outlives its last client.
    public var linger: TimeAmount
    public var replayMiss: ReplayMissPolicy
    /// Name of the in-band event sent to a client whose `Last-Event-ID` the buffer could not serve.
    public var gapEvent: String?
    /// Give id-less events ids of the gateway's own, so that replay works for them.
    public var assignIDs: Bool
    /// Pass the origin's `retry:` lines on to clients (off when the gateway sets its own).
    public var forwardOriginRetry: Bool
    /// How long a client whose `Last-Event-ID` the buffer does not hold waits for it to arrive
    /// before it counts as a miss: after a restart the first client opens the stream from its id,
    /// and the others' ids, a little ahead, come in with the origin's replay a moment later.
    public var resumeWait: TimeAmount
    /// How long a private generation is kept for resumes after it ended, and runs on after its
    /// client left.
    public var resumeWindow: TimeAmount = .minutes(5)
    /// What a private generation keeps for resumes (`--private-stream-bytes`): every event, up to
    /// this many bytes (the oldest go first; a resume from before them is a miss).
    public var privateStreamBytes: Int = 4 << 20
    /// Most clients reading one private generation at once (its own and resumes): a token that
    /// leaked cannot fan one generation out to a crowd.
    public var privateStreamReaders: Int = 8

    /// The bounds of a stream's ring, by how it is shared.
    func replayLimits(for sharing: StreamSharing) -> ReplayBuffer.Limits {
        guard sharing == .privateGeneration else { return self.replayLimits }
        // Age is bounded by the resume window instead: a generation is kept whole while it lasts.
        return .init(events: .max, bytes: self.privateStreamBytes, age: .hours(24 * 365))
    }

    public init(
        replayLimits: ReplayBuffer.Limits = .init(),
        linger: TimeAmount = .seconds(30),
        replayMiss: ReplayMissPolicy = .upstream,
        gapEvent: String? = nil,
        assignIDs: Bool = false,
        forwardOriginRetry: Bool = true,
        resumeWait: TimeAmount = .seconds(2)
    ) {
        self.resumeWait = resumeWait
        self.replayLimits = replayLimits
        self.linger = linger
        self.replayMiss = replayMiss
        self.gapEvent = gapEvent
        self.assignIDs = assignIDs
        self.forwardOriginRetry = forwardOriginRetry
    }
}
