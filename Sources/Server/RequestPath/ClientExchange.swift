import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import TLS
import Upstream

/// One client request, whatever protocol it came over: validates it (`ClientRequest`), decides
/// what to do with it (`RequestDecision`), and hands the work to the part whose job it is: a
/// `StreamWriter` writes a stream to the client (after joining one, waiting for one, or opening
/// one with a `StreamOpener`), a `PlainProxy` proxies a plain request. The `ClientResponder`
/// writes the response in its protocol's framing.
///
/// Owned by its client's connection (or HTTP/2 stream). What may outlive the client (an opener,
/// the hub's callbacks, a stream's attach and membership) holds the exchange strongly until it
/// is told the client left (`clientLeft`, `membership.leave()`) or its callback has run, and a
/// finished exchange answers each late call by letting go. No weak references: one would give
/// every exchange a side table for life (memory, and every retain of the exchange on the
/// per-event path goes through it). The exchange holds its responder until it finishes (see
/// `responder`). Confined to the client's loop. It ends with one `ExchangeOutcome`.
final class ClientExchange {
    /// The cases that carry the request are indirect: an exchange lives as long as its client,
    /// most of that time streaming, and a streaming exchange should not hold the request (and
    /// the space for it) any more.
    enum State {
        case idle
        /// Another client is opening the stream; we hear from the hub.
        indirect case waitingForOpening(ClientRequest)
        /// This client's request went to the origin to open a stream.
        indirect case opening(ClientRequest, StreamOpener)
        /// Attached or about to be: the writer hears `streamAttached` or `streamRefused`.
        indirect case attaching(ClientRequest, StreamWriter)
        /// An event-stream response is being written.
        case streaming(StreamWriter)
        /// A plain response is being proxied.
        indirect case proxying(PlainProxy, ClientRequest)
        /// A request with an `Idempotency-Key`: its body is read whole (and hashed) before the
        /// gateway decides whether to send it or to join the generation it already started.
        indirect case collectingBody(ClientRequest, IdempotencyRegistry.Key, ByteBuffer)
        /// A resume whose token this instance does not hold: the store of kept generations
        /// (`--redis`) is asked for it.
        case lookingUpGeneration(ResumeToken)
        /// The response is complete, failed, or the client is gone. Indirect too: what the access
        /// log needs is described once, at the end, and costs a streaming client nothing.
        indirect case finished(Ended)
    }

    /// What is left of an exchange once it ended: its outcome and what the access log names.
    struct Ended {
        var outcome: ExchangeOutcome
        var target: String
        var path: String?
        var eventsSent: Int
    }

    private let shared: GatewayShared
    let loop: LoopContext
    /// The client side, until the exchange finishes. Strong, and let go of in `finish`, which
    /// every exchange reaches (its response ends, fails or is refused, or its front end reports
    /// the client gone with `clientGone`): the responder owns the exchange, so the cycle lasts as
    /// long as the exchange runs, and the front-end object gets no weak reference (a weak
    /// reference gives its target a side table for the rest of its life: one per connection).
    /// Nil once finished, as it was when the client had gone.
    private(set) var responder: ClientResponder?
    private(set) var state = State.idle

    /// The request's end has been read (set before `start` for requests without a body).
    private var requestEnded = false

    init(shared: GatewayShared, loop: LoopContext, responder: ClientResponder) {
        self.shared = shared
        self.loop = loop
        self.responder = responder
    }

    /// What the access log names: the stream's key or the request's. Described only when logged,
    /// so that a long-lived streaming exchange holds no string of its own.
    var target: String {
        switch self.state {
        case .streaming(let writer):
            return writer.stream.map { "\($0.key)" } ?? "-"
        case .waitingForOpening(let request), .opening(let request, _), .attaching(let request, _), .proxying(_, let request),
             .collectingBody(let request, _, _):
            return "\(request.key)"
        case .idle, .lookingUpGeneration:
            return "-"
        case .finished(let ended):
            return ended.target
        }
    }

