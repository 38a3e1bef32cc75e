import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client connection over HTTP/1.1: admission, the request-head timeout, keep-alive and
/// pipelining, and the framing of responses. Each request is a `ClientExchange`, which this
/// handler serves as its `ClientResponder`.
///
/// The handler writes its own response heads and framing, so that event bytes reach the socket
/// as the stream's shared, pre-framed buffers.
///
/// Once a request is answered with an event stream and the request has been read to its end, the
/// connection carries nothing but that stream: the request decoder (about 2 KiB with its parser
/// and header storage) is removed, what the client sends from then on is dropped (it has no
/// request to belong to; end of file and errors still arrive), and the connection closes when
/// the stream ends. Most of a gateway's connections are such idle streams, so this is most of
/// what an idle client costs.
///
/// Memory per connection stays bounded whatever the client sends: as SwiftNIO's
/// `HTTPServerPipelineHandler` does, reads are withheld (`read()` is not passed on) while a
/// pipelined request waits behind the current response, so at most what one read brought is
/// parked; and while a proxied request's body is paused because its origin is not taking bytes.
/// A client that leaves is still seen (end of file and resets reach the channel without reads).
final class HTTP1ServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State {
        /// Between requests.
        case awaitingHead
        /// A request is being answered.
        case exchanging(ClientExchange, Response)
        /// The connection is closing or closed.
        case closed
    }

    /// How the current response is framed.
    struct Response {
        var version: HTTPVersion
        var isHEAD: Bool
        /// Body bytes are sent as HTTP/1.1 chunks.
        var chunked = false
        /// The response has no body (HEAD, 204, 304).
        var bodyless = false
        /// The connection closes after this response.
        var closeAfter = false
        var headSent = false
        var isEventStream = false
    }

    // Stored properties are laid out in this order: the flags come last, packed together, since
    // every idle client holds one of these.
    private let shared: GatewayShared
    private let loop: LoopContext
    /// The request decoder in front of this handler, until the connection is streaming only.
    private var decoder: RemovableChannelHandler?
    private var context: ChannelHandlerContext?
    private var state = State.awaitingHead
    private var headTimer: Scheduled<Void>?
    /// Request parts that arrived while a response was in flight (pipelining). Reads are
    /// withheld while any are parked, so this holds at most what one read brought.
    private var pipelined: [HTTPServerRequestPart] = []
    private(set) var clientAddress: String?

    // For the access log line.
    private let connectedAt: NIODeadline
    private var requests = 0
    private var eventsSent = 0
    private var bytesSent = 0
    private var lastTarget = "-"
    private var endReason = "client closed"

    private let isTLS: Bool
    /// The decoder is gone: no further request can be read on this connection.
    private var decoderReleased = false
    /// The current response's body goes out as HTTP/1.1 chunks (kept apart from `Response` so
    /// that writing an event does not copy the state).
    private var bodyChunked = false
    /// The current request's end has been read.
    private var requestEnded = true
    /// The response went out before the request's body was read: the rest of it is dropped.
    private var discardingBody = false
    private var admitted = false
    private var started = false
    /// The gateway is shutting down: no more requests on this connection.
    private var shuttingDown = false
    /// The current proxied request's body waits for its origin: reads are withheld.
    private var bodyPaused = false
    /// A `read()` was withheld; it is passed on when reads may flow again.
    private var readPending = false
    /// The current request announced a body (Content-Length or Transfer-Encoding).
    private var requestHasBody = false

    init(shared: GatewayShared, loop: LoopContext, scheme: String = "http", decoder: RemovableChannelHandler? = nil) {
        self.shared = shared
        self.loop = loop
        self.isTLS = scheme == "https"
        self.decoder = decoder
        self.connectedAt = loop.eventLoop.now
    }

    // MARK: Connection lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.loop.addConnection(context)
        if context.channel.isActive {
            self.start(context: context)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        self.start(context: context)
        context.fireChannelActive()
    }

    /// Admission and the first head timer; once per connection (the handler may be added to an
    /// active channel after TLS and protocol negotiation).
    private func start(context: ChannelHandlerContext) {
        guard !self.started else { return }
        self.started = true
        self.clientAddress = context.channel.remoteAddress?.ipAddress
        if let refusal = self.shared.limiter.admit(address: self.clientAddress ?? "unknown") {
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
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.tearDown()
        if self.admitted || self.endReason.hasPrefix("refused") {
            if self.admitted {
                self.admitted = false
                self.shared.limiter.release(address: self.clientAddress ?? "unknown")
            }
            let duration = context.eventLoop.now - self.connectedAt
            self.shared.accessLogger.info(
                "connection closed",
                metadata: [
                    "client": "\(self.clientAddress ?? "-")",
                    "protocol": "http/1.1",
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
        self.loop.removeConnection(context)
        self.tearDown()
        self.context = nil
    }

    /// The connection is gone: the exchange in flight leaves its stream or origin.
    private func tearDown() {
        self.headTimer?.cancel()
        self.headTimer = nil
        if case .exchanging(let exchange, _) = self.state {
            exchange.clientGone()
            self.account(exchange)
        }
        self.state = .closed
    }

    private func account(_ exchange: ClientExchange) {
        self.eventsSent += exchange.eventsSent
        self.lastTarget = exchange.target
        if exchange.endReason != "response complete" {
            self.endReason = exchange.endReason
        }
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
                self.tearDown()
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
        self.tearDown()
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

    // MARK: Reads

    /// Reads are withheld while a pipelined request is parked or a request body is paused.
    private var readsHeld: Bool {
        !self.pipelined.isEmpty || self.bodyPaused
    }

    func read(context: ChannelHandlerContext) {
        if self.readsHeld {
            self.readPending = true
        } else {
            context.read()
        }
    }

    /// Passes on a withheld `read()` once nothing holds reads any more.
    private func resumeReadsIfPossible(context: ChannelHandlerContext) {
        guard self.readPending, !self.readsHeld else { return }
        self.readPending = false
        context.read()
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Without the decoder, reads are raw bytes (or a part the decoder emitted while it was
        // removed): they belong to no request.
        guard !self.decoderReleased else { return }
        self.handle(self.unwrapInboundIn(data), context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if case .exchanging(let exchange, _) = self.state {
            exchange.clientWritabilityChanged()
        }
        context.fireChannelWritabilityChanged()
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        if self.discardingBody {
            if case .head = part {
                self.discardingBody = false
            } else {
                if case .end = part {
                    self.discardingBody = false
                    self.requestEnded = true
                }
                return
            }
        }
        switch (part, self.state) {
        case (.head(let head), .awaitingHead):
            self.headTimer?.cancel()
            self.headTimer = nil
            self.requests += 1
            self.requestEnded = false
            self.bodyPaused = false
            self.requestHasBody =
                head.headers["transfer-encoding"].isEmpty == false
                || head.headers["content-length"].contains { $0 != "0" }
            let exchange = ClientExchange(shared: self.shared, loop: self.loop, responder: self)
            self.bodyChunked = false
            self.state = .exchanging(
                exchange,
                Response(version: head.version, isHEAD: head.method == .HEAD, closeAfter: !head.isKeepAlive)
            )
            exchange.start(head)
        case (_, .closed):
            break
        case (.head, .exchanging):
            self.pipelined.append(part)
        case (.body(let body), .exchanging(let exchange, _)) where !self.requestEnded:
            exchange.receiveBody(body)
        case (.end, .exchanging(let exchange, let response)) where !self.requestEnded:
            self.requestEnded = true
            exchange.receiveEnd()
            if response.isEventStream {
                self.releaseDecoderIfStreamingOnly(context: context)
            }
        case (.body, _), (.end, _):
            // Parts of a pipelined request.
            self.pipelined.append(part)
        }
    }

    // MARK: Writing

    private func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        self.bytesSent += buffer.readableBytes
        context.write(self.wrapOutboundOut(buffer), promise: nil)
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
    private func responseFinished(close: Bool) {
        guard let context = self.context, case .exchanging(let exchange, _) = self.state else { return }
        self.account(exchange)
        self.bodyPaused = false
        // A response that went out before its request's body was read closes the connection:
        // reading and dropping a body that may never end is not worth a connection.
        let unreadBody = !self.requestEnded && self.requestHasBody
        if close || self.shuttingDown || self.decoderReleased || unreadBody {
            self.state = .closed
            context.close(promise: nil)
            return
        }
        // A request answered before its end arrived (a 404 at the head): its rest is dropped.
        self.discardingBody = !self.requestEnded
        self.state = .awaitingHead
        self.armHeadTimer(context: context)
        if !self.pipelined.isEmpty {
            let parts = self.pipelined
            self.pipelined.removeAll()
            for part in parts {
                self.handle(part, context: context)
            }
        }
        self.resumeReadsIfPossible(context: context)
    }
}

// MARK: - Responder for the current exchange

extension HTTP1ServerHandler: ClientResponder {
    var eventLoop: EventLoop { self.loop.eventLoop }
    var allocator: ByteBufferAllocator { self.context?.channel.allocator ?? ByteBufferAllocator() }
    var clientScheme: String { self.isTLS ? "https" : "http" }
    var isWritable: Bool { self.context?.channel.isWritable ?? false }

    private var response: Response? {
        if case .exchanging(_, let response) = self.state { return response }
        return nil
    }

    private func setResponse(_ response: Response) {
        if case .exchanging(let exchange, _) = self.state {
            self.state = .exchanging(exchange, response)
        }
    }

    func writeHead(status: HTTPResponseStatus, headers: HTTPHeaders, isEventStream: Bool) {
        guard let context = self.context, var response = self.response, !response.headSent else { return }
        var headers = isEventStream ? headers : HopByHopHeaders.removing(from: headers)
        if isEventStream {
            // An event stream has no length: chunked for HTTP/1.1, until close for HTTP/1.0.
            response.isEventStream = true
            if response.version == .http1_1 {
                response.chunked = true
                headers.add(name: "Transfer-Encoding", value: "chunked")
            } else {
                response.closeAfter = true
            }
        } else {
            response.bodyless =
                response.isHEAD || status.code < 200 || status == .noContent || status == .notModified
            if response.bodyless || headers.first(name: "content-length") != nil {
                // As the origin sent it (a HEAD answer keeps its Content-Length).
            } else if response.version == .http1_1 {
                response.chunked = true
                headers.add(name: "Transfer-Encoding", value: "chunked")
            } else {
                response.closeAfter = true
            }
        }
        if response.closeAfter {
            headers.replaceOrAdd(name: "Connection", value: "close")
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTP1ResponseHead.write(status: status, headers: headers.map { ($0.name, $0.value) }, into: &buffer)
        self.write(buffer, context: context)
        response.headSent = true
        self.bodyChunked = response.chunked
        self.setResponse(response)
        if isEventStream {
            self.releaseDecoderIfStreamingOnly(context: context)
        }
    }

    /// Removes the request decoder once the connection can carry nothing
    /// but the current event stream: its request has been read to the end and nothing is
    /// pipelined behind it (a request behind an endless response could not be answered anyway).
    private func releaseDecoderIfStreamingOnly(context: ChannelHandlerContext) {
        guard self.requestEnded, self.pipelined.isEmpty, !self.discardingBody, let decoder = self.decoder else { return }
        self.decoder = nil
        self.decoderReleased = true
        context.pipeline.syncOperations.removeHandler(decoder, promise: nil)
    }

    func writeChunk(_ chunk: StreamChunk) {
        guard let context = self.context, case .exchanging = self.state else { return }
        self.write(self.bodyChunked ? chunk.chunked : chunk.bytes, context: context)
    }

    func writeBody(_ bytes: ByteBuffer) {
        guard let context = self.context, let response = self.response, !response.bodyless else { return }
        if response.chunked {
            self.write(StreamChunk(bytes: bytes, eventCount: 0, allocator: context.channel.allocator).chunked, context: context)
        } else {
            self.write(bytes, context: context)
        }
    }

    func flush() {
        self.context?.flush()
    }

    func endResponse(closeConnection: Bool) {
        guard let context = self.context, let response = self.response else { return }
        if response.chunked {
            self.write(HTTP1ResponseHead.lastChunk, context: context)
        }
        context.flush()
        self.responseFinished(close: closeConnection || response.closeAfter)
    }

    func abortResponse() {
        guard let context = self.context, case .exchanging(let exchange, _) = self.state else { return }
        self.account(exchange)
        self.state = .closed
        context.close(promise: nil)
    }

    func pauseRequestBody() {
        self.bodyPaused = true
    }

    func resumeRequestBody() {
        guard self.bodyPaused else { return }
        self.bodyPaused = false
        if let context = self.context {
            self.resumeReadsIfPossible(context: context)
        }
    }

    func continueRequestBody() {
        guard let context = self.context, let response = self.response, !response.headSent,
            response.version == .http1_1, !self.requestEnded
        else { return }
        self.write(HTTP1ResponseHead.continue, context: context)
        context.flush()
    }

    func respond(status: HTTPResponseStatus, body: String, closeConnection: Bool) {
        guard let context = self.context, let response = self.response else { return }
        let close = closeConnection || response.closeAfter
        self.write(HTTP1ResponseHead.simple(status: status, body: body, close: close), context: context)
        context.flush()
        self.responseFinished(close: close)
    }
}
