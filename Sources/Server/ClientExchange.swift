import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client request, whatever protocol it came over: routes it either into a shared event
/// stream (as one of its subscribers) or straight through to the origin (plain proxying,
/// streamed). The `ClientResponder` writes the response in its protocol's framing.
///
/// Confined to the responder's event loop.
final class ClientExchange {
    /// One request, as far as routing and streams are concerned.
    struct Request {
        var head: HTTPRequestHead
        var match: Router.Match
        /// The query for the origin (the route's own, then the client's without the resume parameter).
        var upstreamQuery: String?
        /// `Last-Event-ID` from the header or the resume parameter.
        var lastEventID: String?
        var key: StreamKey
    }

    /// The cases that carry the request are indirect: an exchange lives as long as its client,
    /// most of that time streaming, and a streaming exchange should not hold the request (and
    /// the space for it) any more.
    enum State {
        case idle
        /// Another client is opening the stream; we hear from the hub.
        indirect case waitingForOpening(Request)
        /// This client opens the stream: its request went to the origin and the answer decides
        /// whether a stream is made (`ticket` nil: a private stream).
        indirect case opening(Request, OriginConnection, StreamHub.OpeningTicket?, resumeID: String?)
        /// Attached or about to be; `streamAttached` or `streamRefused` follows.
        indirect case waitingForAttach(Request, Stream)
        /// An event-stream response is being written.
        case streaming(StreamMembership)
        /// A plain response is being proxied.
        indirect case proxying(Request, OriginConnection, headSent: Bool)
        /// The response is complete, failed, or the client is gone.
        case finished
    }

    private let shared: GatewayShared
    private let loop: LoopContext
    private unowned let responder: ClientResponder
    private(set) var state = State.idle
    private var queue: SubscriberQueue

    // For the access log.
    /// The target once the exchange holds neither a request nor a stream.
    private var finishedTarget = "-"
    private(set) var eventsSent = 0
    private(set) var endReason = "client closed"