    /// The stream's path as the status page shows it (query values masked).
    var streamPath: String? {
        switch self.state {
        case .streaming(let writer):
            return writer.stream?.displayPath
        case .waitingForOpening(let request), .opening(let request, _), .attaching(let request, _), .proxying(_, let request),
             .collectingBody(let request, _, _):
            return request.displayPath
        case .idle:
            return nil
        case .lookingUpGeneration(let token):
            return RequestDecision.resumePrefix + token.description
        case .finished(let ended):
            return ended.path
        }
    }

    /// Events written to the client, for the access log.
    var eventsSent: Int {
        switch self.state {
        case .streaming(let writer): return writer.eventsSent
        case .finished(let ended): return ended.eventsSent
        default: return 0
        }
    }

    /// How the exchange ended; until it has, what it would be if the client left now.
    var outcome: ExchangeOutcome {
        if case .finished(let ended) = self.state { return ended.outcome }
        return .clientClosed
    }

    var isFinished: Bool {
        if case .finished = self.state { return true }
        return false
    }

    /// The client's event loop (the responder's; kept by the loop context, which outlives it).
    var eventLoop: EventLoop { self.loop.eventLoop }

    /// Ends the exchange with `outcome`; the target is described now, as the request or stream
    /// goes (or given, for an exchange that never had either).
    private func finish(_ outcome: ExchangeOutcome, target: String? = nil) {
        switch self.state {
        case .finished: return
        case .proxying: self.loop.counters.values.proxiedRequests += 1
        default: break
        }
        self.state = .finished(Ended(outcome: outcome, target: target ?? self.target, path: self.streamPath, eventsSent: self.eventsSent))
        self.loop.counters.values.exchangesEnded[outcome.party] += 1
        // What still answers the client took the responder before finishing.
        self.responder = nil
    }

    // MARK: From the client side

    func start(_ head: HTTPRequestHead) {
        guard let responder = self.responder else { return self.finish(.clientClosed) }
        let client = ClientFacts(address: responder.clientAddress, scheme: responder.clientScheme)
        let configuration = self.shared.configuration
        let parsed = ClientRequest.parse(head, client: client, router: self.shared.router, configuration: configuration)
        let hub = self.shared.hub
        let dispatch = RequestDecision.dispatch(
            head,
            parsed: parsed,
            clientScriptPath: configuration.clientScriptPath,
            hasStream: { hub.stream(for: $0) != nil }
        )
        if case .success(let request) = parsed, request.rejectedLastEventID {
            self.loop.counters.values.lastEventIDsRejected += 1
        }
        switch dispatch {
        case .clientScript(let script):
            self.serveClientScript(script, head, to: responder)
        case .refuse(let refusal):
            self.loop.counters.values.refused[refusal.reason] += 1
            var target: String?
            if case .noRoute(let path) = refusal {
                target = path
            }
            self.finish(.refused(refusal), target: target)
            responder.respond(status: refusal.status, body: refusal.body, closeConnection: refusal.closesConnection)
        case .stream(let request):
            self.loop.counters.values.streamRequests += 1
            self.subscribe(request)
        case .proxy(let request):
            self.proxyOrCollect(request)  // counted when it ends: the answer may turn out to be a stream
        case .resume(let token):
            self.resume(token, head: head, responder: responder)
        }
    }

    /// `GET /_lifeline/resume/TOKEN`: joins the private generation the token names, if this
    /// caller started it, from its `Last-Event-ID` or `Lifeline-Resume-From: N`. A token this
    /// instance does not hold is looked up in the store of kept generations, if there is one.
    private func resume(_ token: ResumeToken?, head: HTTPRequestHead, responder: ClientResponder) {
        guard let token else { return self.refuse(.unknownResume, responder: responder, target: "resume") }
        if let entry = self.shared.generations.generation(token, for: CallerCredentials(of: head)) {
            return self.join(entry.stream, startedBy: entry.request, token: token, head: head)
        }
        guard let archive = self.shared.configuration.sharedGateway?.archive else {
            return self.refuse(.unknownResume, responder: responder, target: "resume")
        }
        self.state = .lookingUpGeneration(token)
        archive.open(token, caller: CallerHeaders(of: head), on: self.eventLoop) { lookup in
            self.archiveAnswered(lookup, token: token, head: head)
        }
    }

