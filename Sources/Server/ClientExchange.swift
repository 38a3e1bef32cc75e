import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client request, whatever protocol it came over: validates it (`ClientRequest`), then
/// either subscribes the client to a stream (joining one, waiting for one, or opening one with a
/// `StreamOpener`) and writes that stream to it, or proxies it as a plain request (`PlainProxy`).
/// The `ClientResponder` writes the response in its protocol's framing.
///
/// Owned by its client's connection (or HTTP/2 stream). Whatever may outlive the client (an
/// opener, the hub's callbacks, a stream's attach) holds the exchange weakly, and the exchange
/// holds its responder weakly: a client may leave at any moment. Confined to the client's loop.
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
        /// Attached or about to be; `streamAttached` or `streamRefused` follows.
        indirect case waitingForAttach(ClientRequest, EventStream)
        /// An event-stream response is being written.
        case streaming(StreamMembership)
        /// A plain response is being proxied.
        indirect case proxying(PlainProxy, ClientRequest)
        /// The response is complete, failed, or the client is gone.
        case finished
    }

    private let shared: GatewayShared
    private let loop: LoopContext
    private weak var responder: ClientResponder?
    private(set) var state = State.idle
    private var queue: SubscriberQueue

    // For the access log.
    /// The target once the exchange holds neither a request nor a stream.
    private var finishedTarget = "-"
    private var finishedPath: String?
    private(set) var eventsSent = 0
    private(set) var endReason = "client closed"

    /// The request's end has been read (set before `start` for requests without a body).
    private var requestEnded = false

    init(shared: GatewayShared, loop: LoopContext, responder: ClientResponder) {
        self.shared = shared
        self.loop = loop
        self.responder = responder
        self.queue = SubscriberQueue(limit: shared.configuration.clientBuffer)
    }

    /// What the access log names: the stream's key or the request's. Described only when logged,
    /// so that a long-lived streaming exchange holds no string of its own.
    var target: String {
        switch self.state {
        case .streaming(let membership):
            return "\(membership.stream.key)"
        case .waitingForOpening(let request), .opening(let request, _), .waitingForAttach(let request, _):
            return "\(request.key)"
        case .proxying(_, let request):
            return "\(request.key)"
        case .idle, .finished:
            return self.finishedTarget
        }
    }

    /// The stream's path as the status page shows it (query values masked).
    var streamPath: String? {
        switch self.state {
        case .streaming(let membership): return membership.stream.displayPath
        case .waitingForOpening(let request), .opening(let request, _), .waitingForAttach(let request, _),
            .proxying(_, let request):
            return request.displayPath
        case .idle, .finished: return self.finishedPath
        }
    }

    /// Ends the exchange's state; the target is described now, as the request or stream goes.
    private func becomeFinished() {
        switch self.state {
        case .finished: return
        case .proxying: self.loop.counters.values.proxiedRequests += 1
        default: break
        }
        self.finishedTarget = self.target
        self.finishedPath = self.streamPath
        self.state = .finished
    }

    var isFinished: Bool {
        if case .finished = self.state { return true }
        return false
    }

    // MARK: From the client side

    /// The client's event loop (the responder's; kept by the loop context, which outlives it).
    var eventLoop: EventLoop { self.loop.eventLoop }

    func start(_ head: HTTPRequestHead) {
        guard let responder = self.responder else { return self.becomeFinished() }
        if let scriptPath = self.shared.configuration.clientScriptPath {
            let path = ClientRequest.split(uri: head.uri).path
            if path == scriptPath {
                return self.serveClientScript(.embedded, head, to: responder)
            }
            if path.hasSuffix(".mjs"), path == ClientScript.modulePath(forScriptPath: scriptPath) {
                return self.serveClientScript(.embeddedModule, head, to: responder)
            }
        }
        let client = ClientFacts(address: responder.clientAddress, scheme: responder.clientScheme)
        let request: ClientRequest
        switch ClientRequest.parse(head, client: client, router: self.shared.router, configuration: self.shared.configuration) {
        case .success(let parsed):
            request = parsed
        case .failure(let refusal):
            self.loop.counters.values.refused[refusal.status == .badRequest ? .badRequest : .noRoute] += 1
            if case .noRoute(let path) = refusal {
                self.finishedTarget = path
            }
            self.finish(reason: refusal.endReason)
            self.responder?.respond(status: refusal.status, body: refusal.body, closeConnection: refusal.closesConnection)
            return
        }
        if request.rejectedLastEventID {
            self.loop.counters.values.lastEventIDsRejected += 1
        }
        if head.method == .GET, request.wantsEvents || self.shared.hub.stream(for: request.key) != nil {
            self.loop.counters.values.streamRequests += 1
            self.joinStream(request)
        } else {
            self.proxy(request)  // counted when it ends: the answer may turn out to be a stream
        }
    }

    func receiveBody(_ body: ByteBuffer) {
        // A body on a stream request has nowhere to go.
        if case .proxying(let proxy, _) = self.state {
            proxy.receiveBody(body)
        }
    }

    func receiveEnd() {
        guard !self.requestEnded else { return }
        self.requestEnded = true
        if case .proxying(let proxy, _) = self.state {
            proxy.receiveEnd()
        }
    }

    func clientWritabilityChanged() {
        guard let responder = self.responder, responder.isWritable else { return }
        switch self.state {
        case .streaming:
            while responder.isWritable, let buffer = self.queue.dequeue() {
                responder.writeBody(buffer)
            }
            responder.flush()
        case .proxying(let proxy, _):
            proxy.clientWritabilityChanged()
        default:
            break
        }
    }

    /// The client is gone (connection closed, stream reset): leave any stream, drop any origin
    /// connection. A stream this client was opening goes on, for the clients waiting on it.
    func clientGone(reason: String? = nil) {
        if let reason {
            self.endReason = reason
        }
        switch self.state {
        case .opening(_, let opener):
            opener.clientLeft()
        case .streaming(let membership):
            membership.leave()
        case .proxying(let proxy, _):
            proxy.clientGone()
        case .idle, .waitingForOpening, .waitingForAttach, .finished:
            break
        }
        self.stopSubscriberState()
        self.becomeFinished()
    }

    private func finish(reason: String) {
        self.endReason = reason
        self.stopSubscriberState()
        self.becomeFinished()
    }

    private func stopSubscriberState() {
        if case .streaming(let membership) = self.state {
            // The membership is the subscriber's heartbeat entry too.
            self.loop.heartbeatClock.remove(membership)
            self.loop.counters.values.subscribers -= 1
        }
        self.queue.removeAll()
    }

    // MARK: Streams

    private func joinStream(_ request: ClientRequest) {
        if request.isUnshared {
            // A stream of its own, opened with the client's id: the origin replays, as it would
            // to a browser talking to it directly.
            return self.openStream(request, ticket: nil, sharing: .unsharedRoute, resumeID: request.lastEventID)
        }
        let weakSelf = NIOLoopBound(WeakExchange(self), eventLoop: self.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: self.eventLoop) { outcome in
            Self.openingFinished(outcome, for: weakSelf.value.exchange)
        }
        switch lookup {
        case .stream(let stream):
            self.attach(request, to: stream, waitedForOpening: false)
        case .wait:
            self.state = .waitingForOpening(request)
        case .open(let ticket):
            self.openStream(request, ticket: ticket, sharing: .shared, resumeID: self.resumeID(for: request))
        }
    }

    /// Attaches to `stream`, unless the origin's head for it does not fit this client's request
    /// (`Vary`): then the client gets a stream of its own.
    private func attach(_ request: ClientRequest, to stream: EventStream, waitedForOpening: Bool) {
        guard stream.variant.fits(request.headerValue) else {
            if waitedForOpening { stream.openerWillNotJoin() }
            self.openStream(request, ticket: nil, sharing: .varyMismatch, resumeID: request.lastEventID)
            return
        }
        self.state = .waitingForAttach(request, stream)
        stream.attach(self, lastEventID: request.lastEventID, waitedForOpening: waitedForOpening)
    }

    /// The id a new stream is opened upstream with: the client's, unless misses join live.
    private func resumeID(for request: ClientRequest) -> String? {
        self.shared.configuration.stream.replayMiss == .upstream ? request.lastEventID : nil
    }

    /// The hub's answer for a client that waited for the stream to open. A client that has gone
    /// meanwhile tells the stream it will not join, so that it stops keeping events for it.
    private static func openingFinished(_ outcome: StreamHub.OpeningOutcome, for exchange: ClientExchange?) {
        if let exchange {
            exchange.openingFinished(outcome)
        } else if case .stream(let stream) = outcome {
            stream.openerWillNotJoin()
        }
    }

    private func openingFinished(_ outcome: StreamHub.OpeningOutcome) {
        guard case .waitingForOpening(let request) = self.state else {
            if case .stream(let stream) = outcome { stream.openerWillNotJoin() }
            return
        }
        switch outcome {
        case .stream(let stream):
            self.attach(request, to: stream, waitedForOpening: true)
        case .notAStream:
            self.proxy(request)
        }
    }

    /// Sends this client's request to the origin to open a stream: the shared one for its key
    /// (`ticket` given), or one of the client's own.
    private func openStream(_ request: ClientRequest, ticket: StreamHub.OpeningTicket?, sharing: StreamSharing, resumeID: String?) {
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

    /// The client whose request opened `stream` joins it. On an unshared route its id went to
    /// the origin by design, so the buffer not knowing it is no miss.
    private func attachAsCreator(_ request: ClientRequest, to stream: EventStream) {
        self.state = .waitingForAttach(request, stream)
        stream.attach(self, lastEventID: request.isUnshared ? nil : request.lastEventID, isCreator: true)
    }

    /// The gateway's own browser client, whatever the routes say.
    private func serveClientScript(_ script: ClientScript, _ head: HTTPRequestHead, to responder: ClientResponder) {
        let (status, headers, body) = script.response(to: head)
        self.finishedTarget = "client script"
        self.finish(reason: "response complete")
        responder.writeHead(status: status, headers: headers, isEventStream: false)
        if let body {
            responder.writeBody(body)
        }
        responder.endResponse(closeConnection: false)
    }

    // MARK: Plain proxying

    private func proxy(_ request: ClientRequest) {
        guard let responder = self.responder else { return self.becomeFinished() }
        let proxy = PlainProxy(request, requestEnded: self.requestEnded, responder: responder, owner: self, shared: self.shared)
        self.state = .proxying(proxy, request)
        // Body parts that arrived while a stream was being looked up were dropped; a request
        // that can have a body (not GET) never takes that path.
    }

// MARK: Writing subscriber bytes

    /// Writes subscriber bytes, or queues them while the client is not taking them. Returns
    /// false when the client was disconnected for being too slow.
    @discardableResult
    private func send(_ buffer: ByteBuffer, counted: Bool, chunk: StreamChunk? = nil) -> Bool {
        guard let responder = self.responder else { return false }
        if self.queue.isEmpty && responder.isWritable {
            if let chunk {
                responder.writeChunk(chunk)
            } else {
                responder.writeBody(buffer)
            }
            return true
        }
        if self.queue.enqueue(buffer, counted: counted) == .overflow {
            self.loop.counters.values.slowClientDisconnects += 1
            self.loop.counters.note(.slowClient, "client over --client-buffer; disconnected", stream: self.streamPath)
            self.shared.logger.info(
                "client over --client-buffer; disconnecting",
                metadata: ["client": "\(responder.clientAddress ?? "-")", "stream": "\(self.target)"]
            )
            self.clientGone(reason: "slow client (over --client-buffer)")
            responder.abortResponse()
            return false
        }
        return true
    }
}