    // Flags last, packed together (stored properties are laid out in order).
    private var requestEnded = false
    /// The client left while this exchange was opening a stream for others too.
    private var clientGone = false

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
        case .waitingForOpening(let request), .opening(let request, _, _, _), .waitingForAttach(let request, _),
            .proxying(let request, _, _):
            return "\(request.key)"
        case .idle, .finished:
            return self.finishedTarget
        }
    }

    /// Ends the exchange's state; the target is described now, as the request or stream goes.
    private func becomeFinished() {
        if case .finished = self.state { return }
        self.finishedTarget = self.target
        self.state = .finished
    }

    var isFinished: Bool {
        if case .finished = self.state { return true }
        return false
    }

    // MARK: From the client side

    func start(_ head: HTTPRequestHead) {
        guard head.uri.hasPrefix("/") else {
            self.shared.metrics.record { $0.badRequests += 1 }
            self.finish(reason: "bad request target (400)")
            self.responder.respond(status: .badRequest, body: "bad request target\n", closeConnection: true)
            return
        }
        let (path, query) = Self.split(uri: head.uri)
        guard let match = self.shared.router.match(path: path) else {
            self.finishedTarget = path
            self.finish(reason: "no route (404)")
            self.responder.respond(status: .notFound, body: "no route for \(path)\n", closeConnection: false)
            return
        }
        let parameter = self.shared.configuration.lastEventIDParameter
        let (clientQuery, queryLastEventID) = Self.removeParameter(parameter, from: query)
        var lastEventID = head.headers.first(name: "last-event-id") ?? queryLastEventID
        if lastEventID?.isEmpty ?? false {
            lastEventID = nil
        }
        let upstreamQuery = Self.joinQueries(match.route.origin.baseQuery, clientQuery)
        // The route's own query belongs to its origin URL: two routes that differ only there
        // never share, whatever --share-by says about the client's query.
        var origin = match.route.origin.authority
        if let routeQuery = match.route.origin.baseQuery {
            origin += "?" + routeQuery
        }
        let key = self.shared.configuration.sharePolicy.key(
            method: head.method.rawValue,
            origin: origin,
            path: match.upstreamPath,
            query: clientQuery,
            header: { name in
                // Every line of the header counts (a second Cookie line must not be ignored).
                let values = head.headers[name]
                return values.isEmpty ? nil : values.joined(separator: ", ")
            }
        )
        let request = Request(head: head, match: match, upstreamQuery: upstreamQuery, lastEventID: lastEventID, key: key)
        let wantsEvents = head.headers["accept"].contains { $0.lowercased().contains("text/event-stream") }
        if head.method == .GET, wantsEvents || self.shared.hub.stream(for: key) != nil {
            self.shared.metrics.record { $0.streamRequests += 1 }
            self.joinStream(request)
        } else {
            self.shared.metrics.record { $0.proxiedRequests += 1 }
            self.proxy(request)
        }
    }

    func receiveBody(_ body: ByteBuffer) {
        // A body on a stream request has nowhere to go.
        if case .proxying(_, let connection, _) = self.state, !self.requestEnded {
            connection.sendBody(body)
        }
    }

    func receiveEnd() {
        guard !self.requestEnded else { return }
        self.requestEnded = true
        if case .proxying(_, let connection, _) = self.state {
            connection.endRequest()
        }
    }

    func clientWritabilityChanged() {
        guard self.responder.isWritable else { return }
        switch self.state {
        case .streaming:
            while self.responder.isWritable, let buffer = self.queue.dequeue() {
                self.responder.writeBody(buffer)
            }
            self.responder.flush()
        case .proxying(_, let connection, _):
            connection.resumeReading()
        default:
            break
        }
    }

    /// The client is gone (connection closed, stream reset): leave any stream, drop any origin
    /// connection. An exchange that is opening a stream goes on, for the clients waiting on it.
    func clientGone(reason: String? = nil) {
        if let reason {
            self.endReason = reason
        }
        switch self.state {
        case .opening:
            self.clientGone = true
            return
        case .streaming(let membership):
            membership.leave()
        case .proxying(_, let connection, _):
            connection.detachAndClose()
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
        }
        self.queue.removeAll()
    }

    // MARK: Streams

    private func joinStream(_ request: Request) {
        let loopBound = NIOLoopBound(self, eventLoop: self.responder.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: self.responder.eventLoop) { outcome in
            loopBound.value.openingFinished(outcome)
        }
        switch lookup {
        case .stream(let stream):
            self.state = .waitingForAttach(request, stream)
            stream.attach(self, lastEventID: request.lastEventID)
        case .wait:
            self.state = .waitingForOpening(request)
        case .open(let ticket):
            self.openStream(request, ticket: ticket, resumeID: self.resumeID(for: request))
        }
    }

    /// The id a new stream is opened upstream with: the client's, unless misses join live.
    private func resumeID(for request: Request) -> String? {
        self.shared.configuration.stream.replayMiss == .upstream ? request.lastEventID : nil
    }

    private func openingFinished(_ outcome: StreamHub.OpeningOutcome) {
        guard case .waitingForOpening(let request) = self.state else { return }
        switch outcome {
        case .stream(let stream):
            self.state = .waitingForAttach(request, stream)
            stream.attach(self, lastEventID: request.lastEventID, waitedForOpening: true)
        case .notAStream:
            self.proxy(request)
        }
    }

    /// Sends this client's request to the origin to open a stream (shared when `ticket` is
    /// given, private otherwise).
    private func openStream(_ request: Request, ticket: StreamHub.OpeningTicket?, resumeID: String?) {
        var head = self.upstreamHead(for: request, forStream: true)
        if let resumeID {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: resumeID)
        }
        let connection = self.openOrigin(request, head: head)
        connection.endRequest()
        self.state = .opening(request, connection, ticket, resumeID: resumeID)
    }

    /// Makes the stream once the origin has answered this client's request with an event stream
    /// (`connection` non-nil), or could not be reached (nil: the stream starts by reconnecting).
    private func makeStream(
        _ request: Request,
        ticket: StreamHub.OpeningTicket?,
        resumeID: String?,
        connection: OriginConnection?,
        originHead: HTTPResponseHead?
    ) {
        let configuration = self.shared.configuration
        let eventLoop = self.responder.eventLoop
        let stream = Stream(
            key: request.key,
            eventLoop: eventLoop,
            configuration: configuration.stream,
            resumeID: resumeID,
            originHeaders: originHead.map { SharedResponseHeaders.filter($0.headers) } ?? [],
            isPrivate: ticket == nil,
            hub: self.shared.hub,
            logger: self.shared.logger
        )
        let session = UpstreamSession(
            target: request.match.route.origin,
            requestHead: self.upstreamHead(for: request, forStream: true),
            resumeID: resumeID,
            eventLoop: eventLoop,
            configuration: configuration.upstream,
            logger: self.shared.logger
        )
        stream.start(upstream: session)
        session.start(delegate: stream, adopting: connection)
        if let ticket {
            self.shared.hub.promote(ticket, to: stream)
        } else {
            self.shared.hub.registerPrivate(stream)
        }
        if self.clientGone {
            self.becomeFinished()
            return  // The client left while the stream was opening; the stream lingers for others.
        }
        self.state = .waitingForAttach(request, stream)
        stream.attach(self, lastEventID: request.lastEventID, isCreator: true)
    }

    /// A plain request whose answer is an event stream (`curl -N` sends no
    /// `Accept: text/event-stream`) becomes a stream subscription: the connection opens the
    /// stream or, if one exists or is opening, is dropped for it.
    private func adoptAsStream(_ request: Request, connection: OriginConnection, originHead: HTTPResponseHead) {
        let loopBound = NIOLoopBound(self, eventLoop: self.responder.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: self.responder.eventLoop) { outcome in
            loopBound.value.openingFinished(outcome)
        }
        switch lookup {
        case .open(let ticket):
            self.makeStream(
                request,
                ticket: ticket,
                resumeID: self.resumeID(for: request),
                connection: connection,
                originHead: originHead
            )
        case .stream(let stream):
            connection.detachAndClose()
            self.state = .waitingForAttach(request, stream)
            stream.attach(self, lastEventID: request.lastEventID)
        case .wait:
            connection.detachAndClose()
            self.state = .waitingForOpening(request)
        }
    }

    private func upstreamHead(for request: Request, forStream: Bool) -> HTTPRequestHead {
        var head = UpstreamRequest.head(
            from: request.head,
            target: request.match.route.origin,
            path: request.match.upstreamPath,
            query: request.upstreamQuery,
            clientAddress: self.responder.clientAddress,
            clientScheme: self.responder.clientScheme,
            forStream: forStream
        )
        if forStream {
            head.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        }
        return head
    }

    private func openOrigin(_ request: Request, head: HTTPRequestHead) -> OriginConnection {
        OriginConnection.open(
            to: request.match.route.origin,
            head: head,
            on: self.responder.eventLoop,
            connectTimeout: self.shared.configuration.upstream.connectTimeout,
            headTimeout: self.shared.configuration.upstream.headTimeout,
            tls: self.shared.configuration.upstream.tls,
            delegate: self
        )
    }

    // MARK: Plain proxying

    private func proxy(_ request: Request) {
        let connection = self.openOrigin(request, head: self.upstreamHead(for: request, forStream: false))
        self.state = .proxying(request, connection, headSent: false)
        if self.requestEnded {
            connection.endRequest()
        }
        // Body parts that arrived while a stream was being looked up were dropped; a request
        // that can have a body (not GET) never takes that path.
    }

    // MARK: Writing subscriber bytes

    /// Writes subscriber bytes, or queues them while the client is not taking them. Returns
    /// false when the client was disconnected for being too slow.
    @discardableResult
    private func send(_ buffer: ByteBuffer, counted: Bool, chunk: StreamChunk? = nil) -> Bool {
        if self.queue.isEmpty && self.responder.isWritable {
            if let chunk {
                self.responder.writeChunk(chunk)
            } else {
                self.responder.writeBody(buffer)
            }
            return true
        }
        if self.queue.enqueue(buffer, counted: counted) == .overflow {
            self.shared.metrics.record { $0.slowClientsDisconnected += 1 }
            self.shared.logger.info(
                "client over --client-buffer; disconnecting",
                metadata: ["client": "\(self.responder.clientAddress ?? "-")", "stream": "\(self.target)"]
            )
            self.clientGone(reason: "slow client (over --client-buffer)")
            self.responder.abortResponse()
            return false
        }
        return true
    }
}