    private func archiveAnswered(_ lookup: ArchivedGenerationLookup, token: ResumeToken, head: HTTPRequestHead) {
        guard case .lookingUpGeneration = self.state, let responder = self.responder else { return }
        switch lookup {
        case .notFound:
            self.refuse(.unknownResume, responder: responder, target: "resume")
        case .unavailable(let reason):
            self.shared.logger.warning("cannot look a resume up in the shared store", metadata: ["error": "\(reason)"])
            self.refuse(.resumeStoreUnavailable, responder: responder, target: "resume")
        case .found(let generation):
            // Another resume may have read it here meanwhile: one copy per instance.
            if let entry = self.shared.generations.generation(token, for: CallerCredentials(of: head)) {
                return self.join(entry.stream, startedBy: entry.request, token: token, head: head)
            }
            let parsed = ClientRequest.parse(
                generation.startingHead(head), client: ClientFacts(address: responder.clientAddress, scheme: responder.clientScheme),
                router: self.shared.router, configuration: self.shared.configuration)
            guard case .success(let started) = parsed else {
                // Its route is not among this instance's.
                return self.refuse(.unknownResume, responder: responder, target: "resume")
            }
            let stream = StreamFactory(shared: self.shared).makeArchivedGeneration(
                token, generation, startedBy: started, eventLoop: self.eventLoop)
            self.join(stream, startedBy: started, token: token, head: head)
        }
    }

    /// A resume joins `stream`, the generation `request` started.
    private func join(_ stream: EventStream, startedBy request: ClientRequest, token: ResumeToken, head: HTTPRequestHead) {
        var request = request
        request.head = head
        request.joinsGeneration = true
        request.displayPath = RequestDecision.resumePrefix + token.description
        let offered = head.headers.first(name: "last-event-id")
        request.lastEventID = offered.flatMap { ClientRequest.isSane(lastEventID: $0) ? $0 : nil }
        let resumeFrom = head.headers.first(name: "lifeline-resume-from").flatMap { UInt64($0.trimmingASCIISpaces()) }
        self.loop.counters.values.streamRequests += 1
        self.attach(request, to: stream, lastEventID: request.lastEventID, resumeFromCount: resumeFrom)
    }

    func receiveBody(_ body: ByteBuffer) {
        // A body on a stream request has nowhere to go.
        switch self.state {
        case .proxying(let proxy, _):
            proxy.receiveBody(body)
        case .collectingBody(let request, let key, var collected):
            collected.writeImmutableBuffer(body)
            guard collected.readableBytes <= Self.idempotentBodyLimit else {
                // Too big to hold for a comparison: sent on as it comes, without the key's help.
                self.proxy(request)
                if case .proxying(let proxy, _) = self.state { proxy.receiveBody(collected) }
                return
            }
            self.state = .collectingBody(request, key, collected)
        default:
            break
        }
    }

    func receiveEnd() {
        guard !self.requestEnded else { return }
        self.requestEnded = true
        switch self.state {
        case .proxying(let proxy, _):
            proxy.receiveEnd()
        case .collectingBody:
            self.bodyCollected()
        default:
            break
        }
    }

    // MARK: Idempotency-Key

    /// The largest body held to compare retries with (larger ones are sent without that).
    static let idempotentBodyLimit = 1 << 20

    /// A request with a usable `Idempotency-Key` (not a GET or HEAD) is read whole first.
    private func proxyOrCollect(_ request: ClientRequest) {
        let method = request.head.method
        guard method != .GET, method != .HEAD, let value = request.head.headers.first(name: "idempotency-key"),
            (1...255).contains(value.utf8.count), value.utf8.allSatisfy({ $0 >= 0x20 && $0 != 0x7F })
        else { return self.proxy(request) }
        let key = IdempotencyRegistry.Key(
            credentials: CallerCredentials(of: request.head),
            route: request.match.route.prefix, value: value)
        self.state = .collectingBody(request, key, ByteBuffer())
        if self.requestEnded {
            self.bodyCollected()
        }
    }

