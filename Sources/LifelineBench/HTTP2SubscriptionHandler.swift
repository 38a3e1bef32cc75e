import HTTP2Client
import NIOCore
import TLS

/// The subscriptions of one HTTP/2 connection (h2c with prior knowledge, or h2 behind an
/// `OpenSSLHandler`): every request is sent at channelActive, DATA goes from nghttp2's buffer
/// straight into each stream's `SSEReceiver`.
///
/// A stream that ends while its connection lives is asked for again after the reconnect delay (with
/// Last-Event-ID) when the run resumes streams, as an EventSource on a shared connection would.
/// nghttp2 reports from inside `receive`, so anything that calls back into the session (resets,
/// new requests) is queued and done after it returns.
final class HTTP2SubscriptionHandler: ChannelInboundHandler, HTTP2ClientSessionDelegate {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// A request in flight: its subscription and the parser state of this response.
    private final class StreamState {
        let subscription: Subscription
        /// Monotonic time the wait for this response started (time to first byte counts from it).
        let startedAt: Int64
        var receiver = SSEReceiver()
        init(subscription: Subscription, startedAt: Int64) {
            self.subscription = subscription
            self.startedAt = startedAt
        }
    }

    private let loop: LoadLoop
    private let connection: LoadConnection
    /// The TLS handler below, to check that ALPN chose h2; nil for h2c.
    private let tls: OpenSSLHandler?
    private var session: HTTP2ClientSession?
    private var context: ChannelHandlerContext?
    private var streams: [Int32: StreamState] = [:]
    /// The wall-clock time of the read being processed, for every event in it.
    private var readTime: Int64 = 0
    private var resetsDue: [Int32] = []
    private var retriesDue: [Subscription] = []
    private var checkedALPN = false
    private var isClosed = false

    init(loop: LoadLoop, connection: LoadConnection, tls: OpenSSLHandler?) {
        self.loop = loop
        self.connection = connection
        self.tls = tls
        self.checkedALPN = tls == nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelActive(context: ChannelHandlerContext) {
        self.loop.connected(self.connection, channel: context.channel)
        do {
            self.session = try HTTP2ClientSession(delegate: self)
        } catch {
            self.fail("\(error)")
            return
        }
        // Over TLS these wait in the OpenSSLHandler until the handshake is done.
        // The first requests count from the start of the connection attempt, as over HTTP/1.1.
        for subscription in self.connection.subscriptions {
            self.submit(subscription, startedAt: self.connection.attemptStart)
        }
        self.flushOutput()
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.isClosed, let session = self.session else { return }
        if !self.checkedALPN {
            self.checkedALPN = true
            let chosen = self.tls?.negotiatedProtocol
            guard chosen == "h2" else {
                self.fail("TLS ALPN chose \(chosen ?? "no protocol"), not h2")
                return
            }
        }
        let buffer = self.unwrapInboundIn(data)
        self.readTime = BenchClock.wallNanoseconds()
        do {
            try buffer.withUnsafeReadableBytes { raw throws(HTTP2ClientSession.Failure) in
                try session.receive(raw)
            }
        } catch {
            self.fail("h2: \(error)")
            return
        }
        for streamID in self.resetsDue {
            session.resetStream(streamID)
        }
        self.resetsDue.removeAll(keepingCapacity: true)
        for subscription in self.retriesDue {
            self.scheduleRetry(subscription)
        }
        self.retriesDue.removeAll(keepingCapacity: true)
        self.flushOutput()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.isClosed = true
        self.streams.removeAll()
        self.loop.closed(self.connection)
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.isClosed = true
        // The session's delegate is weak, but drop it here anyway: nothing reads after this.
        self.session = nil
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        self.loop.counters.noteError("read: \(error)")
        context.close(promise: nil)
    }

    // MARK: HTTP2ClientSessionDelegate (inside session.receive)

    func http2Response(streamID: Int32, status: Int, contentType: String?) {
        guard let state = self.streams[streamID] else { return }
        self.loop.recordTimeToFirstByte(since: state.startedAt)
        let isEventStream = contentType?.lowercased().hasPrefix("text/event-stream") ?? false
        if !self.loop.headReceived(state.subscription, status: status, isEventStream: isEventStream) {
            self.resetsDue.append(streamID)
        }
    }

    func http2Data(streamID: Int32, bytes: UnsafeRawBufferPointer) {
        guard let state = self.streams[streamID], case .streaming = state.subscription.phase else { return }
        do {
            try state.receiver.receive(
                bytes, wallNanoseconds: self.readTime, progress: &state.subscription.progress,
                counters: &self.loop.counters)
        } catch {
            self.loop.protocolError("\(error)")
            self.resetsDue.append(streamID)
        }
    }

    func http2StreamClosed(streamID: Int32, errorCode: UInt32) {
        guard let state = self.streams.removeValue(forKey: streamID) else { return }
        if errorCode != 0 && !self.loop.isStopping {
            self.loop.counters.noteError("h2 stream closed with error code \(errorCode)")
        }
        self.loop.subscriptionEnded(state.subscription)
        if self.loop.plan.reconnect && !self.loop.isStopping {
            self.retriesDue.append(state.subscription)
        }
    }

    func http2GoAway(errorCode: UInt32, lastStreamID: Int32) {
        if !self.loop.isStopping {
            self.loop.counters.noteError("h2 GOAWAY error code \(errorCode)")
        }
    }

    // MARK: Private

    private func submit(_ subscription: Subscription, startedAt: Int64) {
        guard let session = self.session else { return }
        var headers = [("accept", "text/event-stream"), ("cache-control", "no-cache"), ("user-agent", "lifeline-bench")]
        if let lastEventID = subscription.lastEventIDHeader(resume: self.loop.plan.sendsLastEventID) {
            headers.append(("last-event-id", lastEventID))
        }
        do {
            let target = self.loop.plan.target
            let streamID = try session.submitRequest(
                method: "GET", scheme: target.isTLS ? "https" : "http", authority: target.authority,
                path: subscription.path, headers: headers)
            self.streams[streamID] = StreamState(subscription: subscription, startedAt: startedAt)
            subscription.phase = .awaitingHead
        } catch {
            self.loop.protocolError("h2: \(error)")
        }
    }

    /// As EventSource: the server's retry: or the configured delay, ±50%.
    private func scheduleRetry(_ subscription: Subscription) {
        guard let context = self.context else { return }
        let base = subscription.progress.retryNanoseconds ?? self.loop.plan.reconnectDelayNanoseconds
        let delay = base / 2 + Int64.random(in: 0...max(0, base))
        let loopBound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let subscriptionBound = NIOLoopBound(subscription, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .nanoseconds(delay)) {
            let handler = loopBound.value
            guard !handler.isClosed, !handler.loop.isStopping else { return }
            handler.loop.counters.reconnects += 1
            handler.loop.counters.attempts += 1
            handler.submit(subscriptionBound.value, startedAt: BenchClock.monotonicNanoseconds())
            handler.flushOutput()
        }
    }

    private func flushOutput() {
        guard let session = self.session, let context = self.context, !self.isClosed else { return }
        // Most reads leave nothing to send (window updates come once per half window).
        if session.wantsWrite {
            var buffer = context.channel.allocator.buffer(capacity: 1024)
            do {
                if try session.writePending(into: &buffer) {
                    context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
                }
            } catch {
                self.fail("h2: \(error)")
                return
            }
        }
        if !session.isAlive {
            context.close(promise: nil)
        }
    }

    private func fail(_ description: String) {
        self.loop.protocolError(description)
        self.context?.close(promise: nil)
    }
}