// MARK: - Stream subscriber

extension ClientExchange: StreamSubscriber {
    var eventLoop: EventLoop { self.responder.eventLoop }

    func streamAttached(_ attachment: StreamAttachment) {
        guard case .waitingForAttach(_, let stream) = self.state else {
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
            self.shared.metrics.record { $0.replayHits += 1 }
        case .miss:
            headers.add(name: "Lifeline-Replay", value: "miss")
            self.shared.metrics.record { $0.replayMisses += 1 }
        }
        for (name, value) in stream.originHeaders {
            headers.add(name: name, value: value)
        }
        self.responder.writeHead(status: .ok, headers: headers, isEventStream: true)

        // The opening bytes: a comment so the stream is seen open at once, the retry line, the
        // gap event, then what the client missed.
        var intro = self.responder.allocator.buffer(capacity: 128)
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
        self.state = .streaming(attachment.membership)
        let introChunk = StreamChunk(bytes: intro, eventCount: 0, allocator: self.responder.allocator)
        self.send(introChunk.bytes, counted: false, chunk: introChunk)
        // Replay in pieces of about 64 KiB: they go out as the client takes them.
        var piece: [ByteBuffer] = []
        var pieceBytes = 0
        for (index, event) in attachment.replay.enumerated() {
            piece.append(event.bytes)
            pieceBytes += event.bytes.readableBytes
            if pieceBytes >= 64 << 10 || index == attachment.replay.count - 1 {
                let chunk = StreamChunk(joining: piece, eventCount: piece.count, allocator: self.responder.allocator)
                self.send(chunk.bytes, counted: false, chunk: chunk)
                piece.removeAll(keepingCapacity: true)
                pieceBytes = 0
            }
        }
        self.responder.flush()
        self.loop.heartbeatClock.register(attachment.membership)
    }

