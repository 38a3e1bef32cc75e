import LifelineCore
import Logging
import NIOCore
import NIOHTTP1
import Upstream

/// One client connection over HTTP/1.1: the I/O around `HTTP1ConnectionStateMachine` (which
/// decides keep-alive, pipelining, framing and when reads flow). Admission, the request-head
/// timer, byte counts and the access log are the connection core's (`ClientConnection`), shared
/// with HTTP/2. Each request is a `ClientExchange`, which this handler serves as its
/// `ClientResponder`.
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
/// It is a duplex handler only to hold back `read()` when the state machine says so (a parked
/// pipelined request, a paused request body). A client that leaves is still seen: end of file
/// and resets reach the channel without reads.
final class HTTP1ServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    // One per connection for its whole life: `StreamingClientMemoryTests` notices growth (the
    // object is just under an allocator size class: the flag after `machine` takes that
    // struct's tail padding; the loop and TLS flag are the connection core's).
    /// The request decoder in front of this handler, until the connection is streaming only.
    /// (Its own type, not an existential: a word less in an object sized to an allocator step.)
    private var decoder: ByteToMessageHandler<HTTPRequestDecoder>?
    private var context: ChannelHandlerContext?
    private var machine = HTTP1ConnectionStateMachine()
    /// The channel's writability, kept from `channelWritabilityChanged`: asked per event and
    /// client, and cheaper than a trip to the channel.
    private var channelWritable = true
    /// `--io-uring`: the socket, while the connection is open (-1: not known, or closed), and
    /// where this connection's bytes wait in the loop's `SendBatch`: an index, or
    /// `Self.channelIsClear` / `Self.channelMayHoldBytes` (something went through the channel
    /// since: SwiftNIO may still hold bytes, which a batched send must not overtake).
    private var socketDescriptor: CInt
    var batchSlot: Int32 = HTTP1ServerHandler.channelIsClear
    static let channelIsClear: Int32 = -1
    static let channelMayHoldBytes: Int32 = -2
    /// The exchange answering the current request, while the machine is exchanging.
    private(set) var exchange: ClientExchange?
    private var connection: ClientConnection

    init(
        loop: LoopContext,
        scheme: String = "http",
        decoder: ByteToMessageHandler<HTTPRequestDecoder>? = nil,
        descriptor: CInt? = nil
    ) {
        self.decoder = decoder
        self.connection = ClientConnection(protocol: .http1, loop: loop, tls: scheme == "https")
        self.socketDescriptor = loop.sendBatch == nil ? -1 : descriptor ?? -1
    }

    /// The loop's context (the connection core keeps it).
    private var loop: LoopContext { self.connection.loop }

    /// The decoder is gone: no further request can be read on this connection.
    private var decoderReleased: Bool { self.decoder == nil }

    /// The client's IP address (the connection core keeps it from admission on).
    var clientAddress: String? { self.connection.clientAddress }

    // MARK: Connection lifecycle

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.connection.register(context, protocol: .http1, tls: self.connection.isTLS)
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
        guard self.connection.isPendingAdmission else { return }
        if let refusal = self.connection.admit(address: context.channel.remoteAddress?.ipAddress) {
            self.respondAndClose(context: context, status: refusal.status, body: refusal.body, extraHeaders: [("Retry-After", "5")])
            return
        }
        self.armHeadTimer()
    }

    func channelInactive(context: ChannelHandlerContext) {
        // First: the descriptor is closed, and its number may already be another connection's.
        self.socketDescriptor = -1
        self.tearDown()
        self.connection.close()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.socketDescriptor = -1
        self.connection.unregister(context)
        self.tearDown()
        self.context = nil
    }

    /// The connection is gone: the exchange in flight leaves its stream or origin.
    private func tearDown() {
        self.connection.cancelIdleTimer()
        if let exchange = self.exchange {
            self.exchange = nil
            exchange.clientGone()
            self.connection.account(exchange)
        }
        self.machine.closed()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GatewayDrain {
            // Like a shutdown for what is idle or plain; a stream goes at its drain moment.
            if self.machine.shutdown() {
                self.connection.ended(.drained)
                self.tearDown()
                context.close(promise: nil)
            } else {
                self.exchange?.drainRequested()
            }
            return
        }
        if event is GatewayShutdown {
            if self.machine.shutdown() {
                self.connection.ended(.shutdown)
                self.tearDown()
                context.close(promise: nil)
            }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let parserError = error as? HTTPParserError {
            let refusal: RequestRefusal = parserError == .headerOverflow ? .headTooLarge : .malformed
            self.loop.counters.values.refused[refusal.reason] += 1
            self.connection.ended(.refused(refusal))
            guard self.machine.isAwaitingHead else {
                self.tearDown()
                context.close(promise: nil)
                return
            }
            self.respondAndClose(context: context, status: refusal.status, body: refusal.body)
            return
        }
        // Resets and the like: nothing to say to a client that is gone.
        self.connection.ended(.connectionError("\(error)"))
        self.tearDown()
        context.close(promise: nil)
    }

    /// Waiting for a request head: the connection core's one timer (slowloris, idle keep-alive).
    /// The timer holds the handler until it fires or is cancelled (at the request, or at
    /// `tearDown` when the channel closes or the handler is removed), and no longer: a strong
    /// reference, so that no weak reference (and its side table, for the connection's life)
    /// is made for it.
    private func armHeadTimer() {
        self.connection.armIdleTimer {
            self.headTimedOut()
        }
    }

    private func headTimedOut() {
        guard self.machine.isAwaitingHead, let context = self.context else { return }
        let outcome = self.connection.idleOutcome
        self.connection.ended(outcome)
        if case .refused(let refusal) = outcome {
            self.loop.counters.values.refused[refusal.reason] += 1
            self.respondAndClose(context: context, status: refusal.status, body: refusal.body)
        } else {
            self.machine.closed()
            context.close(promise: nil)
        }
    }

    // MARK: Reads

    func read(context: ChannelHandlerContext) {
        if self.machine.readRequested() {
            context.read()
        }
    }

    // MARK: Requests

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Without the decoder, reads are raw bytes (or a part the decoder emitted while it was
        // removed): they belong to no request.
        guard !self.decoderReleased else { return }
        self.handle(self.unwrapInboundIn(data), context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.channelWritable = context.channel.isWritable
        self.exchange?.clientWritabilityChanged()
        context.fireChannelWritabilityChanged()
    }

    private func handle(_ part: HTTPServerRequestPart, context: ChannelHandlerContext) {
        switch self.machine.receive(part) {
        case .startExchange(let head):
            self.connection.requestStarted()
            // The loop's configuration now: after a reload, a kept-alive connection's next request
            // follows the new routes and limits.
            let exchange = ClientExchange(shared: self.loop.shared, loop: self.loop, responder: self)
            self.exchange = exchange
            exchange.start(head)
        case .deliverBody(let body):
            self.exchange?.receiveBody(body)
        case .deliverEnd:
            self.exchange?.receiveEnd()
            self.releaseDecoderIfStreamingOnly(context: context)
        case .park, .drop:
            break
        }
    }

    // MARK: Writing

    private func write(_ buffer: ByteBuffer, context: ChannelHandlerContext) {
        self.connection.countSent(buffer.readableBytes)
        self.beforeChannelWrite(context)
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    /// Before anything goes through the channel: bytes of this connection still in the loop's
    /// batch are taken back and go first, through the channel too. (Not by submitting the batch
    /// here: the batch is only ever submitted as a task of its own, which is what lets it trust
    /// `socketDescriptor`; see `batchDescriptor`.)
    private func beforeChannelWrite(_ context: ChannelHandlerContext) {
        guard self.socketDescriptor >= 0 else { return }
        if self.batchSlot >= 0, let waiting = self.loop.sendBatch?.withdraw(self) {
            // Flushed at once: what comes next may be a close (an aborted response), which
            // drops whatever SwiftNIO holds unflushed.
            context.writeAndFlush(self.wrapOutboundOut(waiting), promise: nil)
        }
        self.batchSlot = Self.channelMayHoldBytes
    }

    /// Whether the next event may go out in the loop's batch: a known, open socket, a writable
    /// channel, and nothing of this connection's waiting in SwiftNIO's queue.
    private func mayBatch(_ context: ChannelHandlerContext) -> Bool {
        guard self.socketDescriptor >= 0, self.channelWritable, let batch = self.loop.sendBatch, batch.isUsable else {
            return false
        }
        if self.batchSlot == Self.channelMayHoldBytes {
            guard (try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)) == 0 else { return false }
            self.batchSlot = Self.channelIsClear
        }
        return true
    }

    private func respondAndClose(
        context: ChannelHandlerContext,
        status: HTTPResponseStatus,
        body: String,
        extraHeaders: [(String, String)] = []
    ) {
        self.tearDown()
        let buffer = HTTP1ResponseHead.simple(status: status, body: body, close: true, extraHeaders: extraHeaders)
        self.connection.countSent(buffer.readableBytes)
        let boundContext = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(self.wrapOutboundOut(buffer)).whenComplete { _ in
            boundContext.value.close(promise: nil)
        }
    }

    /// The response is complete: wait for the next request on this connection, or close it.
    private func responseFinished(close: Bool) {
        guard let context = self.context, let exchange = self.exchange else { return }
        self.exchange = nil
        self.connection.account(exchange)
        switch self.machine.responseEnded(closeRequested: close, streamingOnly: self.decoderReleased) {
        case .close:
            context.close(promise: nil)
        case .awaitNext(let replay, let passHeldRead):
            self.armHeadTimer()
            for part in replay {
                self.handle(part, context: context)
            }
            if passHeldRead {
                context.read()
            }
        }
    }

    /// Removes the request decoder once the connection can carry nothing but the current event
    /// stream: its request has been read to the end and nothing is pipelined behind it (a request
    /// behind an endless response could not be answered anyway).
    private func releaseDecoderIfStreamingOnly(context: ChannelHandlerContext) {
        guard self.machine.carriesOnlyTheEventStream, let decoder = self.decoder else { return }
        self.decoder = nil
        context.pipeline.syncOperations.removeHandler(decoder, promise: nil)
    }
}

// MARK: - Responder for the current exchange

extension HTTP1ServerHandler: ClientResponder {
    var eventLoop: EventLoop { self.loop.eventLoop }
    var allocator: ByteBufferAllocator { self.context?.channel.allocator ?? ByteBufferAllocator() }
    var clientScheme: String { self.connection.isTLS ? "https" : "http" }
    var isWritable: Bool { self.context != nil && self.channelWritable }

    func writeHead(status: HTTPResponseStatus, headers: HTTPHeaders, isEventStream: Bool) {
        guard let context = self.context, self.exchange != nil else { return }
        var headers = isEventStream ? headers : HopByHopHeaders.removing(from: headers)
        guard
            let (_, added) = self.machine.responseHead(
                status: status,
                hasContentLength: headers.first(name: "content-length") != nil,
                isEventStream: isEventStream
            )
        else { return }
        for (name, value) in added {
            headers.replaceOrAdd(name: name, value: value)
        }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        HTTP1ResponseHead.write(status: status, headers: headers.map { ($0.name, $0.value) }, into: &buffer)
        self.write(buffer, context: context)
        if isEventStream {
            self.releaseDecoderIfStreamingOnly(context: context)
        }
    }

    func writeShared(_ bytes: ByteBuffer) {
        guard let context = self.context, self.exchange != nil, let framing = self.machine.framing else { return }
        self.write(framing.chunked ? self.loop.chunkFramer.framed(bytes) : bytes, context: context)
    }

    func writeSharedAndFlush(_ bytes: ByteBuffer) {
        guard let context = self.context, self.exchange != nil, let framing = self.machine.framing else { return }
        let framed = framing.chunked ? self.loop.chunkFramer.framed(bytes) : bytes
        self.connection.countSent(framed.readableBytes)
        if self.mayBatch(context), let batch = self.loop.sendBatch {
            batch.add(framed, for: self)
            return
        }
        self.beforeChannelWrite(context)
        context.writeAndFlush(self.wrapOutboundOut(framed), promise: nil)
    }

    func writeBody(_ bytes: ByteBuffer) {
        guard let context = self.context, self.exchange != nil, let framing = self.machine.framing, !framing.bodyless
        else { return }
        if framing.chunked {
            self.write(HTTP1ChunkFramer.frame(bytes, allocator: context.channel.allocator), context: context)
        } else {
            self.write(bytes, context: context)
        }
    }

    func flush() {
        // Bytes in the loop's batch go out at the end of this task, by themselves.
        self.context?.flush()
    }

    func endResponse(closeConnection: Bool) {
        guard let context = self.context, self.exchange != nil else { return }
        if self.machine.framing?.chunked ?? false {
            self.write(HTTP1ResponseHead.lastChunk, context: context)
        }
        context.flush()
        self.responseFinished(close: closeConnection)
    }

    func abortResponse() {
        guard let context = self.context, let exchange = self.exchange else { return }
        self.beforeChannelWrite(context)
        self.exchange = nil
        self.connection.account(exchange)
        self.machine.responseAborted()
        context.close(promise: nil)
    }

    func respond(status: HTTPResponseStatus, body: String, closeConnection: Bool) {
        guard let context = self.context, self.exchange != nil else { return }
        // The gateway's own answer: framed here, with Content-Length; the machine decides whether
        // the connection stays (it also closes an HTTP/1.0 or `Connection: close` request's).
        let close = closeConnection || self.machine.closesAfterResponse
        self.write(HTTP1ResponseHead.simple(status: status, body: body, close: close), context: context)
        context.flush()
        self.responseFinished(close: close)
    }

    func pauseRequestBody() {
        self.machine.pauseBody()
    }

    func resumeRequestBody() {
        if self.machine.resumeBody() {
            self.context?.read()
        }
    }

    func continueRequestBody() {
        guard let context = self.context, self.machine.mayContinue else { return }
        self.write(HTTP1ResponseHead.continue, context: context)
        context.flush()
    }
}

// MARK: - Batched sends (`--io-uring`)

extension HTTP1ServerHandler: BatchedSendTarget {
    var batchDescriptor: CInt? {
        // Trusted without asking the channel (whose object a fan-out would otherwise touch once
        // more per client): SwiftNIO closes a socket and fires channelInactive, which clears
        // `socketDescriptor`, within one call, and the batch is submitted only as a task of its
        // own, so never inside that call.
        self.socketDescriptor >= 0 ? self.socketDescriptor : nil
    }

    func batchFellShort(_ remainder: ByteBuffer) {
        guard let context = self.context else { return }
        self.batchSlot = Self.channelMayHoldBytes
        context.writeAndFlush(self.wrapOutboundOut(remainder), promise: nil)
    }
}
