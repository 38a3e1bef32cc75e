import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client connection over HTTP/1.1: routes each request either into a shared event stream
/// (as one of its subscribers) or straight through to the origin (plain proxying, streamed).
///
/// The handler writes its own response heads and framing, so that event bytes reach the socket
/// as the stream's shared, pre-framed buffers.
final class HTTP1ServerHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    /// One request, as far as routing and streams are concerned.
    struct Request {
        var head: HTTPRequestHead
        var match: Router.Match
        /// The query for the origin, without the resume parameter.
        var upstreamQuery: String?
        /// `Last-Event-ID` from the header or the resume parameter.
        var lastEventID: String?
        var key: StreamKey
        var keepAlive: Bool
    }

    enum State {
        /// Between requests.
        case awaitingHead
        /// Another client is opening the stream; we hear from the hub.
        case waitingForOpening(Request)
        /// This client opens the stream: its request went to the origin and the answer decides
        /// whether a stream is made (`ticket` nil: a private stream).
        case opening(Request, OriginConnection, StreamHub.OpeningTicket?, resumeID: String?)
        /// Attached or about to be; `streamAttached` or `streamRefused` follows.
        case waitingForAttach(Request, Stream)
        /// An event-stream response is being written.
        case streaming(Request, StreamMembership, chunked: Bool)
        /// A plain response is being proxied.
        case proxying(Request, OriginConnection, Proxying)
        /// The connection is closing or closed.
        case closed
    }

    struct Proxying {
        var headSent = false
        /// How the body goes to the client: chunk-framed, or raw (Content-Length or close-delimited).
        var chunked = false
        var hasBody = true
        var closeAfter = false
    }

    private let shared: GatewayShared
    private let loop: LoopContext
    private var context: ChannelHandlerContext?
    private var state = State.awaitingHead
    private var queue: SubscriberQueue
    private var heartbeatEntry: HeartbeatEntry?
    private var headTimer: Scheduled<Void>?
    /// Requests that arrived while a response was in flight (pipelining).
    private var pipelined: [HTTPServerRequestPart] = []
    private var requestBodyEnded = true
    /// The response went out before the request's body was read: the rest of it is dropped.
    private var discardingBody = false
    private var clientAddress = "unknown"
    private var admitted = false
    /// The connection closed while this client was opening a stream.
    private var clientGone = false
    /// The gateway is shutting down: no more requests on this connection.
    private var shuttingDown = false

    // For the access log line.
    private let connectedAt: NIODeadline
    private var requests = 0
    private var eventsSent = 0
    private var bytesSent = 0
    private var lastTarget = "-"
    private var endReason = "client closed"

    init(shared: GatewayShared, loop: LoopContext) {
        self.shared = shared
        self.loop = loop
        self.queue = SubscriberQueue(limit: shared.configuration.clientBuffer)
        self.connectedAt = loop.eventLoop.now
    }

    // MARK: Connection lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        self.clientAddress = context.channel.remoteAddress?.ipAddress ?? "unknown"
        if let refusal = self.shared.limiter.admit(address: self.clientAddress) {
            self.shared.metrics.record { $0.connectionsRefused += 1 }
            let (status, text) =
                refusal == .tooManyClients
                ? (HTTPResponseStatus.serviceUnavailable, "too many clients\n")
                : (HTTPResponseStatus.tooManyRequests, "too many connections from your address\n")
            self.endReason = "refused (\(status.code))"
            self.respondAndClose(context: context, status: status, body: text, extraHeaders: [("Retry-After", "5")])
            return
        }
        self.admitted = true
        self.shared.metrics.record { $0.connectionsAccepted += 1 }
        self.armHeadTimer(context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.tearDown()
        if self.admitted || self.endReason.hasPrefix("refused") {
            if self.admitted {
                self.admitted = false
                self.shared.limiter.release(address: self.clientAddress)
            }
            let duration = context.eventLoop.now - self.connectedAt
            self.shared.accessLogger.info(
                "connection closed",
                metadata: [
                    "client": "\(self.clientAddress)",
                    "target": "\(self.lastTarget)",
                    "requests": "\(self.requests)",
                    "duration_ms": "\(duration.nanoseconds / 1_000_000)",
                    "events": "\(self.eventsSent)",
                    "bytes": "\(self.bytesSent)",
                    "end": "\(self.endReason)",
                ]
            )
        }
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.tearDown()
        self.context = nil
    }

    /// Leaves any stream and drops any origin connection; the connection is gone.
    private func tearDown() {
        self.headTimer?.cancel()
        self.headTimer = nil
        self.stopHeartbeats()
        self.queue.removeAll()
        switch self.state {
        case .streaming(_, let membership, _):
            membership.leave()
        case .proxying(_, let connection, _):
            connection.detachAndClose()
        case .opening:
            // The origin's answer still decides whether a stream is made for the others
            // waiting; see `originConnection(_:didReceiveHead:)`.
            self.clientGone = true
            return
        case .awaitingHead, .waitingForOpening, .waitingForAttach, .closed:
            break
        }
        self.state = .closed
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GatewayShutdown {
            self.shuttingDown = true
            if case .awaitingHead = self.state {
                self.endReason = "gateway shutdown"
                self.tearDown()
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let parserError = error as? HTTPParserError {
            self.shared.metrics.record { $0.badRequests += 1 }
            guard case .awaitingHead = self.state else {
                context.close(promise: nil)
                return
            }
            switch parserError {
            case .headerOverflow:
                self.endReason = "request head too large (431)"
                self.respondAndClose(
                    context: context,
                    status: .init(statusCode: 431, reasonPhrase: "Request Header Fields Too Large"),
                    body: "request head too large\n"
                )
            default:
                self.endReason = "bad request (400)"
                self.respondAndClose(context: context, status: .badRequest, body: "bad request\n")
            }
            return
        }
        // Resets and the like: nothing to say to a client that is gone.
        self.endReason = "error: \(error)"
        context.close(promise: nil)
    }

    private func armHeadTimer(context: ChannelHandlerContext) {
        self.headTimer?.cancel()
        let timeout = self.shared.configuration.requestHeadTimeout
        guard timeout > .zero else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        self.headTimer = context.eventLoop.scheduleTask(in: timeout) {
            bound.value.headTimedOut()
        }
    }

    private func headTimedOut() {
        self.headTimer = nil
        guard case .awaitingHead = self.state, let context = self.context else { return }
        if self.requests == 0 {
            self.endReason = "request head timeout (408)"
            self.respondAndClose(context: context, status: .requestTimeout, body: "request head timeout\n")
        } else {
            self.endReason = "idle keep-alive timeout"
            context.close(promise: nil)
        }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = self.unwrapInboundIn(data)
        self.handle(part, context: context)
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        if self.discardingBody {
            if case .end = part {
                self.discardingBody = false
                self.requestBodyEnded = true
            }
            if case .head = part {} else { return }
            self.discardingBody = false
        }
        switch (part, self.state) {
        case (.head(let head), .awaitingHead):
            self.headTimer?.cancel()
            self.headTimer = nil
            self.requests += 1
            self.requestBodyEnded = false
            self.startRequest(head, context: context)
        case (.head, .closed), (.body, .closed), (.end, .closed):
            break
        case (.head, _):
            self.pipelined.append(part)
        case (.body(let body), .proxying(_, let connection, _)) where !self.requestBodyEnded:
            connection.sendBody(body)
        case (.end, .proxying(_, let connection, _)) where !self.requestBodyEnded:
            self.requestBodyEnded = true
            connection.endRequest()
        case (.body, _), (.end, _):
            if !self.pipelined.isEmpty || self.requestBodyEnded {
                self.pipelined.append(part)
            } else if case .end = part {
                self.requestBodyEnded = true
            }
            // A body on a stream request has nowhere to go.
        }
    }

    private func startRequest(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard head.uri.hasPrefix("/") else {
            self.shared.metrics.record { $0.badRequests += 1 }
            self.endReason = "bad request target (400)"
            self.respondAndClose(context: context, status: .badRequest, body: "bad request target\n")
            return
        }
        let (path, query) = Self.split(uri: head.uri)
        guard let match = self.shared.router.match(path: path) else {
            self.lastTarget = path
            self.respondLocally(context: context, head: head, status: .notFound, body: "no route for \(path)\n")
            return
        }
        let parameter = self.shared.configuration.lastEventIDParameter
        let (upstreamQuery, queryLastEventID) = Self.removeParameter(parameter, from: query)
        var lastEventID = head.headers.first(name: "last-event-id") ?? queryLastEventID
        if lastEventID?.isEmpty ?? false {
            lastEventID = nil
        }
        let policy = self.shared.configuration.sharePolicy
        // The route's own query is part of the origin URL, so it is part of the key.
        let fullQuery = Self.joinQueries(match.route.origin.baseQuery, upstreamQuery)
        let key = policy.key(
            method: head.method.rawValue,
            origin: match.route.origin.authority,
            path: match.upstreamPath,
            query: fullQuery,
            header: { head.headers.first(name: $0) }
        )
        let request = Request(
            head: head,
            match: match,
            upstreamQuery: fullQuery,
            lastEventID: lastEventID,
            key: key,
            keepAlive: head.isKeepAlive
        )
        self.lastTarget = "\(key)"
        let wantsEvents = head.headers["accept"].contains { $0.lowercased().contains("text/event-stream") }
        if head.method == .GET, wantsEvents || self.shared.hub.stream(for: key) != nil {
            self.shared.metrics.record { $0.streamRequests += 1 }
            self.joinStream(request, context: context)
        } else {
            self.shared.metrics.record { $0.proxiedRequests += 1 }
            self.proxy(request, context: context)
        }
    }

    // MARK: Streams

    private func joinStream(_ request: Request, context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: context.eventLoop) { outcome in
            loopBound.value.openingFinished(outcome)
        }
        switch lookup {
        case .stream(let stream):
            self.state = .waitingForAttach(request, stream)
            stream.attach(self, lastEventID: request.lastEventID)
        case .wait:
            self.state = .waitingForOpening(request)
        case .open(let ticket):
            let resumeID = self.shared.configuration.stream.replayMiss == .upstream ? request.lastEventID : nil
            self.openStream(request, ticket: ticket, resumeID: resumeID, context: context)
        }
    }

    /// Turns a plain request whose answer is an event stream into a stream subscription: the
    /// connection opens the stream, or, if one exists or is opening, is dropped for it.
    private func adoptAsStream(
        _ request: Request,
        connection: OriginConnection,
        originHead: HTTPResponseHead,
        context: ChannelHandlerContext
    ) {
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let lookup = self.shared.hub.lookup(request.key, on: context.eventLoop) { outcome in
            loopBound.value.openingFinished(outcome)
        }
        switch lookup {
        case .open(let ticket):
            let resumeID = self.shared.configuration.stream.replayMiss == .upstream ? request.lastEventID : nil
            self.makeStream(
                request,
                ticket: ticket,
                resumeID: resumeID,
                connection: connection,
                originHead: originHead,
                eventLoop: context.eventLoop
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

    private func openingFinished(_ outcome: StreamHub.OpeningOutcome) {
        guard case .waitingForOpening(let request) = self.state, let context = self.context else { return }
        switch outcome {
        case .stream(let stream):
            self.state = .waitingForAttach(request, stream)
            stream.attach(self, lastEventID: request.lastEventID, waitedForOpening: true)
        case .notAStream:
            self.proxy(request, context: context)
        }
    }

    /// Sends this client's request to the origin to open a stream (shared when `ticket` is
    /// given, private otherwise).
    private func openStream(
        _ request: Request,
        ticket: StreamHub.OpeningTicket?,
        resumeID: String?,
        context: ChannelHandlerContext
    ) {
        var head = self.upstreamHead(for: request, forStream: true)
        if let resumeID {
            head.headers.replaceOrAdd(name: "Last-Event-ID", value: resumeID)
        }
        let connection = self.openOrigin(request, head: head, context: context)
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
        originHead: HTTPResponseHead?,
        eventLoop: EventLoop
    ) {
        let configuration = self.shared.configuration
        let upstreamHead = self.upstreamHead(for: request, forStream: true)
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
            requestHead: upstreamHead,
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
            self.state = .closed
            return  // The client left while the stream was opening; the stream lingers for others.
        }
        self.state = .waitingForAttach(request, stream)
        stream.attach(self, lastEventID: request.lastEventID, isCreator: true)
    }

    private func upstreamHead(for request: Request, forStream: Bool) -> HTTPRequestHead {
        var head = UpstreamRequest.head(
            from: request.head,
            target: request.match.route.origin,
            path: request.match.upstreamPath,
            query: request.upstreamQuery,
            clientAddress: self.clientAddress == "unknown" ? nil : self.clientAddress,
            forStream: forStream
        )
        if forStream {
            head.headers.replaceOrAdd(name: "Accept", value: "text/event-stream")
        }
        return head
    }

    private func openOrigin(_ request: Request, head: HTTPRequestHead, context: ChannelHandlerContext) -> OriginConnection {
        OriginConnection.open(
            to: request.match.route.origin,
            head: head,
            on: context.eventLoop,
            connectTimeout: self.shared.configuration.upstream.connectTimeout,
            headTimeout: self.shared.configuration.upstream.headTimeout,
            delegate: self
        )
    }

    // MARK: Plain proxying

    private func proxy(_ request: Request, context: ChannelHandlerContext) {
        let connection = self.openOrigin(request, head: self.upstreamHead(for: request, forStream: false), context: context)
        self.state = .proxying(request, connection, Proxying())
        if self.requestBodyEnded {
            connection.endRequest()
        }
        // Body parts that arrived while a stream was being looked up were dropped; a request
        // that can have a body (not GET) never takes that path.
    }

    private func sendProxiedHead(_ head: HTTPResponseHead, request: Request, context: ChannelHandlerContext) -> Proxying {
        var proxying = Proxying()
        var headers = HopByHopHeaders.removing(from: head.headers)
        let status = head.status
        let noBody =
            request.head.method == .HEAD || status.code < 200 || status == .noContent || status == .notModified
        proxying.hasBody = !noBody
        if noBody {
            // As the origin sent it (a HEAD answer keeps its Content-Length).
        } else if headers.first(name: "content-length") != nil {
            proxying.chunked = false
        } else if request.head.version == .http1_1 {
            proxying.chunked = true
            headers.add(name: "Transfer-Encoding", value: "chunked")
        } else {
            proxying.closeAfter = true
        }
        if !request.keepAlive || proxying.closeAfter {
            proxying.closeAfter = true
            headers.add(name: "Connection", value: "close")
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTP1ResponseHead.write(status: status, headers: headers.map { ($0.name, $0.value) }, into: &buffer)
        self.write(buffer, context: context)
        context.flush()
        proxying.headSent = true
        return proxying
    }

    // MARK: Writing

    private func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        self.bytesSent += buffer.readableBytes
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    /// Writes subscriber bytes, or queues them while the connection is not taking them.
    /// Returns false when the client was disconnected for being too slow.
    @discardableResult
    private func send(_ buffer: ByteBuffer, counted: Bool, context: ChannelHandlerContext) -> Bool {
        if self.queue.isEmpty && context.channel.isWritable {
            self.write(buffer, context: context)
            return true
        }
        if self.queue.enqueue(buffer, counted: counted) == .overflow {
            self.shared.metrics.record { $0.slowClientsDisconnected += 1 }
            self.endReason = "slow client (over --client-buffer)"
            self.shared.logger.info(
                "client over --client-buffer; disconnecting",
                metadata: ["client": "\(self.clientAddress)", "stream": "\(self.lastTarget)"]
            )
            self.tearDown()
            context.close(promise: nil)
            return false
        }
        return true
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            switch self.state {
            case .streaming:
                while context.channel.isWritable, let buffer = self.queue.dequeue() {
                    self.write(buffer, context: context)
                }
                context.flush()
            case .proxying(_, let connection, _):
                connection.resumeReading()
            default:
                break
            }
        }
        context.fireChannelWritabilityChanged()
    }

    private func respondLocally(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        status: HTTPResponseStatus,
        body: String
    ) {
        let close = !head.isKeepAlive
        self.write(HTTP1ResponseHead.simple(status: status, body: body, close: close), context: context)
        context.flush()
        self.state = .awaitingHead
        self.responseFinished(close: close, context: context)
    }

    private func respondAndClose(
        context: ChannelHandlerContext,
        status: HTTPResponseStatus,
        body: String,
        extraHeaders: [(String, String)] = []
    ) {
        self.tearDown()
        let buffer = HTTP1ResponseHead.simple(status: status, body: body, close: true, extraHeaders: extraHeaders)
        self.bytesSent += buffer.readableBytes
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(buffer)).whenComplete { _ in
            boundContext.value.close(promise: nil)
        }
    }

    /// The response is complete: wait for the next request on this connection, or close it.
    private func responseFinished(close: Bool, context: ChannelHandlerContext) {
        self.stopHeartbeats()
        self.queue.removeAll()
        if close || self.shuttingDown {
            self.state = .closed
            context.close(promise: nil)
            return
        }
        // A request answered before its end arrived (a 404 at the head): its rest is dropped.
        self.discardingBody = !self.requestBodyEnded
        self.state = .awaitingHead
        self.armHeadTimer(context: context)
        if !self.pipelined.isEmpty {
            let parts = self.pipelined
            self.pipelined.removeAll()
            for part in parts {
                self.handle(part, context: context)
            }
        }
    }

    private func stopHeartbeats() {
        if let entry = self.heartbeatEntry {
            self.loop.heartbeatClock.remove(entry)
            self.heartbeatEntry = nil
        }
    }

    // MARK: Helpers

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

// MARK: - Stream subscriber

extension HTTP1ServerHandler: StreamSubscriber, HeartbeatTarget {
    var eventLoop: EventLoop { self.loop.eventLoop }

    func streamAttached(_ attachment: StreamAttachment) {
        guard case .waitingForAttach(let request, let stream) = self.state, let context = self.context else {
            attachment.membership.leave()
            return
        }
        let configuration = self.shared.configuration
        let chunked = request.head.version == .http1_1
        var headers: [(String, String)] = [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ]
        switch attachment.replayStatus {
        case .none:
            break
        case .hit:
            headers.append(("Lifeline-Replay", "hit"))
            self.shared.metrics.record { $0.replayHits += 1 }
        case .miss:
            headers.append(("Lifeline-Replay", "miss"))
            self.shared.metrics.record { $0.replayMisses += 1 }
        }
        headers += stream.originHeaders
        headers.append(chunked ? ("Transfer-Encoding", "chunked") : ("Connection", "close"))
        var head = context.channel.allocator.buffer(capacity: 256)
        HTTP1ResponseHead.write(status: .ok, headers: headers, into: &head)
        self.write(head, context: context)

        // The opening bytes: a comment so the stream is seen open at once, the retry line, the
        // gap event, then what the client missed.
        var intro = context.channel.allocator.buffer(capacity: 128)
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
        self.state = .streaming(request, attachment.membership, chunked: chunked)
        if chunked {
            self.send(StreamChunk(bytes: intro, eventCount: 0).chunked, counted: false, context: context)
        } else {
            self.send(intro, counted: false, context: context)
        }
        // Replay in pieces of about 64 KiB: they go out as the client takes them.
        var piece: [ByteBuffer] = []
        var pieceBytes = 0
        for (index, event) in attachment.replay.enumerated() {
            piece.append(event.bytes)
            pieceBytes += event.bytes.readableBytes
            if pieceBytes >= 64 << 10 || index == attachment.replay.count - 1 {
                let chunk = StreamChunk(joining: piece, eventCount: piece.count, allocator: context.channel.allocator)
                self.send(chunked ? chunk.chunked : chunk.bytes, counted: false, context: context)
                piece.removeAll(keepingCapacity: true)
                pieceBytes = 0
            }
        }
        context.flush()
        self.heartbeatEntry = self.loop.heartbeatClock.register(self)
    }

    func streamDeliver(_ chunk: StreamChunk) {
        guard case .streaming(_, _, let chunked) = self.state, let context = self.context else { return }
        guard self.send(chunked ? chunk.chunked : chunk.bytes, counted: true, context: context) else { return }
        self.eventsSent += chunk.eventCount
        if let entry = self.heartbeatEntry {
            self.loop.heartbeatClock.touch(entry, now: self.loop.eventLoop.now)
        }
        context.flush()
    }

    func heartbeatDue() {
        guard case .streaming(_, _, let chunked) = self.state, let context = self.context else { return }
        // Only when nothing is waiting: a client with queued bytes is not idle.
        guard self.queue.isEmpty else { return }
        self.send(chunked ? self.loop.heartbeat.chunked : self.loop.heartbeat.bytes, counted: true, context: context)
        context.flush()
    }

    func streamEnded(_ reason: StreamEndReason) {
        guard case .streaming(let request, _, let chunked) = self.state, let context = self.context else { return }
        self.endReason = "stream ended (\(reason))"
        // What is queued goes out before the end: it is bounded by --client-buffer.
        while let buffer = self.queue.dequeue() {
            self.write(buffer, context: context)
        }
        if chunked {
            self.write(HTTP1ResponseHead.lastChunk, context: context)
        }
        context.flush()
        // At shutdown the connection goes too, so that the client reconnects elsewhere.
        self.responseFinished(close: !chunked || !request.keepAlive || reason == .shutdown, context: context)
    }

    func streamRefused(_ refusal: StreamRefusal) {
        guard case .waitingForAttach(let request, _) = self.state, let context = self.context else { return }
        switch refusal {
        case .ended:
            self.joinStream(request, context: context)
        case .needsPrivateStream(let lastEventID):
            self.openStream(request, ticket: nil, resumeID: lastEventID, context: context)
        }
    }
}

// MARK: - Origin connection

extension HTTP1ServerHandler: OriginConnectionDelegate {
    func originConnection(_ connection: OriginConnection, didReceiveHead head: HTTPResponseHead) {
        switch self.state {
        case .opening(let request, let current, let ticket, let resumeID) where current === connection:
            let isEventStream = head.headers.first(name: "content-type").map(UpstreamSession.isEventStream) ?? false
            if head.status == .ok && isEventStream {
                self.makeStream(
                    request,
                    ticket: ticket,
                    resumeID: resumeID,
                    connection: connection,
                    originHead: head,
                    eventLoop: connection.eventLoop
                )
                return
            }
            // Not an event stream: this client gets the origin's answer as it is, and no stream
            // is made; the clients that waited make requests of their own.
            if let ticket {
                self.shared.hub.abandon(ticket)
            }
            guard !self.clientGone, let context = self.context else {
                self.state = .closed
                connection.detachAndClose()
                return
            }
            self.state = .proxying(request, connection, self.sendProxiedHead(head, request: request, context: context))
        case .proxying(let request, let current, var proxying) where current === connection:
            guard let context = self.context else { return }
            if proxying.headSent { return }
            let isEventStream = head.headers.first(name: "content-type").map(UpstreamSession.isEventStream) ?? false
            let encoded = head.headers["content-encoding"].contains { $0.lowercased() != "identity" }
            if request.head.method == .GET, head.status == .ok, isEventStream, !encoded {
                // An event stream that the client did not announce (`curl -N` sends no
                // `Accept: text/event-stream`): it gets the same treatment as an EventSource.
                self.adoptAsStream(request, connection: connection, originHead: head, context: context)
                return
            }
            proxying = self.sendProxiedHead(head, request: request, context: context)
            self.state = .proxying(request, connection, proxying)
        default:
            break
        }
    }

    func originConnection(_ connection: OriginConnection, didReceiveBody body: ByteBuffer) {
        guard case .proxying(_, let current, let proxying) = self.state, current === connection,
            proxying.hasBody, let context = self.context
        else { return }
        if proxying.chunked {
            self.write(StreamChunk(bytes: body, eventCount: 0, allocator: context.channel.allocator).chunked, context: context)
        } else {
            self.write(body, context: context)
        }
        if !context.channel.isWritable {
            connection.pauseReading()
        }
    }

    func originConnectionReadComplete(_ connection: OriginConnection) {
        guard case .proxying(_, let current, _) = self.state, current === connection else { return }
        self.context?.flush()
    }

    func originConnectionDidEnd(_ connection: OriginConnection) {
        guard case .proxying(let request, let current, let proxying) = self.state, current === connection,
            let context = self.context
        else { return }
        if proxying.chunked {
            self.write(HTTP1ResponseHead.lastChunk, context: context)
        }
        context.flush()
        self.responseFinished(close: proxying.closeAfter || !request.keepAlive, context: context)
    }

    func originConnection(_ connection: OriginConnection, didFail error: Error) {
        switch self.state {
        case .opening(let request, let current, let ticket, let resumeID) where current === connection:
            // The origin could not be reached: make the stream anyway and let it reconnect, so
            // that an EventSource opened during an origin restart stays open.
            self.shared.logger.info("origin unreachable for a new stream; retrying", metadata: ["error": "\(error)"])
            self.makeStream(
                request,
                ticket: ticket,
                resumeID: resumeID,
                connection: nil,
                originHead: nil,
                eventLoop: connection.eventLoop
            )
        case .proxying(_, let current, let proxying) where current === connection:
            guard let context = self.context else { return }
            if proxying.headSent {
                // The body was cut short: so is the client's response.
                self.endReason = "origin failed mid-response"
                self.tearDown()
                context.close(promise: nil)
            } else if case OriginConnection.Failure.headTimeout = error {
                self.endReason = "origin timeout (504)"
                self.respondAndClose(context: context, status: .gatewayTimeout, body: "origin did not answer in time\n")
            } else {
                self.endReason = "origin unreachable (502)"
                self.shared.logger.info("origin unreachable", metadata: ["error": "\(error)"])
                self.respondAndClose(context: context, status: .badGateway, body: "origin unreachable\n")
            }
        default:
            break
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
