import NIOCore

/// How a subscriber gets into a stream: the pure part of `EventStream.attach` (no loops, no
/// timers), as `StreamLifecycle` is of its lifetime. It decides hit, miss, wait or refusal from
/// the client's `Last-Event-ID` and the replay buffer, keeps the clients that wait for their id
/// to arrive, and keeps every event since the start for the clients that opened the stream.
///
/// `Waiter` is whatever the stream needs to reach a waiting subscriber later; this type only
/// holds it.
struct SubscriberAdmission<Waiter> {
    struct Request {
        /// The client's `Last-Event-ID`; empty counts as none.
        var lastEventID: String?
        /// The client whose request opened the stream: its id went to the origin, not to the
        /// buffer, so the buffer not knowing it is reported as a miss (the origin replays).
        var isCreator = false
        /// The client opened the stream or waited for it to open: owed every event since the
        /// start, as the first ones may be in before its attach runs.
        var fromStart = false
        /// `Lifeline-Resume-From: N`: the client has the generation's first N events (for
        /// streams whose events carry no ids). Sequences count events from 1, so what it is owed
        /// are the events after sequence N.
        var resumeFromCount: UInt64?

        var hasLastEventID: Bool { !(self.lastEventID ?? "").isEmpty }
    }

    enum Decision {
        /// Attach now, writing `events` (oldest first) before the live ones.
        case attach(StreamAttachment.Replay, [EncodedEvent])
        /// Not attached; tell the subscriber why.
        case refuse(StreamRefusal)
        /// Kept until its id arrives or `nextDeadline` passes; the stream arms its timer.
        case wait
    }

    struct Policy {
        var replayMiss: StreamConfiguration.ReplayMissPolicy
        /// How long an id the buffer does not hold yet may be waited for.
        var resumeWait: TimeAmount
        /// The stream is shared: a miss may wait, or catch up on a stream of its own. A stream
        /// that is already a client's own attaches it whatever its id.
        var isShared: Bool
    }

    private struct Waiting {
        let waiter: Waiter
        let request: Request
        let deadline: NIODeadline
    }

    let policy: Policy
    private var backlog: OpeningBacklog
    private var waiting: [Waiting] = []

    init(policy: Policy, backlogByteLimit: Int) {
        self.policy = policy
        self.backlog = OpeningBacklog(byteLimit: backlogByteLimit)
    }

    // MARK: Openers

    /// `count` clients will join as openers; see `EventStream.expectOpeners`.
    mutating func expectOpeners(_ count: Int) { self.backlog.expect(count) }

    /// An expected opener will not attach.
    mutating func openerWillNotJoin() { self.backlog.settle() }

    var openersOwed: Int { self.backlog.owed }

    /// A new event, kept while an opener is owed it.
    mutating func record(_ event: EncodedEvent) { self.backlog.record(event) }

    /// `request` is decided outside (the shared history served it): an opener's claim on the
    /// backlog is settled.
    mutating func settle(_ request: Request) {
        if request.fromStart { self.backlog.settle() }
    }

    // MARK: Deciding

    /// Decides for one subscriber; a `.wait` keeps `waiter` until `eventsArrived` or
    /// `deadlinesPassed` decides again.
    mutating func admit(
        _ waiter: Waiter,
        _ request: Request,
        replay: inout ReplayBuffer,
        isEnded: Bool,
        now: NIODeadline
    ) -> Decision {
        let decision = self.decide(request, replay: &replay, isEnded: isEnded, now: now, mayWait: true)
        if case .wait = decision {
            self.waiting.append(Waiting(waiter: waiter, request: request, deadline: now + self.policy.resumeWait))
        }
        return decision
    }

    /// After new events: the waiters whose id has arrived, with their decision (a hit).
    mutating func eventsArrived(replay: inout ReplayBuffer, now: NIODeadline) -> [(Waiter, Decision)] {
        guard !self.waiting.isEmpty else { return [] }
        var arrived: [Waiting] = []
        self.waiting.removeAll { waiting in
            guard let id = waiting.request.lastEventID, replay.contains(id: id) else { return false }
            arrived.append(waiting)
            return true
        }
        return arrived.map { ($0.waiter, self.decide($0.request, replay: &replay, isEnded: false, now: now, mayWait: false)) }
    }

    /// The waiters whose time is up, with their decision (a miss, unless the id came just now).
    mutating func deadlinesPassed(replay: inout ReplayBuffer, now: NIODeadline) -> [(Waiter, Decision)] {
        var expired: [Waiting] = []
        self.waiting.removeAll { waiting in
            guard waiting.deadline <= now else { return false }
            expired.append(waiting)
            return true
        }
        return expired.map { ($0.waiter, self.decide($0.request, replay: &replay, isEnded: false, now: now, mayWait: false)) }
    }

    /// When the stream's one timer for its waiters should fire; nil when no one waits.
    var nextDeadline: NIODeadline? { self.waiting.lazy.map(\.deadline).min() }

    var waiterCount: Int { self.waiting.count }

    /// The stream ended: every waiter is refused (it looks the key up again).
    mutating func streamEnded() -> [Waiter] {
        defer { self.waiting.removeAll() }
        return self.waiting.map(\.waiter)
    }

    /// A subscriber that is catching up on a stream of its own asks to continue on this one
    /// right after `lastEventID`, the last event it was given: a hit attaches it with exactly
    /// the events that followed; anything else leaves it where it is (`.refuse(.notHeld)`).
    mutating func continuation(after lastEventID: String, replay: inout ReplayBuffer, isEnded: Bool, now: NIODeadline) -> Decision {
        guard !isEnded else { return .refuse(.ended) }
        guard case .hit(let events) = replay.events(after: lastEventID, now: now) else { return .refuse(.notHeld) }
        return .attach(.hit, events)
    }

    private mutating func decide(
        _ request: Request,
        replay: inout ReplayBuffer,
        isEnded: Bool,
        now: NIODeadline,
        mayWait: Bool
    ) -> Decision {
        // An opener settles its claim on the backlog with this decision, unless it waits.
        var settles = request.fromStart
        defer { if settles { self.backlog.settle() } }
        // Taken only where used: a hit or a wait needs neither the backlog nor a copy of the buffer.
        func sinceStart() -> [EncodedEvent] {
            request.fromStart ? (self.backlog.eventsSinceStart ?? replay.all) : []
        }
        if isEnded {
            return .refuse(.ended)
        }
        if let count = request.resumeFromCount {
            guard let missed = replay.events(afterSequence: count) else { return .attach(.miss, []) }
            return .attach(.hit, missed)
        }
        guard request.hasLastEventID, let lastEventID = request.lastEventID else {
            return .attach(.none, sinceStart())
        }
        if request.isCreator {
            return .attach(.miss, sinceStart())
        }
        if case .hit(let missed) = replay.events(after: lastEventID, now: now) {
            return .attach(.hit, missed)
        }
        if mayWait, self.policy.isShared, !replay.evictedAny, self.policy.resumeWait > .zero {
            // Nothing has left the buffer, so the id is not an old one: probably just ahead of
            // what has arrived (a stream opened from another client's id after a restart). Wait
            // for it rather than miss.
            settles = false
            return .wait
        }
        if self.policy.replayMiss == .upstream, self.policy.isShared {
            return .refuse(.needsCatchUp(lastEventID: lastEventID))
        }
        return .attach(.miss, sinceStart())
    }
}