    /// The whole body is in: send it under the key, join the generation it already started, or
    /// refuse (another body: 422; the first is still waiting for its answer: 409).
    private func bodyCollected() {
        guard case .collectingBody(var request, let key, let body) = self.state, let responder = self.responder else { return }
        let digest = body.withUnsafeReadableBytes { Digest.sha256($0) }
        switch self.shared.idempotency.begin(key, bodyDigest: digest) {
        case .new:
            request.idempotencyKey = key
            let proxy = PlainProxy(request, requestEnded: false, responder: responder, owner: self, shared: self.shared)
            self.state = .proxying(proxy, request)
            if body.readableBytes > 0 {
                proxy.receiveBody(body)
            }
            proxy.receiveEnd()
        case .join(let stream):
            self.loop.counters.values.streamRequests += 1
            request.joinsGeneration = true
            // From its start, unless the retry says how far it got.
            let from = request.head.headers.first(name: "lifeline-resume-from").flatMap { UInt64($0.trimmingASCIISpaces()) }
                ?? (request.lastEventID == nil ? 0 : nil)
            self.attach(request, to: stream, lastEventID: request.lastEventID, resumeFromCount: from)
        case .inProgress:
            self.refuse(.idempotencyKeyInProgress, responder: responder)
        case .otherBody:
            self.refuse(.idempotencyKeyReused, responder: responder)
        }
    }

    private func refuse(_ refusal: RequestRefusal, responder: ClientResponder, target: String? = nil) {
        self.loop.counters.values.refused[refusal.reason] += 1
        self.finish(.refused(refusal), target: target)
        responder.respond(status: refusal.status, body: refusal.body, closeConnection: refusal.closesConnection)
    }

    func clientWritabilityChanged() {
        switch self.state {
        case .streaming(let writer):
            writer.clientWritabilityChanged()
        case .proxying(let proxy, _):
            proxy.clientWritabilityChanged()
        default:
            break
        }
    }

    /// The client is gone (connection closed, stream reset): leave any stream, drop any origin
    /// connection. A stream this client was opening goes on, for the clients waiting on it.
    func clientGone() {
        let state = self.state
        // Described first, while the writer still names its stream.
        self.finish(.clientClosed)
        switch state {
        case .opening(_, let opener):
            opener.clientLeft()
        case .attaching(_, let writer), .streaming(let writer):
            writer.clientGone()
        case .proxying(let proxy, let request):
            proxy.clientGone()
            if let key = request.idempotencyKey {
                // Its origin request goes with it: nothing will answer under the key.
                self.shared.idempotency.forget(key)
            }
        case .collectingBody, .lookingUpGeneration:
            break
        case .idle, .waitingForOpening, .finished:
            break
        }
    }

    /// The gateway drains: a streaming client is let go at its moment.
    func drainRequested() {
        if case .streaming(let writer) = self.state {
            writer.drainRequested()
        }
    }

    // MARK: Streams

    /// A stream subscription: join, wait for or open the stream for the request's key.
    private func subscribe(_ request: ClientRequest) {
        let lookup = self.shared.hub.lookup(request.key, on: self.eventLoop, onOpened: self.openingCallback())
        self.take(RequestDecision.afterLookup(request, lookup, replayMiss: self.shared.configuration.stream.replayMiss), for: request)
    }

    /// The hub's callback for a client that waits for another's opening. It holds the exchange
    /// until the opening ends (no weak reference: see `StreamMembership.subscriber`); a client
    /// that has gone meanwhile tells the stream it will not join (`openingFinished`), so that it
    /// stops keeping events for it.
    private func openingCallback() -> @Sendable (StreamHub.OpeningOutcome) -> Void {
        let exchange = NIOLoopBound(self, eventLoop: self.eventLoop)
        return { outcome in exchange.value.openingFinished(outcome) }
    }