// MARK: - Stream subscriber

extension ClientExchange: StreamSubscriber {
    func streamAttached(_ attachment: StreamAttachment) {
        if attachment.kind == .continuation {
            return self.continueOnSharedStream(attachment)
        }
        guard case .waitingForAttach = self.state, let responder = self.responder else {
            attachment.membership.leave()
            return
        }
        let configuration = self.shared.configuration
        var headers = HTTPHeaders([
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ])
        switch attachment.replayStatus {
        case .none:
            break
        case .hit:
            headers.add(name: "Lifeline-Replay", value: "hit")
            self.loop.counters.values.replayHits += 1
        case .miss:
            headers.add(name: "Lifeline-Replay", value: "miss")
            self.loop.counters.values.replayMisses += 1
        }
        if let heartbeat = configuration.heartbeat {
            // The client helper's watchdog: a connection silent for about twice this is dead.
            headers.add(name: "Lifeline-Heartbeat", value: String(heartbeat.nanoseconds / 1_000_000))
        }
        var exposed = false
        for (name, value) in attachment.originHeaders {
            if name.lowercased() == "access-control-expose-headers" {
                headers.add(name: name, value: value + ", Lifeline-Replay, Lifeline-Heartbeat")
                exposed = true
            } else {
                headers.add(name: name, value: value)
            }
        }
        if !exposed {
            // So that a cross-site fetch-based client can read them (CORS hides other headers).
            headers.add(name: "Access-Control-Expose-Headers", value: "Lifeline-Replay, Lifeline-Heartbeat")
        }
        responder.writeHead(status: .ok, headers: headers, isEventStream: true)

        // The opening bytes: a comment so the stream is seen open at once, the retry line, the
        // gap event, then what the client missed.
        var intro = responder.allocator.buffer(capacity: 128)
        intro.writeImmutableBuffer(self.loop.opening)
        if let retry = configuration.clientRetry {
            var milliseconds = retry.nanoseconds / 1_000_000
            let jitter = configuration.clientRetryJitter.nanoseconds / 1_000_000
            if jitter > 0 {
                milliseconds += Int64.random(in: 0...jitter)
            }
            intro.writeString("retry: \(milliseconds)\n\n")
        } else if let retry = attachment.originRetry {
            intro.writeString("retry: \(retry)\n\n")
        }
        if let gap = attachment.gapEvent {
            intro.writeImmutableBuffer(gap)
        }
        self.eventsSent += attachment.replay.count
        self.loop.counters.values.eventsSent += attachment.replay.count
        self.loop.counters.values.subscribers += 1
        self.state = .streaming(attachment.membership)
        let introChunk = StreamChunk(bytes: intro, eventCount: 0)
        self.send(introChunk.bytes, counted: false, chunk: introChunk)
        self.sendReplay(attachment.replay, allocator: responder.allocator)
        responder.flush()
        self.loop.heartbeatClock.register(attachment.membership)
        if self.loop.drainClock.isDraining {
            self.loop.drainClock.add(self)
        }
    }

