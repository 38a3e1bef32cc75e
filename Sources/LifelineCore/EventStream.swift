import Logging
import NIOCore
import SSE

/// One upstream response shared by every client with the same key: its replay buffer, its
/// fan-out to subscribers on every event loop, and its lifetime (linger after the last client).
///
/// A stream lives on one event loop; every method runs there unless it says otherwise. Events
/// are encoded once and handed to each other loop once per batch; the loop writes them to its
/// own subscribers.
public final class EventStream: UpstreamFeedDelegate, HistoryFollowerDelegate, @unchecked Sendable {
    public enum UpstreamState: String, Sendable {
        case connecting, connected, reconnecting, ended
        /// Another instance holds the origin connection; this stream follows the shared history.
        case following
    }

    public let key: StreamKey
    public let eventLoop: EventLoop
    /// Whether every client with the key joins this stream, or why only one client has it.
    public let sharing: StreamSharing
    let configuration: StreamConfiguration
    private let logger: Logger
    private let allocator = ByteBufferAllocator()
    private weak var hub: StreamHub?

    private var lifecycle: StreamLifecycle
    private var lingerTimer: Scheduled<Void>?
    private var replay: ReplayBuffer
    private var ingest: EventIngest
    private var loopSets: [ObjectIdentifier: LoopSet] = [:]
    private var upstream: UpstreamFeed?
    /// The origin's last `retry:` value, passed on to clients that join later.
    private var originRetry: Int?
    /// Headers of the origin's latest response (CORS and the like) that every subscriber's
    /// response repeats; they reach subscribers in their attachment, by value. The front end has
    /// already removed what must not be shared.
    private var originHeaders: [(String, String)]
    /// Which clients the origin's head fits (its `Vary`); others do not join.
    public let variant: StreamVariant

    public private(set) var upstreamState: UpstreamState = .connecting
    /// When `upstreamState` last changed.
    public private(set) var upstreamStateSince: NIODeadline
    public private(set) var eventsReceived = 0
    /// Event deliveries to this stream's subscribers (live events times subscribers, plus replays).
    public private(set) var eventsSent = 0
    public private(set) var lastUpstreamError: String?
    /// Origin connections that ended and were reconnected (as `lifeline_upstream_reconnects_total`).
    public private(set) var reconnects = 0
    /// The origin's being down has been noted on the status page since it was last up.
    private var outageNoted = false
    /// For the status page: a name that stays the same for this stream's life and differs from
    /// every earlier stream of the same key.
    public let id: String
    public let createdAt: NIODeadline
    /// The path (query values masked) of the client request that opened the stream, as the
    /// status page shows it; the key holds the origin's.
    public let displayPath: String
    /// The counters of this stream's loop, if the gateway keeps any.
    private let counters: LoopCounters?
    private let onEnd: (@Sendable () -> Void)?
    private let onComplete: (@Sendable (Int) -> Void)?

    /// A subscriber that has asked to attach. Held strongly (see `StreamMembership.subscriber`):
    /// one that has gone meanwhile is told of its attach or refusal all the same, and leaves.
    struct Joiner {
        let subscriber: NIOLoopBound<StreamSubscriber>
        let loop: EventLoop
        let lastEventID: String?
    }

    /// Hit, miss, wait or refusal for each attach; the clients waiting for their id; the events
    /// since the start while openers are owed them.
    private var admission: SubscriberAdmission<Joiner>
    /// One timer per stream, for its earliest waiter.
    /// Made when a client first waits: most streams never need one.
    private var resumeTimer: EarliestDeadlineTimer?
    /// With a shared history (`--redis`): who feeds the stream, and the handles that do it.
    private var ownership: StreamOwnership
    private var history: StreamHistory?
    private var following: HistoryFollowing?
    /// Opens the origin for this stream, resuming from an id (the owner's job).
    private var originOpener: ((String?) -> UpstreamFeed)?
    /// The stream's one timer for its lease: renew it, or look whether it is free.
    private var leaseTimer: RepeatedTask?
    /// The last `id` the stream's events carried: where it resumes when it reads the origin itself.
    private var lastCarriedID: String?
    /// The origin's headers changed since they were last stored.
    private var originHeadersUnstored = true
    /// The id the stream was opened for (the first client's), when nothing else is known.
    private let openerResumeID: String?
    /// Which instance owns the stream (for the status page).
    public private(set) var ownerName: String?
    /// Clients the shared history served, until the stream reaches its last event.
    private var pendingSplices: [HistorySplice] = []
    /// A private generation whose origin response is over: kept for resumes (which get what
    /// they missed, then this end) until `completionTimer` ends the stream.
    private var completion: StreamEndReason?
    private var completionTimer: Scheduled<Void>?
    /// A private generation kept in an archive too (`--redis`): its events and its end go there.
    private var recording: GenerationRecording?

    /// For a `.catchUp` stream: its progress towards the shared stream.
    private var catchUp: CatchUpSplice
    /// The one subscriber of a `.catchUp` stream, for handing it to the shared stream.
    private var catchUpSubscriber: Joiner?

    private struct LoopSet {
        let set: LoopSubscribers
        var count: Int
    }

    /// What the origin's first answer (or the request that opened the stream) decided.
    public struct Opening {
        /// The `Last-Event-ID` the upstream is first opened with, if any.
        public var resumeID: String?
        /// The origin's headers every subscriber's response repeats.
        public var originHeaders: [(String, String)]
        /// Which clients the origin's head fits (its `Vary`).
        public var variant: StreamVariant

