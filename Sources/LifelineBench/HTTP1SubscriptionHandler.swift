import NIOCore
import TLS

/// One HTTP/1.1 SSE request on a TCP connection, or over TLS behind an `OpenSSLHandler`: sends the
/// GET at channelActive (over TLS it waits in the `OpenSSLHandler` until the handshake is done),
/// reads the response in place (`HTTP1ResponseReader`) and hands the body straight to the
/// `SSEReceiver`. The pipeline holds only this handler (and the TLS one), so a read reaches the
/// parser without an intermediate copy or box.
final class HTTP1SubscriptionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private enum State {
        case readingHead
        case streaming
        /// Rejected, failed or ended: further bytes are ignored while the close completes.
        case finished
    }

    private let loop: LoadLoop
    private let connection: LoadConnection
    private let subscription: Subscription
    private var reader = HTTP1ResponseReader()
    private var receiver = SSEReceiver()
    private var state = State.readingHead
    /// The TLS handler below, to check that ALPN did not choose another protocol; nil over TCP.
    private let tls: OpenSSLHandler?
    private var checkedALPN: Bool

    init(loop: LoadLoop, connection: LoadConnection, tls: OpenSSLHandler?) {
        precondition(connection.subscriptions.count == 1, "HTTP/1.1 carries one request per connection")
        self.loop = loop
        self.connection = connection
        self.subscription = connection.subscriptions[0]
        self.tls = tls
        self.checkedALPN = tls == nil
    }

    func channelActive(context: ChannelHandlerContext) {
        self.loop.connected(self.connection, channel: context.channel)
        let request = Self.request(
            target: self.loop.plan.target, path: self.subscription.path,
            lastEventID: self.subscription.lastEventIDHeader(resume: self.loop.plan.sendsLastEventID))
        var buffer = context.channel.allocator.buffer(capacity: request.utf8.count)
        buffer.writeString(request)
        self.subscription.phase = .awaitingHead
        context.writeAndFlush(self.wrapOutboundOut(buffer), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if !self.checkedALPN {
            self.checkedALPN = true
            // We offer only http/1.1; a server without ALPN (nil) speaks HTTP/1.1 as well.
            let chosen = self.tls?.negotiatedProtocol
            guard chosen == nil || chosen == "http/1.1" else {
                self.fail("TLS ALPN chose \(chosen!), not http/1.1", context: context)
                return
            }
        }
        let buffer = self.unwrapInboundIn(data)
        self.loop.firstByte(self.connection)
        // One clock read per socket read: every event in it arrived at the same time.
        let now = BenchClock.wallNanoseconds()
        buffer.withUnsafeReadableBytes { raw in
            self.process(raw, now: now, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.state = .finished
        self.loop.closed(self.connection)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Resets are how SSE connections often end; only count them as a note, not a protocol error.
        self.loop.counters.noteError("read: \(error)")
        context.close(promise: nil)
    }

    private func process(_ raw: UnsafeRawBufferPointer, now: Int64, context: ChannelHandlerContext) {
        if case .finished = self.state { return }
        var index = 0
        do {
            while true {
                switch try self.reader.next(raw, index: &index) {
                case .needMore:
                    return
                case .body(let range):
                    // The hot path: chunk payload straight into the SSE parser.
                    try self.receiver.receive(
                        UnsafeRawBufferPointer(rebasing: raw[range]), wallNanoseconds: now,
                        progress: &self.subscription.progress, counters: &self.loop.counters)
                case .head(let head):
                    guard self.loop.headReceived(self.subscription, status: head.status, isEventStream: head.isEventStream)
                    else {
                        self.finish(context: context)
                        return
                    }
                    self.state = .streaming
                case .end:
                    // The server ended the stream; the connection goes with it (EventSource reconnects).
                    self.finish(context: context)
                    return
                }
            }
        } catch {
            self.fail("\(error)", context: context)
        }
    }

    private func finish(context: ChannelHandlerContext) {
        self.state = .finished
        context.close(promise: nil)
    }

    private func fail(_ description: String, context: ChannelHandlerContext) {
        self.loop.protocolError(description)
        self.finish(context: context)
    }

    static func request(target: LoadTarget, path: String, lastEventID: String?) -> String {
        var request = "GET \(path) HTTP/1.1\r\nHost: \(target.authority)\r\nAccept: text/event-stream\r\n"
        request += "Cache-Control: no-cache\r\nUser-Agent: lifeline-bench\r\n"
        if let lastEventID {
            request += "Last-Event-ID: \(lastEventID)\r\n"
        }
        request += "\r\n"
        return request
    }
}