    private func take(_ step: RequestDecision.StreamStep, for request: ClientRequest) {
        switch step {
        case .attach(let stream, let waitedForOpening):
            self.attach(request, to: stream, lastEventID: request.lastEventID, waitedForOpening: waitedForOpening)
        case .waitForOpening:
            self.state = .waitingForOpening(request)
        case .open(let ticket, let sharing, let resumeID):
            let opener = StreamOpener.open(
                request,
                ticket: ticket,
                sharing: sharing,
                resumeID: resumeID,
                shared: self.shared,
                eventLoop: self.eventLoop,
                client: self
            )
            self.state = .opening(request, opener)
        }
    }

    func attach(_ request: ClientRequest, to stream: EventStream, lastEventID: String?, resumeFromCount: UInt64? = nil,
                isCreator: Bool = false, waitedForOpening: Bool = false) {
        guard self.responder != nil else {
            if waitedForOpening || isCreator { stream.openerWillNotJoin() }
            return self.finish(.clientClosed)
        }
        let writer = StreamWriter(clientBuffer: self.shared.configuration.clientBuffer, owner: self)
        self.state = .attaching(request, writer)
        stream.attach(self, lastEventID: lastEventID, resumeFromCount: resumeFromCount, isCreator: isCreator,
                      waitedForOpening: waitedForOpening)
    }

    private func openingFinished(_ outcome: StreamHub.OpeningOutcome) {
        guard case .waitingForOpening(let request) = self.state else {
            if case .stream(let stream) = outcome { stream.openerWillNotJoin() }
            return
        }
        switch outcome {
        case .stream(let stream):
            let step = RequestDecision.onStream(request, stream, waitedForOpening: true)
            if case .open = step {
                stream.openerWillNotJoin()  // a Vary mismatch: it gets a stream of its own
            }
            self.take(step, for: request)
        case .notAStream:
            self.proxy(request)
        }
    }

    /// The client whose request opened `stream` joins it.
    private func attachAsCreator(_ request: ClientRequest, to stream: EventStream) {
        self.attach(request, to: stream, lastEventID: request.lastEventID, isCreator: true)
    }

    /// The gateway's own browser client, whatever the routes say.
    private func serveClientScript(_ script: ClientScript, _ head: HTTPRequestHead, to responder: ClientResponder) {
        let (status, headers, body) = script.response(to: head)
        self.finish(.completed, target: "client script")
        responder.writeHead(status: status, headers: headers, isEventStream: false)
        if let body {
            responder.writeBody(body)
        }
        responder.endResponse(closeConnection: false)
    }

    // MARK: Plain proxying

    private func proxy(_ request: ClientRequest) {
        guard let responder = self.responder else { return self.finish(.clientClosed) }
        let proxy = PlainProxy(request, requestEnded: self.requestEnded, responder: responder, owner: self, shared: self.shared)
        self.state = .proxying(proxy, request)
        // Body parts that arrived while a stream was being looked up were dropped; a request
        // that can have a body (not GET) never takes that path.
    }
}

// MARK: - The stream's subscriber: its calls go to the current writer

extension ClientExchange: StreamSubscriber, DrainTarget {
    private var writer: StreamWriter? {
        switch self.state {
        case .attaching(_, let writer), .streaming(let writer): return writer
        default: return nil
        }
    }

    func streamAttached(_ attachment: StreamAttachment) {
        guard let writer = self.writer else { return attachment.membership.leave() }
        writer.streamAttached(attachment)
    }

    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline) {
        self.writer?.streamDeliver(chunk, now: now)
    }

    func heartbeatDue() {
        self.writer?.heartbeatDue()
    }

    func streamEnded(_ reason: StreamEndReason) {
        self.writer?.streamEnded(reason)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        self.writer?.streamRefused(refusal)
    }

    func drainNow() {
        self.writer?.drainNow()
    }
}

// MARK: - The stream writer's reports