        public init(resumeID: String? = nil, originHeaders: [(String, String)] = [], variant: StreamVariant = .any) {
            self.resumeID = resumeID
            self.originHeaders = originHeaders
            self.variant = variant
        }
    }

    /// Where the stream reports: the hub it leaves when it ends (and asks for the shared stream
    /// when it catches up), its loop's counters, its logger, and how the status page names it.
    public struct Reporting {
        public var hub: StreamHub?
        public var counters: LoopCounters?
        /// The path (query values masked) of the client request that opened it; the key's by default.
        public var displayPath: String?
        public var logger: Logger
        /// Called on the stream's loop when it ends (a private generation leaves its registry).
        public var onEnd: (@Sendable () -> Void)?
        /// Called on the stream's loop when a private generation's origin response is over, with
        /// the bytes it keeps for resumes (counted against all kept generations' memory).
        public var onComplete: (@Sendable (Int) -> Void)?

        public init(hub: StreamHub? = nil, counters: LoopCounters? = nil, displayPath: String? = nil,
                    logger: Logger = Logger(label: "lifeline.stream"), onEnd: (@Sendable () -> Void)? = nil,
                    onComplete: (@Sendable (Int) -> Void)? = nil) {
            self.hub = hub
            self.counters = counters
            self.displayPath = displayPath
            self.logger = logger
            self.onEnd = onEnd
            self.onComplete = onComplete
        }
    }

    public init(
        key: StreamKey,
        eventLoop: EventLoop,
        configuration: StreamConfiguration,
        sharing: StreamSharing = .shared,
        opening: Opening = Opening(),
        reporting: Reporting = Reporting()
    ) {
        let (resumeID, originHeaders, variant) = (opening.resumeID, opening.originHeaders, opening.variant)
        let (hub, counters, displayPath) = (reporting.hub, reporting.counters, reporting.displayPath)
        self.displayPath = displayPath ?? key.displayPath
        precondition(counters.map { $0.eventLoop === eventLoop } ?? true, "a stream counts on its own loop")
        self.key = key
        self.counters = counters
        self.onEnd = reporting.onEnd
        self.onComplete = reporting.onComplete
        self.createdAt = eventLoop.now
        self.upstreamStateSince = self.createdAt
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.sharing = sharing
        self.originHeaders = originHeaders
        self.variant = variant
        self.hub = hub
        let limits = configuration.replayLimits(for: sharing)
        self.replay = ReplayBuffer(limits: limits, baseID: resumeID)
        self.admission = SubscriberAdmission(
            policy: .init(replayMiss: configuration.replayMiss, resumeWait: configuration.resumeWait, isShared: sharing.isShared),
            backlogByteLimit: limits.bytes
        )
        // Assigned ids are the gateway's own per stream: a catching-up stream's never match.
        self.catchUp = CatchUpSplice(
            enabled: sharing == .catchUp && !configuration.assignIDs,
            holdLimit: configuration.replayLimits.bytes
        )
        // Random per incarnation, so that a client holding an assigned id from an earlier
        // incarnation of this stream misses instead of matching a different event.
        let incarnation = String(UInt32.random(in: 0x1000_0000...UInt32.max), radix: 36)
        self.id = incarnation
        self.ingest = EventIngest(assignIDs: configuration.assignIDs, incarnation: incarnation)
        // A private generation runs on after its client left, for a resume to join.
        let linger = sharing.isShared ? configuration.linger : sharing == .privateGeneration ? configuration.resumeWindow : .zero
        self.lifecycle = StreamLifecycle(linger: linger)
        self.ownership = StreamOwnership(shared: false, timing: .init(lease: .seconds(5)))
        self.openerResumeID = resumeID
        var logger = reporting.logger
        logger[metadataKey: "stream"] = "\(key)"
        self.logger = logger
    }

    /// Takes the upstream that feeds this stream and starts the wait for the first subscriber.
    public func start(upstream: UpstreamFeed) {
        self.eventLoop.preconditionInEventLoop()
        self.upstream = upstream
        self.apply(self.lifecycle.started())
    }

    /// How a stream of a shared gateway starts: its history, the opener's claim, and how to open
    /// the origin when it becomes the owner.
    public struct SharedStart {
        public var history: StreamHistory
        /// The answer to the claim the opening client's request made.
        public var claim: HistoryClaim
        public var lease: TimeAmount
        /// Opens the origin from an id and delivers to the stream (the stream is the delegate).
        public var openOrigin: (_ resumeID: String?, _ stream: EventStream) -> UpstreamFeed

        public init(history: StreamHistory, claim: HistoryClaim, lease: TimeAmount,
                    openOrigin: @escaping (_ resumeID: String?, _ stream: EventStream) -> UpstreamFeed) {
            self.history = history
            self.claim = claim
            self.lease = lease
            self.openOrigin = openOrigin
        }
    }

    /// Starts a stream of a shared gateway: as the owner (the origin opens), a follower of the
    /// history, or on its own when the store could not be asked.
    public func start(shared start: SharedStart) {
        self.eventLoop.preconditionInEventLoop()
        self.history = start.history
        self.ownership = StreamOwnership(shared: true, timing: .init(lease: start.lease))
        let opener = start.openOrigin
        self.originOpener = { [unowned self] resumeID in opener(resumeID, self) }
        if case .follower(let owner, _, let headers) = start.claim {
            self.originHeaders = headers
            self.ownerName = owner
        }
        self.apply(self.lifecycle.started())
        self.leaseTimer = self.eventLoop.scheduleRepeatedTask(
            initialDelay: self.ownership.timing.check, delay: self.ownership.timing.check
        ) { [weak self] _ in self?.leaseCheckDue() }
        self.claimAnswered(start.claim)
    }