    func streamDeliver(_ chunk: StreamChunk, now: NIODeadline) {
        guard case .streaming(let membership) = self.state else { return }
        guard self.send(chunk.bytes, counted: true, chunk: chunk) else { return }
        self.eventsSent += chunk.eventCount
        self.loop.heartbeatClock.touch(membership, now: now)
        self.responder.flush()
    }

    func heartbeatDue() {
        guard case .streaming = self.state else { return }
        // Only when nothing is waiting: a client with queued bytes is not idle.
        guard self.queue.isEmpty else { return }
        self.send(self.loop.heartbeat.bytes, counted: true, chunk: self.loop.heartbeat)
        self.responder.flush()
    }

    func streamEnded(_ reason: StreamEndReason) {
        guard case .streaming = self.state else { return }
        // What is queued goes out before the end: it is bounded by --client-buffer.
        while let buffer = self.queue.dequeue() {
            self.responder.writeBody(buffer)
        }
        self.finish(reason: "stream ended (\(reason))")
        // At shutdown the connection goes too, so that the client reconnects elsewhere.
        self.responder.endResponse(closeConnection: reason == .shutdown)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        guard case .waitingForAttach(let request, _) = self.state else { return }
        switch refusal {
        case .ended:
            self.joinStream(request)
        case .needsPrivateStream(let lastEventID):
            self.openStream(request, ticket: nil, resumeID: lastEventID)
        }
    }
}

// MARK: - Origin connection

