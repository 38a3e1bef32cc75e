import NIOCore
import NIOHTTP1

/// One connection to the benchmark origin: reads the request head, then either streams
/// `GET /s/<k>`, answers `GET /stats` (the origin's counts as JSON), or answers 404/405, and closes.
///
/// Responses are written as raw bytes (the pipeline has a request decoder but no response encoder):
/// the head is one shared pre-encoded buffer and each event comes from `OriginLoop` already framed
/// as a chunk, so a write costs no encoding at all.
final class OriginStreamHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = ByteBuffer

    private enum State {
        case awaitingRequest
        case streaming(stream: Int)
        case closed
    }

    private let loop: OriginLoop
    private let streamHead: ByteBuffer
    private var state: State = .awaitingRequest
    private var context: ChannelHandlerContext?
    /// Kept up to date from `channelWritabilityChanged`, which is cheaper than asking the channel per event.
    private var isWritable = true

    /// Position in the loop's list for the stream, for O(1) removal.
    var subscriberIndex: Int?
    /// The newest event id written to this connection; later ticks send only ids after it.
    var lastSentID: Int64 = 0

    init(loop: OriginLoop, streamHead: ByteBuffer) {
        self.loop = loop
        self.streamHead = streamHead
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = self.unwrapInboundIn(data), case .awaitingRequest = self.state else {
            return  // Bodies, ends, and anything after the stream started are ignored.
        }
        guard head.method == .GET else {
            self.respondAndClose(context: context, status: "405 Method Not Allowed", body: "method not allowed\n")
            return
        }
        if head.uri == "/stats" {
            self.respondAndClose(
                context: context, status: "200 OK", body: self.loop.stats.json(), contentType: "application/json")
            return
        }
        guard let stream = Self.streamNumber(in: head.uri), stream < self.loop.schedule.streams else {
            self.respondAndClose(context: context, status: "404 Not Found", body: "no such stream\n")
            return
        }
        self.state = .streaming(stream: stream)
        context.write(self.wrapOutboundOut(self.streamHead), promise: nil)
        self.loop.subscribe(self, stream: stream, lastEventID: Self.lastEventID(in: head.headers))
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        self.isWritable = context.channel.isWritable
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stop()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stop()
        self.context = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // A reset or a malformed request: nothing useful to answer.
        context.close(promise: nil)
    }

    // MARK: Called by OriginLoop

    /// Writes one event unless this connection already has it (a replay and a tick can overlap
    /// for the id at the seam). Flushes come separately, once per tick.
    func deliver(_ buffer: ByteBuffer, id: Int64) {
        guard id > self.lastSentID, let context = self.context, case .streaming = self.state else { return }
        guard self.isWritable else {
            // Its socket buffer stayed full past the high-water mark: a reader that cannot keep up.
            // Buffering for it without bound would only move the problem into this process's memory;
            // closing makes it reconnect and resume with Last-Event-ID.
            self.loop.noteSlowClosed()
            self.drop()
            return
        }
        self.lastSentID = id
        context.write(self.wrapOutboundOut(buffer), promise: nil)
    }

    func flush() {
        guard case .streaming = self.state else { return }
        self.context?.flush()
    }

    /// Cuts the connection: unsubscribes at once (so later ticks skip it), closes a moment later
    /// (not inside the caller's loop over subscribers).
    func drop() {
        self.stop()
        guard let context = self.context else { return }
        let channel = context.channel
        context.eventLoop.execute { channel.close(promise: nil) }
    }

    // MARK: Private

    private func stop() {
        if case .streaming(let stream) = self.state {
            self.loop.unsubscribe(self, stream: stream)
        }
        self.state = .closed
    }

    private func respondAndClose(
        context: ChannelHandlerContext, status: String, body: String, contentType: String = "text/plain"
    ) {
        self.state = .closed
        var buffer = context.channel.allocator.buffer(capacity: 128 + body.utf8.count)
        buffer.writeString("HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(buffer)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    /// `k` from `/s/<k>` (a query string is allowed and ignored).
    static func streamNumber(in uri: String) -> Int? {
        var path = Substring(uri)
        if let query = path.firstIndex(of: "?") {
            path = path[..<query]
        }
        guard path.hasPrefix("/s/") else { return nil }
        let digits = path.dropFirst(3)
        guard !digits.isEmpty, digits.count <= 9, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
        return Int(digits)
    }

    /// A numeric Last-Event-ID; anything else means "no id", as the origin has no other ids.
    static func lastEventID(in headers: HTTPHeaders) -> Int64? {
        guard let value = headers.first(name: "last-event-id") else { return nil }
        return Int64(value.trimmingASCIISpaces())
    }
}

extension String {
    func trimmingASCIISpaces() -> Substring {
        var text = Substring(self)
        while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
        while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
        return text
    }
}