    /// Records this private generation's events and end in an archive as well (before `start`).
    public func record(to recording: GenerationRecording) {
        self.eventLoop.preconditionInEventLoop()
        precondition(self.sharing == .privateGeneration, "only private generations are archived")
        self.recording = recording
    }

    /// How a private generation kept by another instance (or by this one before a restart) is
    /// served here: what the archive holds, then the rest as it is stored.
    public struct ArchivedStart {
        public var generation: ArchivedGeneration
        /// Follows the archive after a sequence; the stream is the delegate.
        public var follow: (_ after: UInt64, _ stream: EventStream) -> HistoryFollowing

        public init(generation: ArchivedGeneration, follow: @escaping (_ after: UInt64, _ stream: EventStream) -> HistoryFollowing) {
            self.generation = generation
            self.follow = follow
        }
    }

    /// Starts a private generation read from an archive: its stored events are in the replay
    /// before any resume attaches; an ended one is kept for the rest of its window, a running
    /// one follows the archive to its end.
    public func start(archived start: ArchivedStart) {
        self.eventLoop.preconditionInEventLoop()
        precondition(self.sharing == .privateGeneration, "only private generations are archived")
        let generation = start.generation
        if let first = generation.events.first, first.sequence > 1 {
            self.ingest.skip(through: first.sequence - 1)
        }
        self.apply(self.lifecycle.started())
        self.setUpstreamState(.following)
        self.historyReceived(generation.events)
        if let end = generation.end {
            self.generationCompleted(end, keptFor: generation.keptFor)
        } else {
            self.following = start.follow(self.ingest.nextSequence - 1, self)
        }
    }

    /// `count` clients will join as the stream's openers (`isCreator` or `waitedForOpening`),
    /// each owed every event since the start. Call it on the stream's loop before the upstream
    /// can deliver anything; each of them then attaches or calls ``openerWillNotJoin()``.
    public func expectOpeners(_ count: Int) {
        self.eventLoop.preconditionInEventLoop()
        self.admission.expectOpeners(count)
    }

    /// An expected opener left (or went elsewhere) before attaching; callable from any loop.
    public func openerWillNotJoin() {
        if self.eventLoop.inEventLoop {
            self.admission.openerWillNotJoin()
        } else {
            self.eventLoop.execute { self.admission.openerWillNotJoin() }
        }
    }

    // Read on the stream's loop (tests and the status page).
    /// Openers that have neither attached nor said they will not.
    public var openersOwed: Int { self.eventLoop.assertInEventLoop(); return self.admission.openersOwed }
    public var subscriberCount: Int { self.eventLoop.assertInEventLoop(); return self.lifecycle.subscribers }
    public var replayCount: Int { self.eventLoop.assertInEventLoop(); return self.replay.count }
    public var replayBytes: Int { self.eventLoop.assertInEventLoop(); return self.replay.byteCount }
    public var duplicatesDropped: Int { self.eventLoop.assertInEventLoop(); return self.ingest.duplicatesDropped }
    public var isEnded: Bool { self.eventLoop.assertInEventLoop(); return self.lifecycle.isEnded }

    // MARK: Subscribers

    /// Adds a subscriber; callable from any event loop. The subscriber hears back on its own loop
    /// through `streamAttached` or `streamRefused`.
    ///
    /// - Parameters:
    ///   - lastEventID: the client's `Last-Event-ID`, if it sent one.
    ///   - isCreator: the client whose request opened the stream. Its id went to the origin, not
    ///     to the buffer, so it is reported as a miss.
    ///   - waitedForOpening: the client asked before the stream existed. Like the creator, it is
    ///     owed every event since the stream began: the first ones may be buffered before its
    ///     attach runs (they can arrive with the origin's response head).
    public func attach(
        _ subscriber: StreamSubscriber,
        lastEventID: String?,
        resumeFromCount: UInt64? = nil,
        isCreator: Bool = false,
        waitedForOpening: Bool = false
    ) {
        let joiner = Joiner(
            subscriber: NIOLoopBound(subscriber, eventLoop: subscriber.eventLoop),
            loop: subscriber.eventLoop,
            lastEventID: lastEventID
        )
        let request = SubscriberAdmission<Joiner>.Request(
            lastEventID: lastEventID,
            isCreator: isCreator,
            fromStart: isCreator || waitedForOpening,
            resumeFromCount: resumeFromCount
        )
        // Always a new task, also on the same loop: the caller is usually inside a channel
        // handler, and the subscriber's callbacks must not re-enter it.
        self.eventLoop.execute {
            if self.sharing == .privateGeneration, self.lifecycle.subscribers >= self.configuration.privateStreamReaders {
                return joiner.loop.execute { joiner.subscriber.value.streamRefused(.busy) }
            }
            if let history = self.history, let lastEventID, !lastEventID.isEmpty, !isCreator, !self.lifecycle.isEnded,
                case .miss = self.replay.events(after: lastEventID, now: self.eventLoop.now)
            {
                // The ring does not know the id; the shared history may (the client was on
                // another instance, or this one restarted).
                history.events(after: lastEventID) { lookup in
                    self.resumeLookedUp(lookup, joiner: joiner, request: request)
                }
                return
            }
            let decision = self.admission.admit(
                joiner, request, replay: &self.replay, isEnded: self.lifecycle.isEnded, now: self.eventLoop.now
            )
            self.carryOut(decision, for: joiner, kind: .first)
        }
    }