extension ClientExchange: OriginConnectionDelegate {
    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        let isEventStream = head.headers.first(name: "content-type").map(UpstreamSession.isEventStream) ?? false
        switch self.state {
        case .opening(let request, let current, let ticket, let resumeID) where current === connection:
            if head.status == .ok && isEventStream {
                self.makeStream(request, ticket: ticket, resumeID: resumeID, connection: connection, originHead: head)
                return
            }
            // Not an event stream: this client gets the origin's answer as it is, and no stream
            // is made; the clients that waited make requests of their own.
            if let ticket {
                self.shared.hub.abandon(ticket)
            }
            guard !self.clientGone else {
                self.becomeFinished()
                connection.detachAndClose()
                return
            }
            self.state = .proxying(request, connection, headSent: true)
            self.responder.writeHead(status: head.status, headers: head.headers, isEventStream: false)
            self.responder.flush()
        case .proxying(let request, let current, headSent: false) where current === connection:
            let encoded = head.headers["content-encoding"].contains { $0.lowercased() != "identity" }
            if request.head.method == .GET, head.status == .ok, isEventStream, !encoded {
                self.adoptAsStream(request, connection: connection, originHead: head)
                return
            }
            self.state = .proxying(request, connection, headSent: true)
            self.responder.writeHead(status: head.status, headers: head.headers, isEventStream: false)
            self.responder.flush()
        default:
            break
        }
    }

    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        guard case .proxying(_, let current, headSent: true) = self.state, current === connection else { return }
        self.responder.writeBody(body)
        if !self.responder.isWritable {
            connection.pauseReading()
        }
    }

    func originConnectionReadComplete(_ connection: OriginConnection) {
        guard case .proxying(_, let current, _) = self.state, current === connection else { return }
        self.responder.flush()
    }

    func originConnectionDidEnd(_ connection: OriginConnection) {
        guard case .proxying(_, let current, _) = self.state, current === connection else { return }
        self.finish(reason: "response complete")
        self.responder.endResponse(closeConnection: false)
    }

    func originConnection(_ connection: OriginConnection, didFail error: Error) {
        switch self.state {
        case .opening(let request, let current, let ticket, let resumeID) where current === connection:
            // The origin could not be reached: make the stream anyway and let it reconnect, so
            // that an EventSource opened during an origin restart stays open.
            self.shared.logger.info("origin unreachable for a new stream; retrying", metadata: ["error": "\(error)"])
            self.makeStream(request, ticket: ticket, resumeID: resumeID, connection: nil, originHead: nil)
        case .proxying(_, let current, let headSent) where current === connection:
            if headSent {
                // The body was cut short: so is the client's response.
                self.finish(reason: "origin failed mid-response")
                self.responder.abortResponse()
            } else if case OriginConnection.Failure.headTimeout = error {
                self.finish(reason: "origin timeout (504)")
                self.responder.respond(status: .gatewayTimeout, body: "origin did not answer in time\n", closeConnection: false)
            } else {
                self.shared.logger.info("origin unreachable", metadata: ["error": "\(error)"])
                self.finish(reason: "origin unreachable (502)")
                self.responder.respond(status: .badGateway, body: "origin unreachable\n", closeConnection: false)
            }
        default:
            break
        }
    }
}

// MARK: - Helpers

extension ClientExchange {
    static func split(uri: String) -> (path: String, query: String?) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri, nil) }
        return (String(uri[..<mark]), String(uri[uri.index(after: mark)...]))
    }

    /// Removes every `name=value` item from a query; returns the rest and the last value.
    static func removeParameter(_ name: String, from query: String?) -> (query: String?, value: String?) {
        guard let query, !query.isEmpty else { return (query, nil) }
        var kept: [Substring] = []
        var value: String?
        for item in query.split(separator: "&", omittingEmptySubsequences: false) {
            let itemName = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            if itemName == name {
                let raw = item.dropFirst(name.count + 1)
                value = String(raw).removingPercentEncoding() ?? String(raw)
            } else {
                kept.append(item)
            }
        }
        let rest = kept.joined(separator: "&")
        return (rest.isEmpty ? nil : rest, value)
    }

    static func joinQueries(_ first: String?, _ second: String?) -> String? {
        switch (first, second) {
        case (nil, nil): return nil
        case (let one?, nil), (nil, let one?): return one
        case (let one?, let two?): return one + "&" + two
        }
    }
}

extension String {
    /// Decodes `%XX` escapes and `+`; nil when an escape is malformed.
    func removingPercentEncoding() -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(self.utf8.count)
        var iterator = self.utf8.makeIterator()
        while let byte = iterator.next() {
            switch byte {
            case UInt8(ascii: "%"):
                guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
                else { return nil }
                bytes.append(high << 4 | low)
            case UInt8(ascii: "+"):
                bytes.append(UInt8(ascii: " "))
            default:
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