    /// The client caught up on a stream of its own and continues on the shared one: it leaves
    /// its own (which then ends, closing that origin connection) and gets exactly the events
    /// that followed the last one it was sent.
    private func continueOnSharedStream(_ attachment: StreamAttachment) {
        guard case .streaming(let own) = self.state, let responder = self.responder else {
            attachment.membership.leave()
            return
        }
        self.loop.heartbeatClock.remove(own)
        own.leave()
        self.state = .streaming(attachment.membership)
        self.eventsSent += attachment.replay.count
        self.loop.counters.values.eventsSent += attachment.replay.count
        self.sendReplay(attachment.replay, allocator: responder.allocator)
        responder.flush()
        self.loop.heartbeatClock.register(attachment.membership)
    }

    /// Replay in pieces of about 64 KiB: they go out as the client takes them.
    private func sendReplay(_ events: [EncodedEvent], allocator: ByteBufferAllocator) {
        var piece: [ByteBuffer] = []
        var pieceBytes = 0
        for (index, event) in events.enumerated() {
            piece.append(event.bytes)
            pieceBytes += event.bytes.readableBytes
            if pieceBytes >= 64 << 10 || index == events.count - 1 {
                let chunk = StreamChunk(joining: piece, eventCount: piece.count, allocator: allocator)
                guard self.send(chunk.bytes, counted: false, chunk: chunk) else { return }
                piece.removeAll(keepingCapacity: true)
                pieceBytes = 0
            }
        }
    }

    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline) {
        guard case .streaming(let membership) = self.state else { return }
        guard self.send(chunk.bytes, counted: true, chunk: chunk) else { return }
        self.eventsSent += chunk.eventCount
        self.loop.counters.values.eventsSent += chunk.eventCount
        self.loop.heartbeatClock.touch(membership, now: now)
        self.responder?.flush()
    }

    func heartbeatDue() {
        guard case .streaming = self.state else { return }
        // Only when nothing is waiting: a client with queued bytes is not idle.
        guard self.queue.isEmpty else { return }
        guard self.send(self.loop.heartbeat.bytes, counted: true, chunk: self.loop.heartbeat) else { return }
        self.loop.counters.values.heartbeatsSent += 1
        self.responder?.flush()
    }

    // MARK: Drain

    /// The gateway drains: a streaming client is let go at its moment; one that is not streaming
    /// yet gets its moment when it starts (`streamAttached`).
    func drainRequested() {
        if case .streaming = self.state {
            self.loop.drainClock.add(self)
        }
    }

    /// This client's drain moment: a `retry:` so that reconnects spread further, then the
    /// response ends and the connection closes (HTTP/1.1) or the stream ends (HTTP/2, after
    /// GOAWAY). The stream itself goes on for the others.
    func drainNow() {
        guard case .streaming(let membership) = self.state, let responder = self.responder else { return }
        while let buffer = self.queue.dequeue() {
            responder.writeBody(buffer)
        }
        var retry = responder.allocator.buffer(capacity: 24)
        retry.writeString("retry: \(self.loop.drainClock.retryMilliseconds())\n\n")
        responder.writeBody(retry)
        membership.leave()
        self.finish(reason: "drained")
        responder.endResponse(closeConnection: true)
    }

    func streamEnded(_ reason: StreamEndReason) {
        guard case .streaming = self.state, let responder = self.responder else { return }
        // What is queued goes out before the end: it is bounded by --client-buffer.
        while let buffer = self.queue.dequeue() {
            responder.writeBody(buffer)
        }
        self.finish(reason: "stream ended (\(reason))")
        // At shutdown the connection goes too, so that the client reconnects elsewhere.
        responder.endResponse(closeConnection: reason == .shutdown)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        guard case .waitingForAttach(let request, _) = self.state else { return }
        switch refusal {
        case .ended:
            self.joinStream(request)
        case .needsCatchUp(let lastEventID):
            self.openStream(request, ticket: nil, sharing: .catchUp, resumeID: lastEventID)
        case .notHeld:
            break  // only a catching-up stream hears this
        }
    }
}