    /// The shared history's answer for a client whose id the ring did not know. A hit is spliced
    /// with the ring by sequence: the history's events, then the ring's from the next sequence on,
    /// once the stream has reached the history's last one (a follower may be a read behind).
    private func resumeLookedUp(_ lookup: HistoryLookup, joiner: Joiner, request: SubscriberAdmission<Joiner>.Request) {
        self.eventLoop.preconditionInEventLoop()
        if case .hit(let epoch, let sequence, let stored) = lookup, !self.lifecycle.isEnded, epoch == self.ownership.localEpoch {
            let splice = HistorySplice(joiner: joiner, request: request, stored: stored, through: stored.last?.sequence ?? sequence)
            if self.local.lastSequence >= splice.through {
                return self.complete(splice)
            }
            self.pendingSplices.append(splice)
            return
        }
        self.admitWithoutHistory(joiner, request)
    }

    /// The ring's answer for a client the shared history did not serve.
    private func admitWithoutHistory(_ joiner: Joiner, _ request: SubscriberAdmission<Joiner>.Request) {
        let decision = self.admission.admit(
            joiner, request, replay: &self.replay, isEnded: self.lifecycle.isEnded, now: self.eventLoop.now
        )
        self.carryOut(decision, for: joiner, kind: .first)
    }

    /// A client served from the shared history, waiting for the stream to reach the history's
    /// last event before it is spliced.
    struct HistorySplice {
        let joiner: Joiner
        let request: SubscriberAdmission<Joiner>.Request
        let stored: [EncodedEvent]
        let through: UInt64
    }

    private func complete(_ splice: HistorySplice) {
        guard !self.lifecycle.isEnded, let after = self.replay.events(afterSequence: splice.through) else {
            // The ring no longer holds what follows the history's part: it cannot be spliced.
            return self.admitWithoutHistory(splice.joiner, splice.request)
        }
        self.admission.settle(splice.request)
        self.counters?.values.historyResumeHits += 1
        self.add(splice.joiner, status: .hit, events: splice.stored + after, kind: .first)
    }

    /// After new events (or a change of source): the splices the stream has now reached go in;
    /// with `giveUp` (the history stopped feeding the stream) the rest are decided by the ring.
    private func completeSplices(giveUp: Bool = false) {
        guard !self.pendingSplices.isEmpty else { return }
        let reached = self.local.lastSequence
        var waiting: [HistorySplice] = []
        for splice in self.pendingSplices {
            if splice.through <= reached {
                self.complete(splice)
            } else if giveUp {
                self.admitWithoutHistory(splice.joiner, splice.request)
            } else {
                waiting.append(splice)
            }
        }
        self.pendingSplices = waiting
    }

    /// Acts on one admission decision for `joiner`.
    private func carryOut(_ decision: SubscriberAdmission<Joiner>.Decision, for joiner: Joiner, kind: StreamAttachment.Kind) {
        switch decision {
        case .wait:
            self.armResumeTimer()
        case .refuse(let refusal):
            joiner.loop.execute { joiner.subscriber.value.streamRefused(refusal) }
        case .attach(let status, let events):
            self.add(joiner, status: status, events: events, kind: kind)
        }
    }

    private func add(_ joiner: Joiner, status: StreamAttachment.Replay, events: [EncodedEvent], kind: StreamAttachment.Kind) {
        let loop = joiner.loop
        self.eventsSent += events.count
        self.apply(self.lifecycle.subscriberJoined())
        if self.sharing == .catchUp {
            self.catchUpSubscriber = joiner
        }

        let loopID = ObjectIdentifier(loop)
        let loopSet: LoopSubscribers
        if let existing = self.loopSets[loopID] {
            loopSet = existing.set
            self.loopSets[loopID]!.count += 1
        } else {
            loopSet = LoopSubscribers(eventLoop: loop)
            self.loopSets[loopID] = LoopSet(set: loopSet, count: 1)
        }
        // Everything the subscriber needs from the stream goes by value, taken here.
        let gapEvent = status == .miss ? self.gapEvent(for: joiner.lastEventID ?? "") : nil
        let completion = self.completion
        let retry = self.originRetry
        let headers = self.originHeaders
        let attach = { (subscriber: StreamSubscriber) in
            // One that has gone meanwhile leaves at once, so that the stream counts right.
            let membership = StreamMembership(stream: self, loopSet: loopSet, subscriber: subscriber)
            loopSet.add(membership)
            subscriber.streamAttached(
                StreamAttachment(
                    membership: membership,
                    kind: kind,
                    replayStatus: status,
                    replay: events,
                    originRetry: retry,
                    gapEvent: gapEvent,
                    originHeaders: headers
                )
            )
            // A generation that is over: what was missed, then its end.
            if let completion {
                subscriber.streamEnded(completion)
            }
        }
        if loop === self.eventLoop {
            // Same loop: add now, so that no batch can slip between the replay snapshot and the
            // subscriber's first live chunk.
            attach(joiner.subscriber.value)
        } else {
            // Another loop: tasks run in the order they were submitted, so this add runs before
            // any batch this stream hands that loop later.
            let sendableAttach = UncheckedSendableBox(attach)
            loop.execute { sendableAttach.value(joiner.subscriber.value) }
        }
        // A catching-up client may already have what the shared stream holds.
        if self.sharing == .catchUp, let last = events.last {
            self.catchUpDelivered(lastEventCarriesID: last.id)
        }
    }

