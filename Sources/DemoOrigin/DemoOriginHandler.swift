import NIOCore
import NIOHTTP1

/// Serves one connection of the demo origin: the page, the health check, the tick stream and
/// the chat answer.
///
/// Once a connection carries a tick stream it never carries another request, because that
/// response only ends when the connection does; until then, plain responses and chat answers
/// (which end) use keep-alive.
final class DemoOriginHandler: ChannelInboundHandler, RemovableChannelHandler, DemoTickSubscriber {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    /// Where the connection is in reading a request.
    private enum RequestState {
        case idle
        /// A request whose body no route uses: it is read and dropped.
        case reading(HTTPRequestHead)
        /// `POST /demo/chat`, its body (the prompt) counted against `DemoChat.maxPromptBytes`.
        /// The answer is canned, so the prompt itself is not kept.
        case readingPrompt(HTTPRequestHead, bytes: Int)
        /// `POST /demo/chat` with a longer body: the rest is read and dropped before the `413`,
        /// so that the client reads the answer rather than a reset.
        case refusingPrompt(HTTPRequestHead)
    }

    private let configuration: DemoOriginConfiguration
    private let broadcaster: DemoTickBroadcaster
    private let controls: DemoControls
    private var requestState = RequestState.idle
    /// The chat answer this connection is sending, counted in `DemoControls.chats.open` while it is.
    private var chat: DemoChat?

    /// Set while this connection streams ticks; the broadcaster writes through it.
    private var streamContext: ChannelHandlerContext?
    /// The path this connection streams, counted in `DemoControls.openStreams` while it does.
    private var streamPath: String?
    private var lastSentTick: Int64 = 0
    private(set) var dropDeadline: NIODeadline?

