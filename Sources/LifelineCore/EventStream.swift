import Logging
import NIOCore
import SSE

/// One upstream response shared by every client with the same key: its replay buffer, its
/// fan-out to subscribers on every event loop, and its lifetime (linger after the last client).
///
/// A stream lives on one event loop; every method runs there unless it says otherwise. Events
/// are encoded once and handed to each other loop once per batch; the loop writes them to its
/// own subscribers.
public final class EventStream: UpstreamFeedDelegate, @unchecked Sendable {
    public enum UpstreamState: String, Sendable {
        case connecting, connected, reconnecting, ended
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

    /// A subscriber that has asked to attach, held without keeping it alive.
    struct Joiner {
        let subscriber: NIOLoopBound<WeakSubscriber>
        let loop: EventLoop
        let lastEventID: String?
    }

    /// Hit, miss, wait or refusal for each attach; the clients waiting for their id; the events
    /// since the start while openers are owed them.
    private var admission: SubscriberAdmission<Joiner>
    /// One timer per stream, for its earliest waiter.
    /// Made when a client first waits: most streams never need one.
    private var resumeTimer: EarliestDeadlineTimer?
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

        public init(hub: StreamHub? = nil, counters: LoopCounters? = nil, displayPath: String? = nil,
                    logger: Logger = Logger(label: "lifeline.stream")) {
            self.hub = hub
            self.counters = counters
            self.displayPath = displayPath
            self.logger = logger
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
        self.createdAt = eventLoop.now
        self.upstreamStateSince = self.createdAt
        self.eventLoop = eventLoop
        self.configuration = configuration
        self.sharing = sharing
        self.originHeaders = originHeaders
        self.variant = variant
        self.hub = hub
        self.replay = ReplayBuffer(limits: configuration.replayLimits, baseID: resumeID)
        self.admission = SubscriberAdmission(
            policy: .init(replayMiss: configuration.replayMiss, resumeWait: configuration.resumeWait, isShared: sharing.isShared),
            backlogByteLimit: configuration.replayLimits.bytes
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
        self.lifecycle = StreamLifecycle(linger: sharing.isShared ? configuration.linger : .zero)
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
        isCreator: Bool = false,
        waitedForOpening: Bool = false
    ) {
        // Weak: a client may leave before its attach runs, and nothing here may keep it.
        let joiner = Joiner(
            subscriber: NIOLoopBound(WeakSubscriber(subscriber), eventLoop: subscriber.eventLoop),
            loop: subscriber.eventLoop,
            lastEventID: lastEventID
        )
        let request = SubscriberAdmission<Joiner>.Request(
            lastEventID: lastEventID,
            isCreator: isCreator,
            fromStart: isCreator || waitedForOpening
        )
        // Always a new task, also on the same loop: the caller is usually inside a channel
        // handler, and the subscriber's callbacks must not re-enter it.
        self.eventLoop.execute {
            let decision = self.admission.admit(
                joiner, request, replay: &self.replay, isEnded: self.lifecycle.isEnded, now: self.eventLoop.now
            )
            self.carryOut(decision, for: joiner, kind: .first)
        }
    }

    /// Acts on one admission decision for `joiner`.
    private func carryOut(_ decision: SubscriberAdmission<Joiner>.Decision, for joiner: Joiner, kind: StreamAttachment.Kind) {
        switch decision {
        case .wait:
            self.armResumeTimer()
        case .refuse(let refusal):
            joiner.loop.execute { joiner.subscriber.value.subscriber?.streamRefused(refusal) }
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
        let retry = self.originRetry
        let headers = self.originHeaders
        let attach = { (subscriber: StreamSubscriber?) in
            guard let subscriber else {
                // Gone before it got in: leave again, so that the stream counts right.
                self.subscriberGoneBeforeAttach(loop: loop)
                return
            }
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
        }
        if loop === self.eventLoop {
            // Same loop: add now, so that no batch can slip between the replay snapshot and the
            // subscriber's first live chunk.
            attach(joiner.subscriber.value.subscriber)
        } else {
            // Another loop: tasks run in the order they were submitted, so this add runs before
            // any batch this stream hands that loop later.
            let sendableAttach = UncheckedSendableBox(attach)
            loop.execute { sendableAttach.value(joiner.subscriber.value.subscriber) }
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

    private func subscriberGoneBeforeAttach(loop: EventLoop) {
        let id = ObjectIdentifier(loop)
        if self.eventLoop.inEventLoop {
            self.subscriberLeft(loop: id)
        } else {
            self.eventLoop.execute { self.subscriberLeft(loop: id) }
        }
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
        var blocks: [ByteBuffer] = []
        var eventCount = 0
        /// The id the batch's last event carries (nil if it carries none).
        var lastCarriedID: String?
        blocks.reserveCapacity(outputs.count)
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
        // After the fan-out: a waiter that gets in now has these events in its replay.
        if eventCount > 0 {
            self.admitResumeWaiters()
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
        self.logger.info("upstream ended", metadata: ["reason": "\(reason)"])
        self.upstream = nil
        self.end(reason)
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
            ageSeconds: seconds(now - self.createdAt)
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
        for joiner in self.admission.streamEnded() {
            joiner.loop.execute { joiner.subscriber.value.subscriber?.streamRefused(.ended) }
        }
        self.catchUpSubscriber = nil
        self.hub?.streamEnded(self)
        self.logger.debug("stream ended", metadata: ["reason": "\(reason.map { "\($0)" } ?? "linger expired")"])
    }
}

/// A subscriber held without keeping it alive.
struct WeakSubscriber {
    weak var subscriber: StreamSubscriber?
    init(_ subscriber: StreamSubscriber) { self.subscriber = subscriber }
}

/// Moves a value that is only used on one event loop across a loop hop.
struct UncheckedSendableBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