    // MARK: Clients waiting for their id

    /// After new events: the waiters whose id has arrived attach now (a hit).
    private func admitResumeWaiters() {
        guard self.admission.waiterCount > 0 else { return }
        for (joiner, decision) in self.admission.eventsArrived(replay: &self.replay, now: self.eventLoop.now) {
            self.carryOut(decision, for: joiner, kind: .first)
        }
        if self.admission.waiterCount == 0 {
            self.resumeTimer?.cancel()
        }
    }

    /// One timer per stream, for its earliest waiter.
    private func armResumeTimer() {
        guard let deadline = self.admission.nextDeadline else {
            self.resumeTimer?.cancel()
            return
        }
        if self.resumeTimer == nil {
            self.resumeTimer = EarliestDeadlineTimer(eventLoop: self.eventLoop) { [weak self] in self?.resumeDeadlinePassed() }
        }
        self.resumeTimer?.schedule(at: deadline)
    }

    /// A waiter whose time is up is a miss.
    private func resumeDeadlinePassed() {
        for (joiner, decision) in self.admission.deadlinesPassed(replay: &self.replay, now: self.eventLoop.now) {
            self.carryOut(decision, for: joiner, kind: .first)
        }
        self.armResumeTimer()
    }

    func subscriberLeft(loop: ObjectIdentifier) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded else { return }
        self.loopSets[loop]?.count -= 1
        self.apply(self.lifecycle.subscriberLeft())
    }

    private func gapEvent(for lastEventID: String) -> ByteBuffer? {
        guard let name = self.configuration.gapEvent else { return nil }
        var buffer = self.allocator.buffer(capacity: 64)
        // The id is the client's own header value; header values cannot hold CR or LF.
        SSESerializer.write(SSEEvent(type: name, data: lastEventID), into: &buffer)
        return buffer
    }

    // MARK: Catching up, then joining

    /// A `.catchUp` stream's subscriber has been sent everything up to an event; when that event
    /// carries an id, ask the shared stream whether it holds it.
    private func catchUpDelivered(lastEventCarriesID id: String?) {
        guard case .ask(let lastEventID) = self.catchUp.delivered(lastEventID: id) else { return }
        self.askToContinue(after: lastEventID)
    }

    private func askToContinue(after lastEventID: String) {
        guard let joiner = self.catchUpSubscriber,
            let shared = self.hub?.stream(for: self.key), shared !== self
        else {
            // No shared stream to join (it ended): go on alone, try again later.
            return self.catchUpAnswered(joined: false)
        }
        shared.continueCatchUp(joiner, after: lastEventID, from: self)
    }

    /// On the shared stream: `joiner` caught up on `catchUp` as far as `lastEventID`; if this
    /// stream holds that id, the subscriber continues here with exactly what followed it.
    private func continueCatchUp(_ joiner: Joiner, after lastEventID: String, from catchUp: EventStream) {
        self.eventLoop.execute {
            let decision = self.admission.continuation(
                after: lastEventID, replay: &self.replay, isEnded: self.lifecycle.isEnded, now: self.eventLoop.now
            )
            let joined: Bool
            if case .attach(let status, let events) = decision {
                self.counters?.values.catchUpsJoined += 1
                self.add(joiner, status: status, events: events, kind: .continuation)
                joined = true
            } else {
                joined = false
            }
            catchUp.eventLoop.execute { catchUp.catchUpAnswered(joined: joined) }
        }
    }

    /// The shared stream's answer. Joined: the subscriber leaves this stream when it gets its
    /// continuation, and this stream ends with it; what was held back is the shared stream's to
    /// send. Not held: what was held back goes out now.
    private func catchUpAnswered(joined: Bool) {
        self.eventLoop.preconditionInEventLoop()
        switch self.catchUp.answered(joined: joined) {
        case .none:
            break
        case .release(let held, let eventCount, let askAgainAfter):
            self.deliver(held, eventCount: eventCount)
            if let askAgainAfter {
                self.askToContinue(after: askAgainAfter)
            }
        }
    }

    // MARK: Upstream

    public func upstreamConnected(isReconnect: Bool) {
        self.eventLoop.preconditionInEventLoop()
        if self.upstreamState == .reconnecting, self.lastUpstreamError != nil {
            self.counters?.note(.originUp, "origin answered again", stream: self.displayPath)
        }
        self.setUpstreamState(.connected)
        self.outageNoted = false
        if isReconnect {
            self.ingest.upstreamReconnected()
        }
        self.logger.debug("upstream connected", metadata: ["reconnect": "\(isReconnect)"])
    }

    public func upstreamReceived(_ outputs: [SSEParser.Output]) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded else { return }
        let now = self.eventLoop.now
        if self.history != nil {
            let (accept, actions) = self.ownership.originBatchArrived(now: now, local: self.local)
            self.run(actions)
            guard accept else { return }
        }
        var blocks: [ByteBuffer] = []
        var eventCount = 0
        /// The id the batch's last event carries (nil if it carries none).
        var lastCarriedID: String?
        blocks.reserveCapacity(outputs.count)
        var recorded: [EncodedEvent] = []
        for output in outputs {
            switch output {
            case .retry(let milliseconds):
                self.originRetry = milliseconds
                guard self.configuration.forwardOriginRetry else { continue }
                var buffer = self.allocator.buffer(capacity: 16)
                SSESerializer.writeRetry(milliseconds, into: &buffer)
                blocks.append(buffer)
            case .event(let event):
                guard let encoded = self.ingest.ingest(event, replay: self.replay, now: now, allocator: self.allocator)
                else { continue }
                self.replay.append(encoded, now: now)
                self.admission.record(encoded)
                if self.recording != nil { recorded.append(encoded) }
                if let id = encoded.id { self.lastCarriedID = id }
                self.eventsReceived += 1
                self.counters?.values.eventsReceived += 1
                eventCount += 1
                lastCarriedID = encoded.id
                blocks.append(encoded.bytes)
            }
        }
        if !blocks.isEmpty {
            switch self.catchUp.batchArrived(blocks, eventCount: eventCount, lastEventID: lastCarriedID) {
            case .deliver:
                self.deliver(blocks, eventCount: eventCount)
                if eventCount > 0, self.lifecycle.subscribers > 0 {
                    self.catchUpDelivered(lastEventCarriesID: lastCarriedID)
                }
            case .hold, .drop:
                break
            case .overflow:
                self.logger.info("catching-up client too far ahead of the shared stream's answer; letting it reconnect")
                self.end(.catchUpOverflow)
                return
            }
        }
        if let recording = self.recording, !recorded.isEmpty {
            recording.append(recorded, keptFrom: self.replay.firstSequence ?? self.ingest.nextSequence)
        }
        // After the fan-out: a waiter that gets in now has these events in its replay.
        if eventCount > 0 {
            self.admitResumeWaiters()
            if self.history != nil {
                self.completeSplices()
                self.run(self.ownership.eventsArrived(local: self.local))
            }
        }
    }

    /// Sends one batch to every subscriber.
    private func deliver(_ blocks: [ByteBuffer], eventCount: Int) {
        guard !blocks.isEmpty, self.lifecycle.subscribers > 0 else { return }
        self.eventsSent += eventCount * self.lifecycle.subscribers
        self.fanOut(StreamChunk(joining: blocks, eventCount: eventCount, allocator: self.allocator))
    }

    public func upstreamResponseHeaders(_ headers: [(String, String)]) {
        self.eventLoop.preconditionInEventLoop()
        self.originHeaders = headers
        self.originHeadersUnstored = true
    }

    public func upstreamDisconnected(reason: String, kind: UpstreamDisconnect) {
        self.eventLoop.preconditionInEventLoop()
        self.setUpstreamState(.reconnecting)
        self.lastUpstreamError = reason
        self.reconnects += 1
        self.outageNoted = kind != .ended
        if let counters = self.counters {
            counters.values.upstreamReconnects[kind] += 1
            counters.note(kind == .ended ? .originEnded : .originDown, reason, stream: self.displayPath)
        }
        self.logger.info("upstream disconnected; reconnecting", metadata: ["reason": "\(reason)"])
    }

    public func upstreamAttemptFailed(reason: String) {
        self.eventLoop.preconditionInEventLoop()
        self.lastUpstreamError = reason
        if !self.outageNoted {
            self.outageNoted = true
            self.counters?.note(.originDown, reason, stream: self.displayPath)
        }
    }

    public func upstreamEnded(_ reason: StreamEndReason) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded else { return }
        if self.sharing == .privateGeneration, reason == .originFinished || reason == .originBroke {
            return self.generationCompleted(reason)
        }
        self.logger.info("upstream ended", metadata: ["reason": "\(reason)"])
        self.upstream = nil
        self.end(reason)
    }

    /// A private generation's origin response is over: its clients' responses end the same way,
    /// and the stream is kept for `--resume-window` for resumes.
    private func generationCompleted(_ reason: StreamEndReason, keptFor: TimeAmount? = nil) {
        self.upstream = nil
        self.following?.stop()
        self.following = nil
        self.recording?.finish(reason)
        self.recording = nil
        self.completion = reason
        self.setUpstreamState(.ended)
        for loopSet in self.loopSets.values {
            let set = loopSet.set
            if set.eventLoop === self.eventLoop {
                set.endEach(reason)
            } else {
                set.eventLoop.execute { set.endEach(reason) }
            }
        }
        self.completionTimer = self.eventLoop.scheduleTask(in: keptFor ?? self.configuration.resumeWindow) { [weak self] in
            self?.end(nil)
        }
        self.onComplete?(self.replay.byteCount)
    }

    /// Forgets a private generation kept for resumes (all kept generations are over their memory
    /// bound, and this one ended first); callable from any loop.
    public func forgetKept() {
        self.eventLoop.execute {
            guard let completion = self.completion else { return }
            self.end(completion)
        }
    }

    private func setUpstreamState(_ state: UpstreamState) {
        guard state != self.upstreamState else { return }
        self.upstreamState = state
        self.upstreamStateSince = self.eventLoop.now
    }

    /// What the status page shows of this stream, taken on its loop.
    public func status() -> StreamStatus {
        self.eventLoop.preconditionInEventLoop()
        let now = self.eventLoop.now
        func seconds(_ amount: TimeAmount) -> Double { Double(amount.nanoseconds) / 1e9 }
        let limits = self.replay.limits
        return StreamStatus(
            id: self.id,
            path: self.displayPath,
            origin: self.key.origin + self.key.displayPath,
            sharing: self.sharing,
            subscribers: self.lifecycle.subscribers,
            upstreamState: self.upstreamState.rawValue,
            upstreamStateSeconds: seconds(now - self.upstreamStateSince),
            reconnects: self.reconnects,
            lastError: self.lastUpstreamError,
            eventsReceived: self.eventsReceived,
            eventsSent: self.eventsSent,
            replayEvents: self.replay.count,
            replayBytes: self.replay.byteCount,
            replayAgeSeconds: self.replay.oldestReceivedAt.map { seconds(now - $0) } ?? 0,
            replayEventLimit: limits.events,
            replayByteLimit: limits.bytes,
            replayAgeLimitSeconds: seconds(limits.age),
            ageSeconds: seconds(now - self.createdAt),
            role: self.ownership.role,
            owner: self.ownership.role == .owner ? self.history.map { _ in "self" } : self.ownerName
        )
    }

    private func fanOut(_ chunk: StreamChunk) {
        for loopSet in self.loopSets.values where loopSet.count > 0 {
            let set = loopSet.set
            if set.eventLoop === self.eventLoop {
                set.deliver(chunk)
            } else {
                set.eventLoop.execute { set.deliver(chunk) }
            }
        }
    }

    // MARK: Shared history

    /// What the ownership machine needs to know of this stream.
    private var local: StreamOwnership.Local {
        .init(lastSequence: self.replay.last?.sequence ?? (self.ingest.nextSequence - 1),
              lastEventID: self.lastCarriedID ?? self.openerResumeID,
              firstHeldSequence: self.replay.firstSequence)
    }

    private func leaseCheckDue() {
        guard !self.lifecycle.isEnded else { return }
        self.run(self.ownership.checkTimerFired(now: self.eventLoop.now, local: self.local))
    }

    private func claimAnswered(_ claim: HistoryClaim) {
        switch claim {
        case .follower(let owner, let position, let headers):
            self.ownerName = owner
            if self.replay.isEmpty {
                self.originHeaders = headers
                // A new follower's clients start after the history's last event: were it to read
                // the origin itself, that is where it would resume.
                if self.lastCarriedID == nil { self.lastCarriedID = position.lastEventID }
            }
        case .owner:
            self.ownerName = nil
        case .unavailable:
            break
        }
        self.run(self.ownership.claimAnswered(claim, now: self.eventLoop.now, local: self.local, openerResumeID: self.openerResumeID))
    }

    /// Runs what the ownership machine decided.
    private func run(_ actions: [StreamOwnership.Action]) {
        guard let history = self.history else { return }
        for action in actions {
            switch action {
            case .claim(let startFresh, let nextSequence):
                history.claim(startFresh: startFresh, nextSequence: nextSequence) { [self] claim in
                    if self.lifecycle.isEnded {
                        if case .owner(let token, _) = claim { history.release(token: token) }
                        return
                    }
                    self.claimAnswered(claim)
                }
            case .renew(let token):
                let sentAt = self.eventLoop.now
                history.renew(token: token) { [self] renewed in
                    guard !self.lifecycle.isEnded else { return }
                    self.run(self.ownership.renewAnswered(renewed, sentAt: sentAt, now: self.eventLoop.now, local: self.local))
                }
            case .openOrigin(let resumeID, let nextSequence, let epoch):
                self.upstream?.stop()
                self.ingest.renumber(from: nextSequence, incarnation: epoch ?? self.id)
                if !self.replay.isEmpty {
                    // What the origin replays that the ring has is dropped.
                    self.ingest.upstreamReconnected()
                }
                self.setUpstreamState(.connecting)
                self.upstream = self.originOpener?(resumeID)
            case .stopOrigin:
                self.upstream?.stop()
                self.upstream = nil
            case .follow(let sequence, let epoch, let resetRing):
                self.following?.stop()
                if resetRing {
                    self.replay = ReplayBuffer(limits: self.configuration.replayLimits, startsMidStream: true)
                } else if self.replay.isEmpty {
                    self.replay = ReplayBuffer(limits: self.configuration.replayLimits, startsMidStream: sequence > 0)
                }
                self.ingest.renumber(from: sequence + 1, incarnation: epoch)
                self.setUpstreamState(.following)
                self.following = history.follow(after: sequence, epoch: epoch, delegate: self)
            case .stopFollowing:
                self.following?.stop()
                self.following = nil
            case .append(let after, let token, let epoch):
                guard let events = self.replay.events(afterSequence: after), let last = events.last else {
                    // Unstored events were evicted before they could be stored: the history
                    // cannot continue from here.
                    self.run(self.ownership.appendAnswered(.unavailable("events evicted before they were stored"),
                                                           storedThrough: after, now: self.eventLoop.now, local: self.local))
                    continue
                }
                let headers = self.originHeadersUnstored ? self.originHeaders : nil
                self.originHeadersUnstored = false
                history.append(events, token: token, epoch: epoch, originHeaders: headers) { [self] result in
                    guard !self.lifecycle.isEnded else { return }
                    if result != .stored, headers != nil { self.originHeadersUnstored = true }
                    if result == .stored {
                        self.counters?.values.historyAppendsStored += 1
                    } else {
                        self.counters?.values.historyAppendsFailed += 1
                    }
                    self.run(self.ownership.appendAnswered(result, storedThrough: last.sequence, now: self.eventLoop.now, local: self.local))
                }
            case .lookUp(let lastEventID):
                history.events(after: lastEventID) { [self] lookup in
                    guard !self.lifecycle.isEnded else { return }
                    self.run(self.ownership.lookUpAnswered(lookup, now: self.eventLoop.now, local: self.local))
                }
            case .release(let token):
                history.release(token: token)
            case .note(let note):
                self.noteOwnership(note)
            }
        }
    }

    private func noteOwnership(_ note: StreamOwnership.Note) {
        switch note {
        case .becameOwner:
            self.ownerName = nil
            self.logger.info("owns the stream for the shared gateway")
        case .becameFollower:
            self.logger.info("follows the shared history", metadata: ["owner": "\(self.ownerName ?? "?")"])
        case .rejoined:
            self.logger.info("rejoined the shared history")
        case .fellBack(let reason):
            self.ownerName = nil
            self.completeSplices(giveUp: true)
            self.counters?.values.historyFallbacks += 1
            self.counters?.note(.storeDown, reason, stream: self.displayPath)
            self.logger.warning("shared history unavailable; reading the origin directly", metadata: ["reason": "\(reason)"])
        }
    }

    public func historyReceived(_ events: [EncodedEvent]) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded, !events.isEmpty else { return }
        var blocks: [ByteBuffer] = []
        blocks.reserveCapacity(events.count)
        let now = self.eventLoop.now
        for event in events {
            // The next event is the one after the last this stream has (or, with an empty ring,
            // the one the follow started after): anything else was trimmed before it was read.
            let expected = self.ingest.nextSequence
            if event.sequence != expected {
                if event.sequence < expected { continue }  // already have it
                self.deliver(blocks, eventCount: blocks.count)
                return self.historyFollowFailed("the shared history skipped from \(expected - 1) to \(event.sequence)")
            }
            self.replay.append(event, now: now)
            self.admission.record(event)
            self.ingest.skip(through: event.sequence)
            if let id = event.id { self.lastCarriedID = id }
            self.eventsReceived += 1
            self.counters?.values.eventsReceived += 1
            blocks.append(event.bytes)
        }
        self.deliver(blocks, eventCount: blocks.count)
        self.admitResumeWaiters()
        self.completeSplices()
        self.run(self.ownership.eventsArrived(local: self.local))
    }

    public func historyFollowFailed(_ reason: String) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded else { return }
        if self.sharing == .privateGeneration {
            // An archived generation cannot be asked of the origin again: it broke off here.
            self.lastUpstreamError = reason
            self.logger.info("archived generation's follow failed", metadata: ["reason": "\(reason)"])
            return self.generationCompleted(.originBroke)
        }
        self.run(self.ownership.followFailed(reason, now: self.eventLoop.now, local: self.local))
    }

    public func historyEnded(_ reason: StreamEndReason) {
        self.eventLoop.preconditionInEventLoop()
        guard !self.lifecycle.isEnded, self.sharing == .privateGeneration, self.completion == nil else { return }
        self.generationCompleted(reason)
    }

    // MARK: Lifetime

    /// Ends the stream now (gateway shutdown): subscribers' responses end cleanly.
    public func shutdown() {
        self.eventLoop.execute { self.end(.shutdown) }
    }

    private func apply(_ action: StreamLifecycle.Action) {
        switch action {
        case .none:
            break
        case .startLinger(let delay):
            self.lingerTimer?.cancel()
            self.lingerTimer = self.eventLoop.scheduleTask(in: delay) { [self] in
                self.lingerTimer = nil
                self.apply(self.lifecycle.lingerExpired())
            }
        case .cancelLinger:
            self.lingerTimer?.cancel()
            self.lingerTimer = nil
        case .end:
            self.end(nil)
        }
    }

    private func end(_ reason: StreamEndReason?) {
        guard self.lifecycle.end() else { return }
        self.setUpstreamState(.ended)
        self.lingerTimer?.cancel()
        self.lingerTimer = nil
        self.upstream?.stop()
        self.upstream = nil
        self.leaseTimer?.cancel()
        self.leaseTimer = nil
        self.completionTimer?.cancel()
        self.completionTimer = nil
        self.following?.stop()
        self.following = nil
        // Ended while its origin response ran (no resume within the window, a shutdown): what
        // the archive keeps of it is all there is.
        self.recording?.finish(.originBroke)
        self.recording = nil
        if self.history != nil {
            self.run(self.ownership.streamEnded())
        }
        if let reason {
            for loopSet in self.loopSets.values {
                let set = loopSet.set
                if set.eventLoop === self.eventLoop {
                    set.endAll(reason)
                } else {
                    set.eventLoop.execute { set.endAll(reason) }
                }
            }
        }
        self.loopSets.removeAll()
        // Waiters look the key up again (a new stream, or their own).
        self.resumeTimer?.cancel()
        let splices = self.pendingSplices
        self.pendingSplices = []
        for joiner in self.admission.streamEnded() + splices.map(\.joiner) {
            joiner.loop.execute { joiner.subscriber.value.streamRefused(.ended) }
        }
        self.catchUpSubscriber = nil
        self.hub?.streamEnded(self)
        self.onEnd?()
        self.logger.debug("stream ended", metadata: ["reason": "\(reason.map { "\($0)" } ?? "linger expired")"])
    }
}

/// Moves a value that is only used on one event loop across a loop hop.
struct UncheckedSendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