    init(configuration: DemoOriginConfiguration, broadcaster: DemoTickBroadcaster, controls: DemoControls) {
        self.configuration = configuration
        self.broadcaster = broadcaster
        self.controls = controls
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch (self.unwrapInboundIn(data), self.requestState) {
        case (.head(let head), _):
            if head.method == .POST, Self.splitURI(head.uri).path == "/demo/chat" {
                self.controls.chats.withLockedValue { $0.requests += 1 }
                self.requestState = .readingPrompt(head, bytes: 0)
            } else {
                self.requestState = .reading(head)
            }
        case (.body(let part), .readingPrompt(let head, let bytes)):
            let total = bytes + part.readableBytes
            self.requestState = total > DemoChat.maxPromptBytes ? .refusingPrompt(head) : .readingPrompt(head, bytes: total)
        case (.body, _):
            break  // No other route takes a body.
        case (.end, let state):
            self.requestState = .idle
            // The pipeline holds a pipelined request back until the answer before it has ended;
            // a tick stream never ends, so nothing comes after it.
            guard self.streamContext == nil, self.chat == nil else { return }
            switch state {
            case .reading(let head), .readingPrompt(let head, _):
                self.respond(context: context, to: head)
            case .refusingPrompt(var head):
                head.headers.replaceOrAdd(name: "Connection", value: "close")
                self.sendPlain(
                    context: context, head: head, status: .payloadTooLarge,
                    body: "prompt over \(DemoChat.maxPromptBytes) bytes\n"
                )
            case .idle:
                break
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        self.stopStreaming()
        self.stopChat()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.stopStreaming()
        self.stopChat()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        // Resets and the like: nothing to answer, the connection is gone or unusable.
        context.close(promise: nil)
    }

    // MARK: Routing

    private func respond(context: ChannelHandlerContext, to head: HTTPRequestHead) {
        let (path, query) = Self.splitURI(head.uri)
        if head.method == .OPTIONS {
            // A preflight: a page on another site may read the stream, resuming with Last-Event-ID.
            return self.sendPlain(context: context, head: head, status: .noContent, body: "", extraHeaders: [
                ("Access-Control-Allow-Origin", "*"),
                ("Access-Control-Allow-Methods", "GET"),
                ("Access-Control-Allow-Headers", "Last-Event-ID, Authorization, Cache-Control"),
                ("Access-Control-Max-Age", "600"),
            ])
        }
        if head.method == .POST, path == "/demo/cut" {
            guard let paths = self.controls.paths.withLockedValue({ $0 }) else {
                return self.sendPlain(context: context, head: head, status: .notFound, body: "no network paths to cut\n")
            }
            let loop = context.eventLoop
            let bound = NIOLoopBound((self, context), eventLoop: loop)
            paths.direct.cut(on: loop).and(paths.lifeline.cut(on: loop)).whenSuccess { direct, lifeline in
                let (handler, context) = bound.value
                handler.sendPlain(
                    context: context, head: head, status: .ok, contentType: "application/json",
                    body: "{\"cut\":\(direct + lifeline)}"
                )
            }
            return
        }
        if path == "/demo/chat" {
            guard head.method == .POST else {
                return self.sendPlain(
                    context: context, head: head, status: .methodNotAllowed, body: "method not allowed\n",
                    extraHeaders: [("Allow", "POST")]
                )
            }
            return self.startChat(context: context, head: head)
        }
        guard head.method == .GET else {
            self.sendPlain(
                context: context,
                head: head,
                status: .methodNotAllowed,
                body: "method not allowed\n",
                extraHeaders: [("Allow", "GET")]
            )
            return
        }
        if path == "/events" || path.hasPrefix("/events/") {
            self.controls.streamRequests.withLockedValue { $0[String(path), default: 0] += 1 }
            self.controls.openStreams.withLockedValue { $0[String(path), default: 0] += 1 }
            self.streamPath = String(path)
            self.startStream(context: context, head: head, query: query)
            return
        }
        if path == "/demo/stats" {
            func json(_ counts: [String: Int]) -> String {
                "{" + counts.sorted { $0.key < $1.key }.map { "\"\($0.key)\":\($0.value)" }.joined(separator: ",") + "}"
            }
            let requests = self.controls.streamRequests.withLockedValue { $0 }
            let open = self.controls.openStreams.withLockedValue { $0 }
            let chats = self.controls.chats.withLockedValue { $0 }
            let body = "{\"streamRequests\":\(json(requests)),\"openStreams\":\(json(open)),"
                + "\"chatRequests\":\(chats.requests),\"openChats\":\(chats.open)}\n"
            return self.sendPlain(context: context, head: head, status: .ok, contentType: "application/json", body: body)
        }
        switch path {
        case "/":
            self.sendPlain(
                context: context,
                head: head,
                status: .ok,
                contentType: "text/html; charset=utf-8",
                body: DemoPage.html(self.pageSettings)
            )
        case "/healthz":
            self.sendPlain(context: context, head: head, status: .ok, body: "ok")
        default:
            self.sendPlain(context: context, head: head, status: .notFound, body: "not found: \(path)\n")
        }
    }

    private var pageSettings: DemoPage.Settings {
        let paths = self.controls.paths.withLockedValue { $0 }
        return DemoPage.Settings(
            tickMillis: self.configuration.tickMillis,
            dropEverySeconds: self.configuration.effectiveDropEvery.map { Int($0.nanoseconds / 1_000_000_000) },
            directPort: paths?.direct.port,
            lifelinePort: paths?.lifeline.port
        )
    }

    private func sendPlain(
        context: ChannelHandlerContext,
        head: HTTPRequestHead,
        status: HTTPResponseStatus,
        contentType: String = "text/plain; charset=utf-8",
        body: String,
        extraHeaders: [(String, String)] = []
    ) {
        var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
        buffer.writeString(body)
        var headers = HTTPHeaders(
            status == .noContent ? [] : [("Content-Type", contentType), ("Content-Length", String(buffer.readableBytes))]
        )
        headers.add(contentsOf: extraHeaders)
        let keepAlive = head.isKeepAlive
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        }
        context.write(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil
        )
        context.write(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
        let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }

    // MARK: The tick stream

    private func startStream(context: ChannelHandlerContext, head: HTTPRequestHead, query: Substring?) {
        let headers = HTTPHeaders([
            ("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"), ("Access-Control-Allow-Origin", "*"),
        ])
        context.write(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))),
            promise: nil
        )
        var comment = context.channel.allocator.buffer(capacity: 16)
        comment.writeString(": demo origin\n\n")
        context.write(self.wrapOutboundOut(.body(.byteBuffer(comment))), promise: nil)

        let tickMillis = self.configuration.tickMillis
        let currentTick = DemoTicks.tick(atMillis: DemoTicks.wallClockMillis(), tickMillis: tickMillis)
        // Resume after the client's last id only if that id is in the past: an id from the future
        // (another clock, another tick) has nothing to replay, so the client just goes live.
        if let lastEventID = Self.lastEventID(head: head, query: query), lastEventID < currentTick {
            self.lastSentTick = lastEventID
        } else {
            self.lastSentTick = currentTick
        }
        self.streamContext = context
        self.deliverTicks(through: currentTick)
        context.flush()