extension ClientExchange {
    func streamWriter(_ writer: StreamWriter, wasRefused refusal: StreamRefusal) {
        guard case .attaching(let request, let current) = self.state, current === writer else { return }
        if request.joinsGeneration {
            // The generation it named ended meanwhile (nothing to join, nothing to open), or has
            // its most readers.
            guard let responder = self.responder else { return self.finish(.clientClosed) }
            return self.refuse(refusal == .busy ? .tooManyResumes : .unknownResume, responder: responder, target: "resume")
        }
        if let step = RequestDecision.afterRefusal(request, refusal) {
            self.take(step, for: request)
        } else {
            self.subscribe(request)
        }
    }

    func streamWriter(_ writer: StreamWriter, finishedWith outcome: ExchangeOutcome) {
        switch self.state {
        case .attaching(_, let current), .streaming(let current):
            guard current === writer else { return }
            self.finish(outcome)
        default:
            return
        }
    }

    /// The writer got in: the exchange no longer needs the request.
    func streamWriterStarted(_ writer: StreamWriter) {
        if case .attaching(_, let current) = self.state, current === writer {
            self.state = .streaming(writer)
        }
    }
}

// MARK: - Stream opening and proxying

extension ClientExchange: StreamOpenerClient {
    func streamOpened(_ outcome: StreamOpener.Outcome) {
        guard case .opening(let request, _) = self.state else {
            if case .stream(let stream, _) = outcome { stream.openerWillNotJoin() }
            return
        }
        switch outcome {
        case .stream(let stream, let creatorResumed):
            if creatorResumed || request.lastEventID == nil {
                self.attachAsCreator(request, to: stream)
            } else {
                // The origin was opened from the shared history's last id, not this client's:
                // its resume is the buffer's (and the history's) to serve.
                self.attach(request, to: stream, lastEventID: request.lastEventID, waitedForOpening: true)
            }
        case .plainResponse(let head, let connection):
            guard let responder = self.responder else {
                connection.detachAndClose()
                return self.finish(.clientClosed)
            }
            let proxy = PlainProxy(adopting: connection, head: head, responder: responder, owner: self, shared: self.shared)
            self.state = .proxying(proxy, request)
        }
    }
}

extension ClientExchange: PlainProxyOwner {
    func proxyFinished(_ outcome: ExchangeOutcome) {
        if case .proxying(_, let request) = self.state, let key = request.idempotencyKey {
            // Answered without a generation: nothing to join, the key is free again.
            self.shared.idempotency.forget(key)
        }
        self.finish(outcome)
    }

    /// A plain request whose answer is an event stream becomes a stream subscription: the
    /// connection opens the stream or, if one exists or is opening, is dropped for it.
    func proxyAnsweredWithEventStream(_ head: HTTPResponseHead, connection: OriginConnection) {
        guard case .proxying(_, let request) = self.state else { return connection.detachAndClose() }
        self.loop.counters.values.streamRequests += 1
        let lookup = self.shared.hub.lookup(request.key, on: self.eventLoop, onOpened: self.openingCallback())
        switch RequestDecision.afterLookup(request, lookup, replayMiss: self.shared.configuration.stream.replayMiss) {
        case .open(let ticket, let sharing, let resumeID):
            // This connection's answer opens the stream.
            let stream = StreamFactory(shared: self.shared).makeStream(
                for: request,
                ticket: ticket,
                sharing: sharing,
                resumeID: resumeID,
                adopting: connection,
                originHead: head,
                eventLoop: self.eventLoop
            )
            self.attachAsCreator(request, to: stream)
        case let step:
            connection.detachAndClose()
            self.take(step, for: request)
        }
    }
}

extension ClientExchange {
    /// A request that is not a shared GET was answered with an event stream: it becomes a
    /// private generation, and this client its one subscriber.
    func proxyAnsweredWithPrivateGeneration(_ head: HTTPResponseHead, connection: OriginConnection) {
        guard case .proxying(_, let request) = self.state else { return connection.detachAndClose() }
        self.loop.counters.values.streamRequests += 1
        let stream = StreamFactory(shared: self.shared).makeGeneration(
            for: request, adopting: connection, originHead: head, eventLoop: self.eventLoop)
        self.attach(request, to: stream, lastEventID: nil, isCreator: true)
    }
}