// MARK: - Stream opening and proxying

extension ClientExchange: StreamOpenerClient {
    func streamOpened(_ outcome: StreamOpener.Outcome) {
        guard case .opening(let request, _) = self.state else {
            if case .stream(let stream) = outcome { stream.openerWillNotJoin() }
            return
        }
        switch outcome {
        case .stream(let stream):
            self.attachAsCreator(request, to: stream)
        case .plainResponse(let head, let connection):
            guard let responder = self.responder else {
                connection.detachAndClose()
                return self.becomeFinished()
            }
            let proxy = PlainProxy(adopting: connection, head: head, responder: responder, owner: self, shared: self.shared)
            self.state = .proxying(proxy, request)
        }
    }
}

extension ClientExchange: PlainProxyOwner {
    func proxyFinished(reason: String) {
        self.finish(reason: reason)
    }

    /// A plain request whose answer is an event stream becomes a stream subscription: the
    /// connection opens the stream or, if one exists or is opening, is dropped for it.
    func proxyAnsweredWithEventStream(_ head: HTTPResponseHead, connection: OriginConnection) {
        guard case .proxying(_, let request) = self.state else { return connection.detachAndClose() }
        self.loop.counters.values.streamRequests += 1
        let weakSelf = NIOLoopBound(WeakExchange(self), eventLoop: self.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: self.eventLoop) { outcome in
            Self.openingFinished(outcome, for: weakSelf.value.exchange)
        }
        switch lookup {
        case .open(let ticket):
            let stream = StreamOpener.makeStream(
                for: request,
                ticket: ticket,
                sharing: .shared,
                resumeID: self.resumeID(for: request),
                adopting: connection,
                originHead: head,
                shared: self.shared,
                eventLoop: self.eventLoop
            )
            self.attachAsCreator(request, to: stream)
        case .stream(let stream):
            connection.detachAndClose()
            self.attach(request, to: stream, waitedForOpening: false)
        case .wait:
            connection.detachAndClose()
            self.state = .waitingForOpening(request)
        }
    }
}

/// A weak reference to an exchange that can cross to the hub's callbacks.
struct WeakExchange {
    weak var exchange: ClientExchange?
    init(_ exchange: ClientExchange) { self.exchange = exchange }
}