        if let dropEvery = self.configuration.effectiveDropEvery {
            let jittered = Double(dropEvery.nanoseconds) * Double.random(in: 0.75...1.25)
            self.dropDeadline = .now() + .nanoseconds(Int64(jittered))
        }
        self.broadcaster.subscribe(self)
    }

    func deliverTicks(through tick: Int64) {
        guard let context = self.streamContext, tick > self.lastSentTick else { return }
        let tickMillis = self.configuration.tickMillis
        let first = max(self.lastSentTick + 1, tick - self.configuration.effectiveMaxReplay + 1)
        self.lastSentTick = tick
        guard first <= tick else { return }
        // One buffer and one flush for however many ticks are due (a replay, or a late timer).
        var buffer = context.channel.allocator.buffer(capacity: Int(tick - first + 1) * 72)
        for number in first...tick {
            buffer.writeString(DemoTicks.eventText(tick: number, tickMillis: tickMillis))
        }
        context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    }

    func drop() {
        guard let context = self.streamContext else { return }
        self.stopStreaming()
        // End the chunked body properly, then close: the client sees a finished response and
        // reconnects, as it would when a real origin is redeployed gracefully.
        let channel = context.channel
        context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    private func stopStreaming() {
        if let path = self.streamPath {
            self.streamPath = nil
            self.controls.openStreams.withLockedValue { $0[path, default: 0] -= 1 }
        }
        guard self.streamContext != nil else { return }
        self.streamContext = nil
        self.dropDeadline = nil
        self.broadcaster.unsubscribe(self)
    }

    // MARK: The chat answer

    private func startChat(context: ChannelHandlerContext, head: HTTPRequestHead) {
        let headers = HTTPHeaders([("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")])
        context.writeAndFlush(
            self.wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: .ok, headers: headers))),
            promise: nil
        )
        let chat = DemoChat(eventLoop: context.eventLoop, pacing: self.configuration.chatPacing)
        self.chat = chat
        self.controls.chats.withLockedValue { $0.open += 1 }
        let keepAlive = head.isKeepAlive
        // The sink holds the handler and its context only while the answer runs: `stopChat`
        // and the end drop it.
        chat.start(sink: DemoChat.Sink(
            event: { text in
                var buffer = context.channel.allocator.buffer(capacity: text.utf8.count)
                buffer.writeString(text)
                context.writeAndFlush(self.wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
            },
            end: {
                self.chatEnded()
                let written = context.writeAndFlush(self.wrapOutboundOut(.end(nil)))
                if !keepAlive {
                    let channel = context.channel
                    written.whenComplete { _ in channel.close(promise: nil) }
                }
            }
        ))
    }

    /// The answer is complete: the connection can take the next request.
    private func chatEnded() {
        guard self.chat != nil else { return }
        self.chat = nil
        self.controls.chats.withLockedValue { $0.open -= 1 }
    }

    /// The connection is gone mid-answer: the timer stops with it.
    private func stopChat() {
        guard let chat = self.chat else { return }
        chat.stop()
        self.chatEnded()
    }

    // MARK: Request parsing

    private static func splitURI(_ uri: String) -> (path: Substring, query: Substring?) {
        guard let mark = uri.firstIndex(of: "?") else { return (uri[...], nil) }
        return (uri[..<mark], uri[uri.index(after: mark)...])
    }

    /// The resume point: the `Last-Event-ID` header, else the `lastEventId` query parameter
    /// (for EventSource polyfills that cannot set headers). Only plain decimal numbers count.
    private static func lastEventID(head: HTTPRequestHead, query: Substring?) -> Int64? {
        if let header = head.headers.first(name: "Last-Event-ID") {
            return Self.parseTick(header[...])
        }
        guard let query else { return nil }
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            if parts.count == 2, parts[0] == "lastEventId" {
                return Self.parseTick(parts[1])
            }
        }
        return nil
    }

    private static func parseTick(_ text: Substring) -> Int64? {
        let trimmed = text.drop(while: { $0 == " " })
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            return nil
        }
        return Int64(trimmed)
    }
}
