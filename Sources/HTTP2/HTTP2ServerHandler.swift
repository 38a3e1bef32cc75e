import CNghttp2
import NIOCore
import NIOHTTP1

/// An nghttp2 server session as a SwiftNIO handler: bytes in, bytes out. Put it after TLS (ALPN
/// `h2`) or directly on a plaintext channel whose client speaks HTTP/2 with prior knowledge (h2c).
///
/// How it works:
/// - `channelRead` feeds nghttp2 (`nghttp2_session_mem_recv`). nghttp2's callbacks only record
///   what happened (new requests, body bytes, closed streams) in a queue; after nghttp2 returns,
///   the queue is delivered to the application (`onRequest`, the stream delegates), and whatever
///   the application did (heads, writes, flushes, resets) is submitted to nghttp2. nghttp2 is never
///   re-entered from its own callbacks.
/// - Output is pulled from nghttp2 (`nghttp2_session_mem_send`) in a pump after reads, flushes and
///   writability changes, gathered into one buffer (up to `outputChunkSize`) and written with one
///   flush. The pump stops pulling while the channel is not writable and resumes on
///   `channelWritabilityChanged`.
/// - Response bodies use a deferred data provider: nghttp2 takes bytes straight from the stream's
///   queue (NGHTTP2_DATA_FLAG_NO_COPY) as the client's flow-control window allows; with nothing
///   queued the provider answers NGHTTP2_ERR_DEFERRED and is resumed by the next flush.
/// - The connection closes when nghttp2 wants neither to read nor to write (after GOAWAY with no
///   streams left, or after a connection error), once the last bytes are written.
/// - Each stream's state (response, queue and watermarks, what its delegate has heard) is a pure
///   `HTTP2StreamStateMachine`; the handler and the callbacks carry out the actions it returns.
///   The connection's own state is `state` (lifecycle) and `activity` (what runs right now).
public final class HTTP2ServerHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Never
    public typealias OutboundIn = Never
    public typealias OutboundOut = ByteBuffer

    /// Send this as a user event (inbound or outbound) to start a graceful shutdown.
    public struct GracefulShutdown: Sendable, Hashable {
        public init() {}
    }

    enum DrainStep: Equatable {
        /// Asked for; the shutdown notice is not submitted yet.
        case noticePending
        /// Shutdown notice and PING sent; waiting for the PING's ACK (or the timeout).
        case awaitingPingAck
        /// The final GOAWAY is due.
        case goAwayPending
        /// The final GOAWAY is submitted; the connection ends with its last stream.
        case goAwaySent
    }

    enum State: Equatable {
        /// Not started: the channel is not active yet.
        case idle
        /// Not started, and a graceful shutdown was asked for already: it begins with the session.
        case idleShutdownRequested
        /// Serving.
        case active
        /// Graceful shutdown in progress.
        case draining(DrainStep)
        /// The session is over; the last bytes are being written before the channel closes.
        /// Nothing is read or submitted any more.
        case closing
        /// The channel is closed and the session deleted.
        case closed
    }

    /// What runs on this handler now. nghttp2 must not be re-entered (its callbacks only
    /// record), and the work loop must not be re-entered from the application calls it makes;
    /// work that comes in meanwhile is picked up by what runs.
    enum Activity: Equatable {
        /// Nothing runs and no run is scheduled.
        case idle
        /// A `process()` run is scheduled on the event loop (nothing runs).
        case scheduled
        /// `process()` runs: delivering events, submitting, pumping.
        case processing
        /// nghttp2 runs (`mem_recv` or `mem_send`): nothing may call into it.
        case inNghttp2
    }

    /// What nghttp2's callbacks recorded, delivered once nghttp2 has returned.
    enum Event {
        case request(HTTP2ServerStream)
        case body(HTTP2ServerStream, ByteBuffer)
        case end(HTTP2ServerStream)
        case closed(HTTP2ServerStream, HTTP2StreamCloseReason)
        case writability(HTTP2ServerStream)
        /// Body bytes on a stream the application does not see: give the window back.
        case consume(streamID: Int32, count: Int)
    }

    let configuration: HTTP2ServerConfiguration
    /// Every stream's writability bounds, from `configuration.streamBufferLimit`.
    let streamWatermarks: HTTP2StreamStateMachine.Watermarks
    private let onRequest: (HTTP2ServerStream) -> Void

    private(set) var state: State = .idle
    private var context: ChannelHandlerContext?
    var allocator = ByteBufferAllocator()
    private(set) var session: OpaquePointer?
    /// Where the session's memory comes from; deleted with it.
    private(set) var arena: UnsafeMutablePointer<cnghttp2_arena>?

    /// Open streams the application has been (or is about to be) given, by id.
    var streams: [Int32: HTTP2ServerStream] = [:]
    /// The request whose header block is being decoded. One at most: a header block is never
    /// interleaved with another frame (RFC 9113 §4.3), so no table is kept per connection.
    var requestHead: (streamID: Int32, builder: RequestHeadBuilder)?
    /// Streams whose request went over `maxHeaderListSize`: answered 431.
    var pendingRejections: [Int32] = []
    /// Small at first (it grows as needed): a connection holds it for its whole life, and an
    /// event stream's connection rarely has more than a few events at once.
    var events = CircularBuffer<Event>(initialCapacity: 4)
    private var dirtyStreams: [HTTP2ServerStream] = []

    private var activity: Activity = .idle
    /// nghttp2 may have output: the work loop runs a pump. Pending work, like `dirtyStreams`,
    /// in any state, not a state of its own.
    private var pumpNeeded = false
    /// A stream flushed a heartbeat (`HTTP2ServerStream.flushIdle()`): once the pump has sent
    /// everything, the session's output buffer pages go back (`releaseOutputIfIdle`).
    private var releaseOutputWhenSent = false
    /// Times the output buffer's pages were given back (tests).
    private(set) var outputReleases = 0

    /// The pump's output while nghttp2 runs `mem_send` (the NO_COPY DATA callback appends to it,
    /// and pauses nghttp2 once it holds `outputChunkSize` bytes).
    var output: ByteBuffer?

    var resetLimiter: FrameRateLimiter
    var controlLimiter: FrameRateLimiter
    /// A flood was detected inside a callback: end the connection with this error code.
    var floodErrorCode: UInt32?

    /// The opaque data of the graceful-shutdown PING.
    let shutdownPingOpaque: UInt64 = 0x4C_49_46_45_4C_49_4E_45  // "LIFELINE"
    private var shutdownTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?

    /// Why the connection ended or is ending, for logs: nil while it serves normally.
    public private(set) var connectionEnd: HTTP2ConnectionEnd?

    /// `connectionEnd` as logs say it.
    public var terminationReason: String? { self.connectionEnd?.description }

    /// Called for each request answered 431 (over `maxHeaderListSize`), for counting.
    public var onHeadersRejected: (() -> Void)?

    /// - Parameters:
    ///   - configuration: settings and limits.
    ///   - onRequest: called on the event loop when a request's HEADERS are complete; set the
    ///     stream's delegate here. Never called from inside nghttp2.
    public init(configuration: HTTP2ServerConfiguration, onRequest: @escaping (HTTP2ServerStream) -> Void) {
        let configuration = configuration.sanitized
        self.configuration = configuration
        self.streamWatermarks = HTTP2StreamStateMachine.Watermarks(streamBufferLimit: configuration.streamBufferLimit)
        self.onRequest = onRequest
        self.resetLimiter = FrameRateLimiter(perSecond: configuration.maxClientResetsPerSecond)
        self.controlLimiter = FrameRateLimiter(perSecond: configuration.maxControlFramesPerSecond)
    }

    deinit {
        if let session = self.session, let arena = self.arena {
            NGHTTP2SessionSetup.Session(session: session, arena: arena).delete()
        }
    }

    /// Open streams (given to the application and not closed).
    public var openStreamCount: Int { self.streams.count }

    /// Graceful shutdown: a shutdown notice (GOAWAY with the largest stream id) and a PING; when
    /// the PING comes back (or after `gracefulShutdownPingTimeout`) the final GOAWAY with the last
    /// stream id. Existing streams may finish; the connection closes when none are left.
    /// Call on the event loop.
    public func beginGracefulShutdown() {
        self.context?.eventLoop.assertInEventLoop()
        switch self.state {
        case .idle:
            self.state = .idleShutdownRequested
        case .active:
            self.state = .draining(.noticePending)
            self.connectionEnd = self.connectionEnd ?? .gracefulShutdown
            self.scheduleProcess()
        case .idleShutdownRequested, .draining, .closing, .closed:
            break
        }
    }

    // MARK: ChannelHandler

    public func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        self.allocator = context.channel.allocator
        if context.channel.isActive {
            self.start()
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.teardown()
        self.context = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.start()
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.teardown()
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard let session = self.session, !self.isClosing, buffer.readableBytes > 0 else { return }
        let result = self.running(.inNghttp2) {
            buffer.withUnsafeReadableBytes { bytes in
                nghttp2_session_mem_recv(session, bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count)
            }
        }
        if result < 0 {
            self.receiveFailed(Int32(truncatingIfNeeded: result))
        }
        self.pumpNeeded = true
        self.process()
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            self.pumpNeeded = true
            self.process()
        }
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is GracefulShutdown {
            self.beginGracefulShutdown()
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        if event is GracefulShutdown {
            self.beginGracefulShutdown()
            promise?.succeed(())
            return
        }
        context.triggerUserOutboundEvent(event, promise: promise)
    }

    public func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.connectionEnd = self.connectionEnd ?? .channelError("\(error)")
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    // MARK: Session lifecycle

    private func start() {
        let shutdownRequested: Bool
        switch self.state {
        case .idle: shutdownRequested = false
        case .idleShutdownRequested: shutdownRequested = true
        case .active, .draining, .closing, .closed: return
        }
        guard let context = self.context else { return }
        guard let created = NGHTTP2Session.makeServerSession(
            configuration: self.configuration,
            userData: Unmanaged.passUnretained(self).toOpaque()
        ) else {
            self.state = .closed
            self.connectionEnd = .internalError("nghttp2 session could not be created")
            context.close(promise: nil)
            return
        }
        self.session = created.session
        self.arena = created.arena
        if shutdownRequested {
            self.state = .draining(.noticePending)
            self.connectionEnd = .gracefulShutdown
        } else {
            self.state = .active
        }
        self.pumpNeeded = true
        self.process()
    }

    /// The connection is gone (or the handler removed): every open stream hears
    /// `.connectionClosed`, the session is deleted.
    private func teardown() {
        guard self.state != .closed else { return }
        self.state = .closed
        self.shutdownTimer?.cancel()
        self.shutdownTimer = nil
        self.closeTimer?.cancel()
        self.closeTimer = nil
        let open = self.streams.values.sorted { $0.streamID < $1.streamID }
        self.streams.removeAll()
        self.requestHead = nil
        self.pendingRejections.removeAll()
        for stream in open {
            if let reason = stream.close(.connectionClosed) {
                self.events.append(.closed(stream, reason))
            }
        }
        if let session = self.session, let arena = self.arena, self.activity != .inNghttp2 {
            self.session = nil
            self.arena = nil
            NGHTTP2SessionSetup.Session(session: session, arena: arena).delete()
        }
        self.process()
    }

    /// `nghttp2_session_mem_recv` failed: the connection is lost. Sends GOAWAY where it makes
    /// sense, then closes.
    private func receiveFailed(_ code: Int32) {
        guard let session = self.session else { return }
        if let flood = self.floodErrorCode {
            nghttp2_session_terminate_session(session, flood)
            self.closeConnection()
            return
        }
        switch code {
        case NGHTTP2_ERR_BAD_CLIENT_MAGIC.rawValue:
            self.connectionEnd = .badPreface
        case NGHTTP2_ERR_FLOODED.rawValue:
            self.connectionEnd = .flood("too many unanswered SETTINGS/PING frames")
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        case NGHTTP2_ERR_TOO_MANY_CONTINUATIONS.rawValue:
            self.connectionEnd = .flood("too many CONTINUATION frames")
            nghttp2_session_terminate_session(session, NGHTTP2_ENHANCE_YOUR_CALM.rawValue)
        default:
            self.connectionEnd = .protocolError(String(cString: nghttp2_strerror(code)))
            nghttp2_session_terminate_session(session, NGHTTP2_PROTOCOL_ERROR.rawValue)
        }
        self.closeConnection()
    }

    /// Writes what nghttp2 still has (a GOAWAY), then closes the channel once it is written (or
    /// after `closeTimeout`).
    private func closeConnection() {
        guard !self.isClosing, let context = self.context else { return }
        self.state = .closing
        self.pump(ignoringWritability: true)
        guard context.channel.isActive else {
            context.close(promise: nil)
            return
        }
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(self.wrapOutboundOut(self.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { _ in
            context.close(promise: nil)
        }
        self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: self.configuration.closeTimeout) {
            context.close(promise: nil)
        }
    }

    /// The connection is closing or closed: nothing more is read, submitted or closed again.
    private var isClosing: Bool {
        switch self.state {
        case .closing, .closed: return true
        case .idle, .idleShutdownRequested, .active, .draining: return false
        }
    }

    // MARK: The work loop

    /// Runs `body` as `activity`, then goes back to what was before: nghttp2 runs inside a
    /// `process()` run, and either can run while a run is scheduled (which stays scheduled).
    private func running<Result>(_ activity: Activity, _ body: () -> Result) -> Result {
        let outer = self.activity
        self.activity = activity
        defer { self.activity = outer }
        return body()
    }

    /// Runs the work loop later in this tick, unless something runs now (it will pick the work
    /// up) or a run is already scheduled.
    private func scheduleProcess() {
        guard self.activity == .idle, let context = self.context else { return }
        self.activity = .scheduled
        context.eventLoop.assumeIsolated().execute {
            self.activity = .idle
            self.process()
        }
    }

    /// Delivers events, submits what the application asked for, pumps output, and closes the
    /// connection when nghttp2 is done; repeats until nothing is left.
    private func process() {
        switch self.activity {
        case .idle, .scheduled: self.running(.processing, self.processRounds)
        case .processing, .inNghttp2: return
        }
    }

    private func processRounds() {
        var rounds = 0
        repeat {
            rounds += 1
            self.deliverEvents()
            if let session = self.session {
                self.applyPendingWork(session)
                if self.pumpNeeded {
                    self.pump(ignoringWritability: false)
                }
                self.checkSessionEnd()
            } else {
                self.dirtyStreams.removeAll()
                self.pumpNeeded = false
            }
        } while (!self.events.isEmpty || self.hasPendingWork) && rounds < 10_000
        self.releaseOutputIfIdle()
    }

    /// After a heartbeat went out, the session's output buffer (16 KiB on pages of its own, of
    /// which an event stream's frames touch the first) gives its pages back until the next frame
    /// is written to it: an idle connection then holds none, at the cost of one page fault per
    /// heartbeat (never per event: heartbeats go only to streams idle for a whole interval, and
    /// the heartbeat clock is one timer per event loop). Only once nghttp2 has nothing left to
    /// send, so the buffer holds no byte still to go out.
    private func releaseOutputIfIdle() {
        guard self.releaseOutputWhenSent else { return }
        self.releaseOutputWhenSent = false
        guard let session = self.session, let arena = self.arena, !self.isClosing,
            nghttp2_session_want_write(session) == 0
        else { return }
        if cnghttp2_arena_release_output(arena) > 0 {
            self.outputReleases += 1
        }
    }

    private var hasPendingWork: Bool {
        guard self.session != nil, !self.isClosing else { return false }
        if self.pumpNeeded || !self.dirtyStreams.isEmpty || !self.pendingRejections.isEmpty || self.floodErrorCode != nil {
            return true
        }
        switch self.state {
        case .draining(.noticePending), .draining(.goAwayPending): return true
        default: return false
        }
    }

    private func deliverEvents() {
        while let event = self.events.popFirst() {
            switch event {
            case .request(let stream):
                if case .deliver = stream.state.requestReceived() {
                    self.onRequest(stream)
                }
            case .body(let stream, let bytes):
                if stream.state.deliversEvents {
                    stream.delegate?.http2Stream(stream, didReceiveBody: bytes)
                }
                // After the delegate: it may have paused the body.
                if case .release(let count) = stream.state.requestBodyReceived(bytes.readableBytes) {
                    self.consume(streamID: stream.streamID, count: count)
                }
            case .end(let stream):
                if stream.state.deliversEvents {
                    stream.delegate?.http2StreamDidReceiveEnd(stream)
                }
            case .closed(let stream, let reason):
                switch stream.state.closeReceived() {
                case .deliver(let held):
                    // Held by a paused body: the stream's window is gone, the connection's is not.
                    self.consume(streamID: stream.streamID, count: held)
                    stream.delegate?.http2StreamDidClose(stream, reason: reason)
                case .drop(let held):
                    self.consume(streamID: stream.streamID, count: held)
                }
            case .writability(let stream):
                if case .deliver = stream.state.writabilityEventReceived() {
                    stream.delegate?.http2StreamWritabilityChanged(stream)
                }
            case .consume(let streamID, let count):
                self.consume(streamID: streamID, count: count)
            }
        }
    }

    /// Gives `count` received body bytes back to the client's flow-control windows.
    private func consume(streamID: Int32, count: Int) {
        guard count > 0, let session = self.session, self.activity != .inNghttp2 else { return }
        _ = nghttp2_session_consume(session, streamID, count)
        self.pumpNeeded = true
    }

    private func applyPendingWork(_ session: OpaquePointer) {
        if let code = self.floodErrorCode {
            self.floodErrorCode = nil
            nghttp2_session_terminate_session(session, code)
            self.closeConnection()
            return
        }
        guard !self.isClosing else { return }

        switch self.state {
        case .draining(.noticePending):
            _ = nghttp2_submit_shutdown_notice(session)
            _ = cnghttp2_submit_ping_u64(session, self.shutdownPingOpaque)
            self.state = .draining(.awaitingPingAck)
            self.pumpNeeded = true
            if let loop = self.context?.eventLoop.assumeIsolated() {
                self.shutdownTimer = loop.scheduleTask(in: self.configuration.gracefulShutdownPingTimeout) {
                    self.shutdownPingAcknowledged()
                }
            }
        case .draining(.goAwayPending):
            self.shutdownTimer?.cancel()
            self.shutdownTimer = nil
            let last = nghttp2_session_get_last_proc_stream_id(session)
            _ = nghttp2_submit_goaway(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), last, NGHTTP2_NO_ERROR.rawValue, nil, 0)
            self.state = .draining(.goAwaySent)
            self.pumpNeeded = true
        default:
            break
        }

        if !self.pendingRejections.isEmpty {
            let rejected = self.pendingRejections
            self.pendingRejections.removeAll()
            for streamID in rejected {
                self.onHeadersRejected?()
                let status = HTTPResponseStatus.requestHeaderFieldsTooLarge
                let rv = NGHTTP2Session.submitResponse(
                    session, streamID: streamID, status: status, headers: [("content-length", "0")], dataProvider: false
                )
                if rv != 0 {
                    _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), streamID, NGHTTP2_REFUSED_STREAM.rawValue)
                }
            }
            self.pumpNeeded = true
        }

        if !self.dirtyStreams.isEmpty {
            let dirty = self.dirtyStreams
            self.dirtyStreams.removeAll(keepingCapacity: true)
            for stream in dirty {
                stream.isDirty = false
                self.apply(stream, session)
            }
        }
    }

    /// Submits a stream's head, reset or resumption.
    private func apply(_ stream: HTTP2ServerStream, _ session: OpaquePointer) {
        switch stream.state.nextSubmission() {
        case .none:
            return
        case .reset(let errorCode):
            _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.streamID, errorCode)
        case .response(let status, let headers, let endStream):
            let rv = NGHTTP2Session.submitResponse(
                session, streamID: stream.streamID, status: status, headers: headers, dataProvider: !endStream
            )
            if rv != 0 {
                _ = nghttp2_submit_rst_stream(session, UInt8(NGHTTP2_FLAG_NONE.rawValue), stream.streamID, NGHTTP2_INTERNAL_ERROR.rawValue)
            }
        case .resumeData:
            _ = nghttp2_session_resume_data(session, stream.streamID)
        }
        self.pumpNeeded = true
    }

    /// Pulls frames from nghttp2 into one buffer (or a few of `outputChunkSize`) and writes them
    /// with one flush. Stops pulling while the channel is not writable.
    private func pump(ignoringWritability: Bool) {
        guard let session = self.session, let context = self.context, self.activity != .inNghttp2 else { return }
        self.pumpNeeded = false
        var wrote = false
        var failed = false
        let chunkSize = self.configuration.outputChunkSize
        self.output = self.allocator.buffer(capacity: 512)
        while ignoringWritability || context.channel.isWritable {
            var data: UnsafePointer<UInt8>? = nil
            let count = self.running(.inNghttp2) { nghttp2_session_mem_send(session, &data) }
            if count < 0 {
                failed = true
                self.connectionEnd = self.connectionEnd
                    ?? .internalError("nghttp2 send failed: \(String(cString: nghttp2_strerror(Int32(truncatingIfNeeded: count))))")
                break
            }
            if count > 0, let data {
                self.output!.writeBytes(UnsafeRawBufferPointer(start: data, count: count))
            }
            // With nothing returned, a full buffer means that the DATA callback paused nghttp2
            // (it pauses exactly when it fills it): there may be more. Else nghttp2 is done.
            let paused = count == 0 && self.output!.readableBytes >= chunkSize
            if self.output!.readableBytes >= chunkSize {
                let chunk = self.output!
                self.output = self.allocator.buffer(capacity: 512)
                context.write(self.wrapOutboundOut(chunk), promise: nil)
                wrote = true
            }
            if count == 0 && !paused {
                break
            }
        }
        if let rest = self.output, rest.readableBytes > 0 {
            context.write(self.wrapOutboundOut(rest), promise: nil)
            wrote = true
        }
        self.output = nil
        if wrote {
            context.flush()
        }
        if failed {
            self.closeConnection()
        }
    }

    /// Closes the connection when nghttp2 wants neither to read nor to write.
    private func checkSessionEnd() {
        guard let session = self.session, !self.isClosing else { return }
        if nghttp2_session_want_read(session) == 0 && nghttp2_session_want_write(session) == 0 {
            if self.connectionEnd == nil {
                self.connectionEnd = .sessionEnded
            }
            self.closeConnection()
        }
    }

    // MARK: Called by streams

    /// A stream has something to submit (head, reset, resumption).
    func streamNeedsAttention(_ stream: HTTP2ServerStream, pump: Bool) {
        self.context?.eventLoop.assertInEventLoop()
        if !stream.isDirty {
            stream.isDirty = true
            self.dirtyStreams.append(stream)
        }
        if pump {
            self.pumpNeeded = true
        }
        self.scheduleProcess()
    }

    /// A stream flushed while idle (a heartbeat): see `releaseOutputIfIdle`.
    func streamFlushedIdle() {
        self.context?.eventLoop.assertInEventLoop()
        self.releaseOutputWhenSent = true
        self.scheduleProcess()
    }

    /// A paused stream's body was resumed: give `count` bytes of window back.
    func streamConsumed(_ stream: HTTP2ServerStream, count: Int) {
        self.events.append(.consume(streamID: stream.streamID, count: count))
        self.scheduleProcess()
    }

    /// A stream's queue crossed a watermark (the high one up, or the low one down); the delegate
    /// hears it after the current call returns.
    func streamWritabilityMayHaveChanged(_ stream: HTTP2ServerStream) {
        self.events.append(.writability(stream))
        self.scheduleProcess()
    }

    // MARK: Called by the nghttp2 callbacks (inside nghttp2: record only)

    func shutdownPingAcknowledged() {
        guard case .draining(.awaitingPingAck) = self.state else { return }
        self.state = .draining(.goAwayPending)
        self.scheduleProcess()
    }

    func noteTermination(_ end: HTTP2ConnectionEnd) {
        if self.connectionEnd == nil {
            self.connectionEnd = end
        }
    }

    var now: NIODeadline {
        self.context?.eventLoop.now ?? .now()
    }
}
